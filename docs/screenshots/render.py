#!/usr/bin/env python3
"""Screenshots of reckon-tui for the README (not part of CI).

    python3 -m pip install pillow
    cargo build -p reckon-tui
    python3 docs/screenshots/render.py                 # capture with tmux, then render
    python3 docs/screenshots/render.py --captures DIR  # keep the text captures in DIR
    python3 docs/screenshots/render.py --render DIR    # render captures in DIR only

Capture: runs `reckon-tui --demo` in tmux on a private socket at 120x36, visits
each view and saves `tmux capture-pane -p -e` (text with SGR colours) as
<name>.ansi (in a temporary directory unless --captures is given). Render: draws
every <name>.ansi as <name>.png next to this script, with DejaVu Sans Mono on a
dark background.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
COLS, ROWS = 120, 36
FONT_SIZE = 16
PAD = 12
BG = (24, 26, 33)
FG = (208, 212, 220)
# The 16 ANSI colours (a dark theme).
PALETTE = [
    (40, 42, 54), (224, 108, 117), (152, 195, 121), (229, 192, 123),
    (97, 175, 239), (198, 120, 221), (86, 182, 194), (208, 212, 220),
    (92, 99, 112), (240, 128, 137), (172, 215, 141), (249, 212, 143),
    (117, 195, 255), (218, 140, 241), (106, 202, 214), (255, 255, 255),
]

# name, keys sent after the demo shows its cluster (each group then a pause)
VIEWS = [
    ("cluster", ["1"]),
    ("streams", ["2"]),
    ("events", ["2", "j", "Enter"]),
    ("subscriptions", ["3"]),
    ("telemetry", ["4"]),
    ("help", ["1", "?"]),
]


def xterm256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


# Box-drawing characters drawn as lines so borders join across rows:
# arms (up, down, left, right).
BOX = {
    "─": (0, 0, 1, 1), "│": (1, 1, 0, 0), "┌": (0, 1, 0, 1), "┐": (0, 1, 1, 0),
    "└": (1, 0, 0, 1), "┘": (1, 0, 1, 0), "├": (1, 1, 0, 1), "┤": (1, 1, 1, 0),
    "┬": (0, 1, 1, 1), "┴": (1, 0, 1, 1), "┼": (1, 1, 1, 1),
}


def draw_box(draw, c, x, y, cw, ch, fg):
    up, down, left, right = BOX[c]
    mx, my = x + cw // 2, y + ch // 2
    if up or down:
        draw.line([(mx, y if up else my), (mx, y + ch - 1 if down else my)], fill=fg)
    if left or right:
        draw.line([(x if left else mx, my), (x + cw - 1 if right else mx, my)], fill=fg)


SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def parse_line(line):
    """Yields (char, fg, bg, bold) for one line with SGR escapes."""
    fg, bg, bold, rev = None, None, False, False
    pos = 0
    out = []
    for m in list(SGR.finditer(line)) + [None]:
        end = m.start() if m else len(line)
        for ch in line[pos:end]:
            f, b = (fg or FG), (bg or BG)
            if rev:
                f, b = b, f
            out.append((ch, f, b, bold))
        if not m:
            break
        pos = m.end()
        codes = [int(c) if c else 0 for c in re.split(r"[;:]", m.group(1))] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bg, bold, rev = None, None, False, False
            elif c == 1:
                bold = True
            elif c == 22:
                bold = False
            elif c == 7:
                rev = True
            elif c == 27:
                rev = False
            elif 30 <= c <= 37:
                fg = PALETTE[c - 30]
            elif 90 <= c <= 97:
                fg = PALETTE[c - 90 + 8]
            elif c == 39:
                fg = None
            elif 40 <= c <= 47:
                bg = PALETTE[c - 40]
            elif 100 <= c <= 107:
                bg = PALETTE[c - 100 + 8]
            elif c == 49:
                bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    col = xterm256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    col = tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    col = None
                if c == 38:
                    fg = col
                else:
                    bg = col
            i += 1
    return out


def render(src, dst):
    regular = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSansMono.ttf"), FONT_SIZE)
    bold_font = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSansMono-Bold.ttf"), FONT_SIZE)
    cw = round(regular.getlength("M"))
    ascent, descent = regular.getmetrics()
    ch = ascent + descent
    with open(src, encoding="utf-8") as f:
        lines = f.read().split("\n")[:ROWS]
    img = Image.new("RGB", (COLS * cw + 2 * PAD, ROWS * ch + 2 * PAD), BG)
    draw = ImageDraw.Draw(img)
    for row, line in enumerate(lines):
        y = PAD + row * ch
        for col, (c, fg, bg, bold) in enumerate(parse_line(line)[:COLS]):
            x = PAD + col * cw
            if bg != BG:
                draw.rectangle([x, y, x + cw - 1, y + ch - 1], fill=bg)
            if c in BOX:
                draw_box(draw, c, x, y, cw, ch, fg)
            elif c != " ":
                draw.text((x, y), c, font=bold_font if bold else regular, fill=fg)
    img.save(dst)
    print(f"wrote {os.path.relpath(dst, ROOT)}")


def tmux(socket, *args):
    return subprocess.run(["tmux", "-L", socket, *args], check=True,
                          capture_output=True, text=True).stdout


def capture(tui, out_dir):
    socket = f"reckon-shots-{os.getpid()}"
    tmux(socket, "new-session", "-d", "-s", "tui", "-x", str(COLS), "-y", str(ROWS),
         "-e", "TERM=xterm-256color", f"{tui} --demo --refresh-ms 500")
    # tmux leaves its socket file behind: note it now, remove it at the end.
    path = tmux(socket, "display-message", "-p", "#{socket_path}").strip()
    try:
        # Let the demo cluster elect a leader and the sample events trickle in.
        deadline = time.time() + 60
        while True:
            screen = tmux(socket, "capture-pane", "-p", "-t", "tui")
            if "★" in screen and "leader" in screen:
                break
            if time.time() > deadline:
                sys.exit("the demo did not show a leader:\n" + screen)
            time.sleep(0.5)
        time.sleep(8)
        for name, keys in VIEWS:
            tmux(socket, "send-keys", "-t", "tui", "Escape")
            time.sleep(0.3)
            for k in keys:
                tmux(socket, "send-keys", "-t", "tui", k)
                time.sleep(0.4)
            time.sleep(1.5)
            text = tmux(socket, "capture-pane", "-p", "-e", "-t", "tui")
            with open(os.path.join(out_dir, name + ".ansi"), "w", encoding="utf-8") as f:
                f.write(text)
        tmux(socket, "send-keys", "-t", "tui", "Escape")
        tmux(socket, "send-keys", "-t", "tui", "q")
        time.sleep(1)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        if path and os.path.exists(path):
            os.remove(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", metavar="DIR", help="render the captures in DIR only")
    ap.add_argument("--captures", metavar="DIR", help="keep the text captures in DIR")
    ap.add_argument("--tui", default=os.path.join(ROOT, "target", "debug", "reckon-tui"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src_dir = args.render or args.captures or tmp
        if not args.render:
            if not shutil.which("tmux"):
                sys.exit("tmux is needed to capture")
            if not os.path.exists(args.tui):
                sys.exit(f"{args.tui} not found; cargo build -p reckon-tui")
            os.makedirs(src_dir, exist_ok=True)
            capture(args.tui, src_dir)
        for name, _ in VIEWS:
            src = os.path.join(src_dir, name + ".ansi")
            if os.path.exists(src):
                render(src, os.path.join(HERE, name + ".png"))


if __name__ == "__main__":
    main()
