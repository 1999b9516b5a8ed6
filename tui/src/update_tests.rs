//! `update` alone: keys, paging, filter and confirmations, with no terminal and no
//! network.

use crate::app::{
    update, App, Command, Connection, Event, Key, Loading, StreamsMode, Tab, EVENTS_PAGE,
    STREAMS_PAGE,
};
use crate::fixture::{events, loaded_app, streams, T0};

fn key(app: &mut App, k: Key) -> Vec<Command> {
    update(app, Event::Key(k), T0)
}

fn chars(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, Key::Char(c));
    }
}

#[test]
fn number_keys_and_tab_switch_views() {
    let mut app = loaded_app();
    assert_eq!(app.tab, Tab::Cluster);
    key(&mut app, Key::Char('3'));
    assert_eq!(app.tab, Tab::Subscriptions);
    key(&mut app, Key::Tab);
    assert_eq!(app.tab, Tab::Telemetry);
    key(&mut app, Key::Tab);
    assert_eq!(app.tab, Tab::Cluster);
    key(&mut app, Key::BackTab);
    assert_eq!(app.tab, Tab::Telemetry);
    key(&mut app, Key::Char('2'));
    assert_eq!(app.tab, Tab::Streams);
}

#[test]
fn q_quits_and_help_toggles() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('?'));
    assert!(app.help);
    key(&mut app, Key::Char('q'));
    assert!(!app.help, "any key closes the help first");
    assert!(!app.quit);
    key(&mut app, Key::Char('q'));
    assert!(app.quit);
}

#[test]
fn arrows_and_jk_move_within_bounds() {
    let mut app = loaded_app();
    key(&mut app, Key::Up);
    assert_eq!(app.cluster_selected, 0);
    key(&mut app, Key::Down);
    key(&mut app, Key::Char('j'));
    key(&mut app, Key::Char('j'));
    assert_eq!(app.cluster_selected, 2, "three nodes: stops at the last");
    key(&mut app, Key::Char('k'));
    assert_eq!(app.cluster_selected, 1);
}

#[test]
fn tick_refreshes_each_panel_once_while_in_flight() {
    let mut app = App::new(vec!["a:1".into()], 1000);
    assert_eq!(
        update(&mut app, Event::Tick, T0),
        vec![Command::RefreshCluster]
    );
    assert_eq!(app.cluster.state, Loading::Loading);
    assert!(
        update(&mut app, Event::Tick, T0 + 1000).is_empty(),
        "no pile-up"
    );
    let cmds = update(
        &mut app,
        Event::Cluster(Ok(crate::fixture::cluster(1, 0))),
        T0 + 1100,
    );
    assert_eq!(
        app.store.as_deref(),
        Some("default"),
        "first store selected"
    );
    assert!(cmds.contains(&Command::LoadSubscriptions {
        store: "default".into()
    }));
    assert_eq!(app.cluster.state, Loading::Loaded(T0 + 1100));
}

#[test]
fn errors_keep_old_data_and_disconnect_shows() {
    let mut app = loaded_app();
    update(&mut app, Event::Disconnected("refused".into()), T0);
    update(&mut app, Event::Tick, T0);
    update(&mut app, Event::Cluster(Err("refused".into())), T0);
    assert_eq!(app.connection, Connection::Disconnected("refused".into()));
    assert!(app.cluster.data.is_some(), "stale data kept");
    assert_eq!(app.cluster.state, Loading::Error("refused".into()));
    update(&mut app, Event::Connected, T0 + 1);
    assert_eq!(app.connection, Connection::Connected);
}

#[test]
fn leader_change_goes_to_the_timeline() {
    let app = loaded_app();
    let texts: Vec<&str> = app.timeline.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "default: seen, leader 1, term 3",
            "default: leader 1 → 2 (term 3)"
        ]
    );
    assert_eq!(app.rates["default"].samples, [150]);
}

#[test]
fn filter_narrows_the_list_and_esc_clears() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    assert_eq!(app.streams.rows().len(), 13, "$all and 12 streams");
    key(&mut app, Key::Char('/'));
    chars(&mut app, "user-00q");
    assert!(!app.quit, "q typed into the filter does not quit");
    key(&mut app, Key::Backspace);
    key(&mut app, Key::Enter);
    assert!(!app.streams.editing_filter);
    let rows: Vec<String> = app.streams.rows().into_iter().map(|r| r.0).collect();
    assert_eq!(
        rows,
        ["$all", "user-001", "user-003", "user-005", "user-007", "user-009"]
    );
    key(&mut app, Key::Esc);
    assert_eq!(app.streams.rows().len(), 13);
}

#[test]
fn stream_list_pages_forward_and_back() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    assert!(
        key(&mut app, Key::PageDown).is_empty(),
        "a short page is the last"
    );
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            after: None,
            result: Ok(streams(STREAMS_PAGE as usize)),
        },
        T0,
    );
    let cmds = key(&mut app, Key::PageDown);
    let after = Some(format!("user-{:03}", STREAMS_PAGE - 1));
    assert!(cmds.contains(&Command::LoadStreams {
        store: "default".into(),
        after: after.clone(),
        limit: STREAMS_PAGE
    }));
    assert_eq!(app.streams.pages, vec![None, after]);
    let cmds = key(&mut app, Key::PageUp);
    assert!(cmds.contains(&Command::LoadStreams {
        store: "default".into(),
        after: None,
        limit: STREAMS_PAGE
    }));
    assert_eq!(app.streams.pages, vec![None]);
    assert!(key(&mut app, Key::PageUp)
        .iter()
        .all(|c| !matches!(c, Command::LoadStreams { .. })));
}

#[test]
fn enter_opens_events_and_pages_them() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Down);
    let cmds = key(&mut app, Key::Enter);
    let load = |from| Command::LoadEvents {
        store: "default".into(),
        stream: "order-000".into(),
        from,
        count: EVENTS_PAGE,
    };
    assert!(cmds.contains(&load(0)), "{cmds:?}");
    update(
        &mut app,
        Event::Events {
            store: "default".into(),
            stream: "order-000".into(),
            from: 0,
            result: Ok(events("order-000", u64::from(EVENTS_PAGE))),
        },
        T0,
    );
    assert!(
        key(&mut app, Key::PageUp).is_empty(),
        "already at the start"
    );
    assert!(key(&mut app, Key::PageDown).contains(&load(u64::from(EVENTS_PAGE))));
    // The answer for the page left behind is ignored.
    update(
        &mut app,
        Event::Events {
            store: "default".into(),
            stream: "order-000".into(),
            from: 0,
            result: Ok(events("order-000", 3)),
        },
        T0,
    );
    let StreamsMode::Events { events: panel, .. } = &app.streams.mode else {
        panic!("events mode")
    };
    assert!(panel.data.is_none());
    assert!(key(&mut app, Key::PageUp).contains(&load(0)));
    key(&mut app, Key::Esc);
    assert_eq!(app.streams.mode, StreamsMode::List);
}

#[test]
fn delete_without_confirmation_does_nothing() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Down);
    assert!(key(&mut app, Key::Char('d')).is_empty(), "d only asks");
    assert!(app.confirm.is_some());
    assert!(
        key(&mut app, Key::Char('z')).is_empty(),
        "other keys keep asking"
    );
    assert!(app.confirm.is_some());
    assert!(key(&mut app, Key::Char('n')).is_empty());
    assert!(app.confirm.is_none());
    key(&mut app, Key::Char('D'));
    assert!(key(&mut app, Key::Esc).is_empty());
    assert!(app.confirm.is_none());
}

#[test]
fn confirmed_actions_send_their_command() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Down);
    key(&mut app, Key::Char('D'));
    assert_eq!(
        key(&mut app, Key::Char('y')),
        vec![Command::DeleteStream {
            store: "default".into(),
            stream: "order-000".into(),
            hard: true
        }]
    );
    key(&mut app, Key::Char('a'));
    assert_eq!(
        key(&mut app, Key::Char('y')),
        vec![Command::AppendTest {
            store: "default".into(),
            stream: "order-000".into(),
            at: T0
        }]
    );
    // $all is not a stream: nothing to delete.
    key(&mut app, Key::Up);
    key(&mut app, Key::Char('d'));
    assert!(app.confirm.is_none());
    // Subscriptions are sorted by lag: search (500) first.
    key(&mut app, Key::Char('3'));
    key(&mut app, Key::Char('x'));
    assert_eq!(
        key(&mut app, Key::Char('y')),
        vec![Command::Unsubscribe {
            store: "default".into(),
            key: "k3".into()
        }]
    );
    key(&mut app, Key::Char('1'));
    key(&mut app, Key::Char('R'));
    assert_eq!(
        key(&mut app, Key::Char('y')),
        vec![Command::RemoveNode {
            store: "default".into(),
            node_id: 1
        }]
    );
}

#[test]
fn action_outcome_flashes_then_clears() {
    let mut app = loaded_app();
    update(
        &mut app,
        Event::ActionDone {
            what: "soft delete of x".into(),
            result: Err("stream not found".into()),
        },
        T0,
    );
    assert_eq!(
        app.flash,
        Some((T0, "✖ soft delete of x: stream not found".into()))
    );
    update(&mut app, Event::Connected, T0 + crate::app::FLASH_MS + 1);
    assert_eq!(app.flash, None);
}
