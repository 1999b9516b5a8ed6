//! Each view rendered from a known state into `TestBackend`, compared with the
//! `insta` snapshots in `src/snapshots` (80x24 and 160x48).

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use crate::app::{update, App, Event, Key};
use crate::fixture::{events, loaded_app, T0};
use crate::view::render;

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, app, T0)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn both(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), screen(app, 160, 48));
}

fn at(tab: char) -> App {
    let mut app = loaded_app();
    update(&mut app, Event::Key(Key::Char(tab)), T0);
    app
}

#[test]
fn cluster_view() {
    both("cluster", &at('1'));
}

#[test]
fn streams_view_filtered() {
    let mut app = at('2');
    for k in [Key::Char('/'), Key::Char('o'), Key::Char('r'), Key::Down] {
        update(&mut app, Event::Key(k), T0);
    }
    both("streams", &app);
}

#[test]
fn stream_events_view() {
    let mut app = at('2');
    update(&mut app, Event::Key(Key::Down), T0);
    update(&mut app, Event::Key(Key::Enter), T0);
    update(
        &mut app,
        Event::Events {
            store: "default".into(),
            stream: "order-000".into(),
            from: 0,
            result: Ok(events("order-000", 5)),
        },
        T0 - 200,
    );
    update(&mut app, Event::Key(Key::Down), T0);
    both("events", &app);
}

#[test]
fn subscriptions_view() {
    both("subscriptions", &at('3'));
}

#[test]
fn telemetry_view() {
    let mut app = at('4');
    for (i, n) in [210u64, 400, 420, 700, 900].iter().enumerate() {
        let t = T0 - 900 + i as u64 * 100;
        update(&mut app, Event::Tick, t);
        update(
            &mut app,
            Event::Cluster(Ok(crate::fixture::cluster(2, *n))),
            t,
        );
    }
    both("telemetry", &app);
}

#[test]
fn confirm_dialog_and_disconnected_status() {
    let mut app = at('2');
    update(&mut app, Event::Key(Key::Down), T0);
    update(&mut app, Event::Key(Key::Char('D')), T0);
    update(
        &mut app,
        Event::Disconnected("Unavailable: no gater answered".into()),
        T0,
    );
    update(&mut app, Event::Tick, T0);
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            after: None,
            result: Err("Unavailable".into()),
        },
        T0,
    );
    both("confirm_disconnected", &app);
}

#[test]
fn help_overlay() {
    let mut app = at('1');
    update(&mut app, Event::Key(Key::Char('?')), T0);
    both("help", &app);
}
