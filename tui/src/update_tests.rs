//! `update` alone: keys, paging, filter and confirmations, with no terminal and no
//! network.

use reckon_gater::access::{parse_grants, Credential, Principal};
use reckon_gater::types::Role;
use reckon_gater::StreamPage;

use crate::app::{
    update, App, Command, Connection, Event, Key, Loading, StreamsMode, Tab, EVENTS_PAGE,
    FIND_EMPTY_FOLLOW_MAX, STREAMS_PAGE,
};
use crate::fixture::{
    events, hist, loaded_app, node_stats, page, stats, streams, subscriptions, T0,
};

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
        vec![Command::RefreshCluster, Command::RefreshStats]
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
}

fn find(contains: &str, after: Option<&str>) -> Command {
    Command::FindStreams {
        store: "default".into(),
        contains: contains.into(),
        after: after.map(str::to_string),
        limit: STREAMS_PAGE,
    }
}

fn found(app: &mut App, contains: &str, after: Option<&str>, page: StreamPage) -> Vec<Command> {
    update(
        app,
        Event::Streams {
            store: "default".into(),
            contains: Some(contains.into()),
            after: after.map(str::to_string),
            result: Ok(page),
        },
        T0,
    )
}

fn ids(app: &App) -> Vec<String> {
    app.streams.rows().into_iter().map(|r| r.0).collect()
}

#[test]
fn filter_narrows_at_once_and_enter_searches_server_side() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    assert_eq!(app.streams.rows().len(), 13, "$all and 12 streams");
    key(&mut app, Key::Char('/'));
    for c in "user-00q".chars() {
        assert!(
            key(&mut app, Key::Char(c)).is_empty(),
            "typing asks nothing"
        );
    }
    assert!(!app.quit, "q typed into the filter does not quit");
    key(&mut app, Key::Backspace);
    assert_eq!(
        ids(&app),
        ["$all", "user-001", "user-003", "user-005", "user-007", "user-009"],
        "the loaded page narrows as the filter is typed"
    );
    let cmds = key(&mut app, Key::Enter);
    assert!(!app.streams.editing_filter);
    assert!(cmds.contains(&find("user-00", None)), "{cmds:?}");
    assert_eq!(app.streams.query.as_deref(), Some("user-00"));
    assert_eq!(app.streams.list.state, Loading::Loading);
    // A late answer of the unfiltered list is not taken for the search's.
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            contains: None,
            after: None,
            result: Ok(page(12)),
        },
        T0,
    );
    assert!(app.streams.list.data.is_none());
    let mut hits = page(0);
    hits.streams = streams(200)
        .into_iter()
        .filter(|s| s.stream_id.contains("user-00"))
        .collect();
    found(&mut app, "user-00", None, hits);
    assert_eq!(ids(&app).len(), 6);
    // Enter on a row opens it; the search stays for the way back.
    key(&mut app, Key::Enter);
    assert!(matches!(app.streams.mode, StreamsMode::Events { .. }));
    assert_eq!(app.streams.query.as_deref(), Some("user-00"));
    key(&mut app, Key::Esc);
    // Esc in the list clears the filter and lists every stream again.
    let cmds = key(&mut app, Key::Esc);
    assert!(cmds.contains(&Command::LoadStreams {
        store: "default".into(),
        after: None,
        limit: STREAMS_PAGE
    }));
    assert_eq!(app.streams.query, None);
    assert!(app.streams.filter.is_empty());
}

#[test]
fn esc_while_typing_goes_back_to_the_whole_list() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Char('/'));
    chars(&mut app, "order");
    assert!(key(&mut app, Key::Enter).contains(&find("order", None)));
    key(&mut app, Key::Char('/'));
    chars(&mut app, "-0");
    assert!(app.streams.editing_filter);
    let cmds = key(&mut app, Key::Esc);
    assert!(cmds.contains(&Command::LoadStreams {
        store: "default".into(),
        after: None,
        limit: STREAMS_PAGE
    }));
    assert_eq!(app.streams.query, None);
    // An empty filter committed with Enter does the same, and only once.
    key(&mut app, Key::Char('/'));
    assert!(key(&mut app, Key::Enter)
        .iter()
        .all(|c| !matches!(c, Command::LoadStreams { .. } | Command::FindStreams { .. })));
}

#[test]
fn search_pages_follow_resume_after_and_go_back() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Char('/'));
    chars(&mut app, "00");
    key(&mut app, Key::Enter);
    // A short page that did not reach the end: the node stopped at user-009.
    let mut first = page(3);
    first.resume_after = Some("user-009".into());
    found(&mut app, "00", None, first);
    assert!(key(&mut app, Key::PageDown).contains(&find("00", Some("user-009"))));
    assert_eq!(app.streams.pages, vec![None, Some("user-009".into())]);
    let mut last = page(2);
    last.resume_after = None;
    found(&mut app, "00", Some("user-009"), last);
    assert!(
        key(&mut app, Key::PageDown).is_empty(),
        "no resume_after: the last page"
    );
    assert!(key(&mut app, Key::PageUp).contains(&find("00", None)));
    assert_eq!(app.streams.pages, vec![None]);
    // A tick reloads the page shown with the same search.
    let mut again = page(3);
    again.resume_after = Some("user-009".into());
    found(&mut app, "00", None, again);
    assert!(update(&mut app, Event::Tick, T0 + 1000).contains(&find("00", None)));
    // Switching store keeps the search.
    update(&mut app, Event::Cluster(Ok(two_stores())), T0 + 1000);
    let cmds = key(&mut app, Key::Char('s'));
    assert!(cmds.contains(&Command::FindStreams {
        store: "other".into(),
        contains: "00".into(),
        after: None,
        limit: STREAMS_PAGE
    }));
}

fn two_stores() -> crate::app::ClusterData {
    let mut c = crate::fixture::cluster(2, 0);
    let mut other = c.status[0].clone();
    other.store = "other".into();
    c.status.push(other);
    c
}

#[test]
fn empty_search_pages_are_followed_a_bounded_number_of_times() {
    let mut app = loaded_app();
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Char('/'));
    chars(&mut app, "zz");
    key(&mut app, Key::Enter);
    let empty = |next: u32| StreamPage {
        streams: vec![],
        resume_after: Some(format!("s-{next:05}")),
    };
    let mut after: Option<String> = None;
    for i in 0..FIND_EMPTY_FOLLOW_MAX {
        let cmds = found(&mut app, "zz", after.as_deref(), empty(i));
        let next = format!("s-{i:05}");
        assert_eq!(cmds, vec![find("zz", Some(&next))], "follow {i}");
        assert_eq!(
            app.streams.pages,
            vec![Some(next.clone())],
            "in place of the empty page"
        );
        after = Some(next);
    }
    assert!(
        found(&mut app, "zz", after.as_deref(), empty(99)).is_empty(),
        "then it waits for PgDn"
    );
    assert_eq!(app.streams.next_cursor().as_deref(), Some("s-00099"));
    assert!(key(&mut app, Key::PageDown).contains(&find("zz", Some("s-00099"))));
    assert_eq!(app.streams.followed, 0, "PgDn starts a new count");
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
            contains: None,
            after: None,
            result: Ok(page(STREAMS_PAGE as usize)),
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
    // Leadership to the second node row, confirmed; refused, nothing is sent.
    key(&mut app, Key::Down);
    key(&mut app, Key::Char('L'));
    assert!(app.confirm.is_some());
    assert_eq!(key(&mut app, Key::Char('n')), vec![]);
    assert!(app.confirm.is_none());
    key(&mut app, Key::Char('L'));
    assert_eq!(
        key(&mut app, Key::Char('y')),
        vec![Command::TransferLeader {
            store: "default".into(),
            node_id: 2
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

#[test]
fn rates_come_from_two_stats_refreshes_and_survive_a_restart() {
    let mut app = App::new(vec!["a:1".into()], 1000);
    let refresh = |app: &mut App, at, nodes: Vec<reckon_gater::metrics::StoreStats>| {
        update(app, Event::Tick, at);
        update(app, Event::Stats(Ok(nodes)), at);
    };
    refresh(
        &mut app,
        T0,
        vec![
            node_stats(1, Role::Leader, 1_000, 10),
            node_stats(2, Role::Follower, 0, 500),
        ],
    );
    let t = &app.telemetry["default"];
    assert!(t.append_rate.is_empty(), "one refresh gives no rate");
    assert!(t.last.is_none());
    assert_eq!(t.events, 2_000, "the leader's count");
    // 2 s later: node 1 appended 300 and read 40; node 2 read 600.
    refresh(
        &mut app,
        T0 + 2000,
        vec![
            node_stats(1, Role::Leader, 1_300, 50),
            node_stats(2, Role::Follower, 0, 1_100),
        ],
    );
    let t = &app.telemetry["default"];
    assert_eq!(t.append_rate, [150]);
    assert_eq!(t.read_rate, [320], "(40 + 600) / 2 s, summed over nodes");
    // Node 2 restarted: its counters went down. What it counts now is all new.
    refresh(
        &mut app,
        T0 + 3000,
        vec![
            node_stats(1, Role::Leader, 1_400, 50),
            node_stats(2, Role::Follower, 0, 30),
        ],
    );
    let t = &app.telemetry["default"];
    assert_eq!(t.append_rate, [150, 100]);
    assert_eq!(t.read_rate, [320, 30], "a reset is not a negative rate");
    assert!(t.nodes[1].restarted);
    assert!(!t.nodes[0].restarted);
    // A node first seen now has no baseline and adds nothing yet.
    refresh(
        &mut app,
        T0 + 4000,
        vec![
            node_stats(1, Role::Leader, 1_400, 50),
            node_stats(2, Role::Follower, 0, 30),
            node_stats(3, Role::Follower, 0, 90_000),
        ],
    );
    let t = &app.telemetry["default"];
    assert_eq!(t.read_rate.back(), Some(&0));
    assert_eq!(t.nodes[2].last, None);
    assert_eq!(app.store_rows()[0].append_rate, Some(0));
}

#[test]
fn latency_quantiles_cover_the_last_interval_only() {
    let mut app = App::new(vec!["a:1".into()], 1000);
    let with = |appends: &[(u64, u64)], reads: &[(u64, u64)]| {
        let mut leader = node_stats(1, Role::Leader, 0, 0);
        leader.append_latency = hist(appends);
        let mut follower = node_stats(2, Role::Follower, 0, 0);
        follower.read_latency = hist(reads);
        vec![leader, follower]
    };
    // Before: 1000 fast appends (100 µs), no reads.
    update(&mut app, Event::Stats(Ok(with(&[(100, 1000)], &[]))), T0);
    // Then 10 slow appends (10 ms) and a second's reads on node 2.
    update(
        &mut app,
        Event::Stats(Ok(with(
            &[(100, 1000), (10_000, 10)],
            &[(300, 98), (5_000, 2)],
        ))),
        T0 + 1000,
    );
    let iv = app.telemetry["default"].last.clone().expect("an interval");
    assert_eq!(iv.ms, 1000);
    let p = |h: &reckon_gater::metrics::HistogramSnapshot, q| h.quantile_us(q).unwrap();
    assert!(
        (10_000..12_000).contains(&p(&iv.append_latency, 0.5)),
        "p50 of the interval is the slow appends', not the total's: {}",
        p(&iv.append_latency, 0.5)
    );
    assert!((300..360).contains(&p(&iv.read_latency, 0.5)));
    assert!((5_000..6_000).contains(&p(&iv.read_latency, 0.99)));
    // An interval without appends has no percentile: the view shows `-`.
    update(
        &mut app,
        Event::Stats(Ok(with(
            &[(100, 1000), (10_000, 10)],
            &[(300, 98), (5_000, 2)],
        ))),
        T0 + 2000,
    );
    let t = &app.telemetry["default"];
    assert_eq!(
        t.last.as_ref().unwrap().append_latency.quantile_us(0.99),
        None
    );
    assert_eq!(t.append_p99.len(), 2);
    assert_eq!(t.append_p99.back(), Some(&None));
    assert_eq!(crate::view::fmt_us(None), "-");
}

#[test]
fn errors_by_kind_have_totals_and_the_last_interval() {
    let app = loaded_app();
    let t = &app.telemetry["default"];
    assert_eq!(t.errors_total["WrongExpectedVersion"], 3);
    assert_eq!(t.errors_total["StreamNotFound"], 2);
    let iv = t.last.as_ref().unwrap();
    assert_eq!(iv.errors.get("WrongExpectedVersion"), Some(&1));
    assert_eq!(iv.errors.get("StreamNotFound"), None, "no increase");
}

#[test]
fn a_stats_failure_keeps_cluster_and_older_stats() {
    let mut app = loaded_app();
    update(&mut app, Event::Tick, T0);
    update(
        &mut app,
        Event::Cluster(Ok(crate::fixture::cluster(2, 0))),
        T0,
    );
    update(&mut app, Event::Stats(Err("Timeout".into())), T0);
    assert_eq!(app.cluster.state, Loading::Loaded(T0));
    assert_eq!(app.stats.state, Loading::Error("Timeout".into()));
    assert!(app.stats.data.is_some(), "older stats stay, shown stale");
    assert_eq!(app.telemetry["default"].append_rate, [50]);
    // The next success measures from the last stats received, 3 s back.
    update(&mut app, Event::Stats(Ok(stats(4))), T0 + 2000);
    assert_eq!(app.telemetry["default"].last.as_ref().unwrap().ms, 3000);
    assert_eq!(app.telemetry["default"].append_rate, [50, 50]);
}

#[test]
fn stores_table_has_events_rate_and_leader() {
    let app = loaded_app();
    let rows = app.store_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].store, "default");
    assert_eq!(rows[0].events, Some(2_050));
    assert_eq!(rows[0].append_rate, Some(50));
    assert_eq!(rows[0].leader, Some(2));
}

#[test]
fn delivery_rates_come_from_two_subscription_lists() {
    let mut app = loaded_app();
    assert_eq!(app.deliveries.per_sec["k1"], 30);
    assert_eq!(app.deliveries.per_sec["k2"], 12);
    // Another node serves the list with smaller counts: no negative rate.
    let mut subs = subscriptions(2);
    subs[0].delivered = 5;
    update(
        &mut app,
        Event::Subscriptions {
            store: "default".into(),
            result: Ok(subs),
        },
        T0 + 500,
    );
    assert_eq!(app.deliveries.per_sec["k1"], 5);
    assert_eq!(app.deliveries.per_sec["k2"], 12);
}

fn principal(grants: &[&str]) -> Principal {
    Principal {
        name: "reader".into(),
        credential: Credential::Token,
        grants: parse_grants(grants).expect("grants parse"),
    }
}

#[test]
fn actions_the_token_may_not_do_are_not_offered() {
    let mut app = loaded_app();
    update(&mut app, Event::Access(principal(&["default:read"])), T0);
    assert_eq!(
        app.access_label().as_deref(),
        Some("as reader (default:read)")
    );
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Down);
    for k in ['d', 'D', 'a'] {
        key(&mut app, Key::Char(k));
        assert!(app.confirm.is_none(), "{k} is not offered to a reader");
    }
    key(&mut app, Key::Char('3'));
    key(&mut app, Key::Char('x'));
    assert!(app.confirm.is_none(), "x is not offered to a reader");
    key(&mut app, Key::Char('1'));
    for k in ['R', 'L'] {
        key(&mut app, Key::Char(k));
        assert!(app.confirm.is_none(), "{k} is not offered to a reader");
    }
    let offered: Vec<&str> = crate::view::offered_keys(&app)
        .iter()
        .map(|k| k.0)
        .collect();
    for k in ["d / D", "a", "x", "R", "L"] {
        assert!(!offered.contains(&k), "{k} in the help: {offered:?}");
    }
    // Stats need admin: not asked for.
    let cmds = update(&mut app, Event::Tick, T0 + 5000);
    assert!(!cmds.contains(&Command::RefreshStats), "{cmds:?}");

    // A writer may append, still not delete.
    update(
        &mut app,
        Event::Access(principal(&["default:read+write"])),
        T0,
    );
    key(&mut app, Key::Char('2'));
    key(&mut app, Key::Char('d'));
    assert!(app.confirm.is_none());
    key(&mut app, Key::Char('a'));
    assert!(app.confirm.is_some(), "a writer is offered the test append");
}
