//! `reckon-tui`: the operator's console for reckon-db.
//!
//! This file is the only place that touches the terminal: it reads keys on a
//! thread of their own, ticks the refresh, feeds every event through
//! [`reckon_tui::app::update`], hands the resulting commands to the network task
//! and draws [`reckon_tui::view::render`]. The terminal is restored on every exit
//! path, panics included (`ratatui::init` installs the hook).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use reckon_gater::tls::Tls;
use reckon_tui::app::{update, App, Command, Event, Key, Millis};
use reckon_tui::config::{self, TuiArgs};
use reckon_tui::{net, view};
use tokio::sync::mpsc;

/// How often the screen is redrawn when nothing happens (ages in titles move).
const REDRAW_INTERVAL: Duration = Duration::from_millis(250);

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

fn to_key(code: KeyCode, mods: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// Reads terminal keys on a plain thread (crossterm's `read` blocks) and forwards
/// them; ends when the receiver is gone. A resize arrives as `None` (redraw only).
fn spawn_keys(tx: mpsc::Sender<Option<Key>>) {
    std::thread::spawn(move || loop {
        let msg = match event::read() {
            Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => {
                match to_key(k.code, k.modifiers) {
                    Some(key) => Some(key),
                    None => continue,
                }
            }
            Ok(TermEvent::Resize(..)) => None,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.blocking_send(msg).is_err() {
            return;
        }
    });
}

/// Sends `cmds` without waiting; a full queue answers the command with an error
/// at once so its panel does not stay "loading".
fn dispatch(cmds: Vec<Command>, tx: &mpsc::Sender<Command>, pending: &mut Vec<Event>) {
    for cmd in cmds {
        if let Err(e) = tx.try_send(cmd) {
            let cmd = match e {
                mpsc::error::TrySendError::Full(c) | mpsc::error::TrySendError::Closed(c) => c,
            };
            pending.push(net::failed(cmd, "network task busy".into()));
        }
    }
}

async fn run(
    gaters: Vec<String>,
    token: Option<String>,
    tls: Option<Tls>,
    refresh_ms: u64,
) -> anyhow::Result<()> {
    let (cmd_tx, cmd_rx) = mpsc::channel(net::CHANNEL_CAPACITY);
    let (ev_tx, mut ev_rx) = mpsc::channel(net::CHANNEL_CAPACITY);
    let (key_tx, mut key_rx) = mpsc::channel(net::CHANNEL_CAPACITY);
    net::spawn(gaters.clone(), token, tls, cmd_rx, ev_tx);

    let mut terminal = ratatui::try_init()?;
    spawn_keys(key_tx);
    let mut app = App::new(gaters, refresh_ms);
    let mut refresh = tokio::time::interval(Duration::from_millis(refresh_ms));
    let mut redraw = tokio::time::interval(REDRAW_INTERVAL);
    let result = loop {
        let event = tokio::select! {
            k = key_rx.recv() => k.flatten().map(Event::Key),
            e = ev_rx.recv() => e,
            _ = refresh.tick() => Some(Event::Tick),
            _ = redraw.tick() => None,
        };
        let mut pending: Vec<Event> = event.into_iter().collect();
        while let Some(ev) = pending.pop() {
            let cmds = update(&mut app, ev, now_ms());
            dispatch(cmds, &cmd_tx, &mut pending);
        }
        if app.quit {
            break Ok(());
        }
        let now = now_ms();
        if let Err(e) = terminal.draw(|f| view::render(f, &app, now)) {
            break Err(e.into());
        }
    };
    ratatui::try_restore()?;
    result
}

fn main() -> std::process::ExitCode {
    let args = TuiArgs::parse();
    let config = match config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reckon-tui: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.print_config {
        return match config.to_toml() {
            Ok(s) => {
                print!("{s}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("reckon-tui: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    // The demo's cluster is in this process, on loopback, in clear text.
    let tls = match args
        .tls_files()
        .filter(|_| !args.demo)
        .map(|f| Tls::client(&f))
    {
        None => None,
        Some(Ok(tls)) => Some(tls),
        Some(Err(e)) => {
            eprintln!("reckon-tui: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reckon-tui: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let session = async {
        if args.demo {
            let demo = reckon_tui::demo::start().await?;
            let r = run(vec![demo.gater.clone()], None, None, config.refresh_ms).await;
            drop(demo);
            r
        } else {
            run(config.gaters, config.token, tls, config.refresh_ms).await
        }
    };
    match rt.block_on(session) {
        Ok(()) => {
            // The key thread may still be blocked in `read`; do not wait for it.
            rt.shutdown_background();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reckon-tui: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
