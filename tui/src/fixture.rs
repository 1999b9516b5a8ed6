//! Fixed data for the update and render tests: a 3-node store, a page of
//! streams, a page of events, some subscriptions and node stats, at a fixed time.

use std::time::Duration;

use reckon_gater::api::{HealthReport, NodeStatus, StoreHealth, StoreStatus};
use reckon_gater::metrics::{Histogram, HistogramSnapshot, StoreStats};
use reckon_gater::subscription::{StartFrom, SubscriptionInfo};
use reckon_gater::types::Role;
use reckon_gater::types::SubscriptionType;
use reckon_gater::{ContentType, EventRecord, StreamInfo, StreamPage};

use crate::app::{update, App, ClusterData, Event, Millis};

/// 2025-01-02 03:04:05 UTC.
pub const T0: Millis = 1_735_787_045_000;

pub fn node(id: u64, role: Role, applied: u64, appended: u64) -> NodeStatus {
    NodeStatus {
        node_id: id,
        address: format!("127.0.0.1:{}", 7600 + id),
        role,
        term: 3,
        last_log_index: 120,
        applied_index: applied,
        last_heartbeat_ms: 40 * id,
        leader_changes: 2,
        appended_events: appended,
        healthy: true,
    }
}

pub fn cluster(leader: u64, appended: u64) -> ClusterData {
    let nodes = (1..=3)
        .map(|id| {
            let role = if id == leader {
                Role::Leader
            } else {
                Role::Follower
            };
            let applied = if id == leader { 120 } else { 118 - id };
            let appended = if id == leader { appended } else { 0 };
            node(id, role, applied, appended)
        })
        .collect();
    ClusterData {
        status: vec![StoreStatus {
            store: "default".into(),
            leader: Some(leader),
            term: 3,
            nodes,
        }],
        health: HealthReport {
            stores: vec![StoreHealth {
                store: "default".into(),
                healthy: true,
                leader: Some(leader),
                workers: 3,
                leaders: 1,
                followers: 2,
                learners: 0,
                suspect: 0,
            }],
            leases_expired: 0,
            audit: Default::default(),
        },
    }
}

/// A histogram holding `n` observations of `us` microseconds per `(us, n)`.
pub fn hist(obs: &[(u64, u64)]) -> HistogramSnapshot {
    let h = Histogram::default();
    for &(us, n) in obs {
        for _ in 0..n {
            h.record(Duration::from_micros(us));
        }
    }
    h.snapshot()
}

/// Store `default` on node `id`: counters as given, nothing else.
pub fn node_stats(id: u64, role: Role, appended: u64, read: u64) -> StoreStats {
    StoreStats {
        store: "default".into(),
        node_id: id,
        role: Some(role),
        events: 1_000 + appended,
        appended_events: appended,
        read_events: read,
        leader_changes: 2,
        ..StoreStats::default()
    }
}

/// Stats of store `default` at refresh `round` (0, 1, ...) of `loaded_app`: node 2
/// leads and appends 50 events per round (100 µs each, 10 of them 4 ms), node 3
/// serves 200 reads per round (300 µs); errors grow on node 2.
pub fn stats(round: u64) -> Vec<StoreStats> {
    let mut leader = node_stats(2, Role::Leader, 1_000 + 50 * round, 0);
    leader.append_latency = hist(&[(100, 40 * (round + 1)), (4_000, 10 * (round + 1))]);
    leader.errors = [
        ("WrongExpectedVersion".to_string(), 2 + round),
        ("StreamNotFound".to_string(), 2),
    ]
    .into();
    let mut reader = node_stats(3, Role::Follower, 0, 5_000 + 200 * round);
    reader.events = 1_048;
    reader.read_latency = hist(&[(300, 200 * (round + 1))]);
    vec![node_stats(1, Role::Follower, 0, 0), leader, reader]
}

/// A page of `n` streams as `list_streams` gives it (`resume_after` when full).
pub fn page(n: usize) -> StreamPage {
    let streams = streams(n);
    StreamPage {
        resume_after: (n >= crate::app::STREAMS_PAGE as usize)
            .then(|| streams.last().map(|s| s.stream_id.clone()))
            .flatten(),
        streams,
    }
}

pub fn streams(n: usize) -> Vec<StreamInfo> {
    (0..n)
        .map(|i| StreamInfo {
            stream_id: format!("{}-{i:03}", if i % 2 == 0 { "order" } else { "user" }),
            version: i as u64,
        })
        .collect()
}

pub fn events(stream: &str, n: u64) -> Vec<EventRecord> {
    (0..n)
        .map(|v| EventRecord {
            stream_id: stream.into(),
            version: v,
            position: 100 + v * 3,
            event_id: uuid::Uuid::from_u128(
                0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(v),
            ),
            event_type: if v == 0 {
                "OrderPlaced".into()
            } else {
                "ItemAdded".into()
            },
            data: serde_json::to_vec(
                &serde_json::json!({"order": 42, "sku": format!("sku-{v}"), "qty": v + 1}),
            )
            .unwrap(),
            metadata: serde_json::to_vec(&serde_json::json!({"user": "ada"})).unwrap(),
            content_type: ContentType::Json,
            tags: vec!["eu".into()],
            timestamp_us: (T0 - 60_000 + v * 1000) * 1000,
        })
        .collect()
}

/// The subscriptions after `round` lists: `audit` delivers 30 events per round,
/// `billing` 12.
pub fn subscriptions(round: u64) -> Vec<SubscriptionInfo> {
    let sub = |key: &str, kind, selector: &str, name: &str, cursor, consumers| SubscriptionInfo {
        key: key.into(),
        kind,
        selector: selector.into(),
        name: name.into(),
        start_from: StartFrom::Beginning,
        pool_size: 2,
        cursor,
        created_us: 0,
        head: 500,
        consumers,
        delivered: 0,
    };
    vec![
        SubscriptionInfo {
            delivered: 460 + 30 * round,
            ..sub("k1", SubscriptionType::Stream, "$all", "audit", 490, 1)
        },
        SubscriptionInfo {
            delivered: 100 + 12 * round,
            ..sub(
                "k2",
                SubscriptionType::EventPattern,
                "order-*",
                "billing",
                120,
                2,
            )
        },
        sub(
            "k3",
            SubscriptionType::EventType,
            "ItemAdded",
            "search",
            0,
            0,
        ),
    ]
}

/// An app that has been refreshed twice, 1 s apart (leader 1 then 2, [`stats`]
/// rounds 0 and 1, subscriptions rounds 0 and 1), with streams and subscriptions of
/// store `default` loaded.
pub fn loaded_app() -> App {
    let mut app = App::new(vec!["127.0.0.1:7700".into()], 1000);
    update(&mut app, Event::Connected, T0 - 2000);
    for (round, leader, at) in [(0, 1, T0 - 2000), (1, 2, T0 - 1000)] {
        update(&mut app, Event::Tick, at);
        update(&mut app, Event::Cluster(Ok(cluster(leader, 100))), at);
        update(&mut app, Event::Stats(Ok(stats(round))), at);
        update(
            &mut app,
            Event::Subscriptions {
                store: "default".into(),
                result: Ok(subscriptions(round)),
            },
            at + 500,
        );
    }
    update(
        &mut app,
        Event::Streams {
            store: "default".into(),
            contains: None,
            after: None,
            result: Ok(page(12)),
        },
        T0 - 500,
    );
    app
}
