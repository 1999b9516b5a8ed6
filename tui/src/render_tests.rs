//! Each view rendered from a known state into `TestBackend`, compared with the
//! `insta` snapshots in `src/snapshots` (80x24 and 160x48).

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use crate::app::{update, App, Event, Key};
use std::time::Duration;

use reckon_gater::metrics::Histogram;
use reckon_gater::{StreamInfo, StreamPage};

use crate::fixture::{cluster, events, loaded_app, page, T0};
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
fn streams_view_filtered_server_side() {
    let mut app = at('2');
    for k in [Key::Char('/'), Key::Char('0'), Key::Char('0'), Key::Enter] {
        update(&mut app, Event::Key(k), T0);
    }
    // The second page of the search: a page back, more after it.
    let mut first = page(3);
    first.resume_after = Some("user-009".into());
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            contains: Some("00".into()),
            after: None,
            result: Ok(first),
        },
        T0 - 300,
    );
    update(&mut app, Event::Key(Key::PageDown), T0 - 300);
    let second = StreamPage {
        streams: ["user-100", "user-1000", "user-200"]
            .map(|id| StreamInfo {
                stream_id: id.into(),
                version: 7,
            })
            .into(),
        resume_after: Some("user-2999".into()),
    };
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            contains: Some("00".into()),
            after: Some("user-009".into()),
            result: Ok(second),
        },
        T0 - 200,
    );
    both("streams_server_filtered", &app);
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
    // Five more refreshes, 100 ms apart: uneven appends on node 2 (ten fast ones and
    // one slow one each time), reads on node 3, and a failed append.
    let mut stats = crate::fixture::stats(1);
    let (base_appends, base_reads) = (
        stats[1].append_latency.clone(),
        stats[2].read_latency.clone(),
    );
    // A scavenge under way, as the leader (node 2) says.
    stats[1].scavenge = Some(reckon_gater::types::ScavengeStatus {
        phase: reckon_gater::types::ScavengePhase::Running,
        generation: 1,
        end: 2_000,
        next: 900,
        removed_events: 410,
        removed_bytes: 905_216,
        started_us: 1,
        finished_us: None,
        file_bytes: 8 << 20,
        reclaimed_bytes: 0,
    });
    let appends = Histogram::default();
    let reads = Histogram::default();
    for (i, (a, r, slow_us)) in [
        (16u64, 40u64, 900u64),
        (40, 10, 2_500),
        (2, 0, 600),
        (70, 30, 8_000),
        (20, 90, 1_500),
    ]
    .into_iter()
    .enumerate()
    {
        let t = T0 - 500 + i as u64 * 100;
        for _ in 0..10 {
            appends.record(Duration::from_micros(100));
        }
        appends.record(Duration::from_micros(slow_us));
        for j in 0..r {
            reads.record(Duration::from_micros(250 + 10 * j));
        }
        stats[1].appended_events += a;
        stats[1].append_latency = base_appends.clone();
        stats[1].append_latency.merge(&appends.snapshot());
        stats[2].read_events += r;
        stats[2].read_latency = base_reads.clone();
        stats[2].read_latency.merge(&reads.snapshot());
        if i == 4 {
            *stats[1]
                .errors
                .entry("WrongExpectedVersion".into())
                .or_default() += 1;
        }
        update(&mut app, Event::Tick, t);
        update(&mut app, Event::Cluster(Ok(cluster(2, 0))), t);
        update(&mut app, Event::Stats(Ok(stats.clone())), t);
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
            contains: None,
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
