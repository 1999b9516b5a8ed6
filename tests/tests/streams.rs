//! The acceptance scenarios of streams, row by row, against a real
//! `reckon-node --dev` process over TCP.
//!
//! Versions are 0-based; the seed's integers are -1 NoStream, -2 Any and
//! -4 StreamExists. Every test starts its own node on its own data directory.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use reckon_gater::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, StoreError, StreamInfo,
    TagMatch,
};
use reckon_tests::{DevStore, NodeProc, StoreClient};
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use Direction::{Backward, Forward};
use ExpectedVersion::{Any, Exact, NoStream, StreamExists};

/// A JSON event of `event_type` whose data carries `n`.
fn ev(event_type: &str, n: u64) -> NewEvent {
    NewEvent::json(event_type, &json!({ "n": n }))
}

fn evs(event_type: &str, count: u64) -> Vec<NewEvent> {
    (0..count).map(|n| ev(event_type, n)).collect()
}

fn versions(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn positions(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn field_of(err: StoreError) -> String {
    match err {
        StoreError::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

fn not_found(stream: &str) -> StoreError {
    StoreError::StreamNotFound {
        stream_id: stream.to_string(),
    }
}

#[tokio::test]
async fn new_stream_append_no_stream_gives_version_0() {
    let f = DevStore::start().await;
    let r =
        f.db.append("order-1", NoStream, vec![ev("placed", 1)])
            .await
            .unwrap();
    assert_eq!(
        r,
        AppendResult {
            version: 0,
            first_position: 0,
            last_position: 0
        }
    );
    assert_eq!(f.db.version("order-1").await.unwrap(), Some(0));
}

#[tokio::test]
async fn next_append_exact_0_gives_version_1() {
    let f = DevStore::start().await;
    f.db.append("order-1", NoStream, vec![ev("placed", 1)])
        .await
        .unwrap();
    let r =
        f.db.append("order-1", Exact(0), vec![ev("paid", 2)])
            .await
            .unwrap();
    assert_eq!(
        r,
        AppendResult {
            version: 1,
            first_position: 1,
            last_position: 1
        }
    );
    let read = f.db.read("order-1", 0, 10, Forward).await.unwrap();
    assert_eq!(versions(&read), vec![0, 1]);
    assert_eq!(read[1].event_type, "paid");
}

#[tokio::test]
async fn any_twice_on_a_new_stream_gives_0_then_1() {
    let f = DevStore::start().await;
    let first = f.db.append("s", Any, vec![ev("a", 0)]).await.unwrap();
    let second = f.db.append("s", Any, vec![ev("a", 1)]).await.unwrap();
    assert_eq!(first.version, 0);
    assert_eq!(second.version, 1);
    assert_eq!(
        (second.first_position, second.last_position),
        (1, 1),
        "{second:?}"
    );
}

#[tokio::test]
async fn wrong_version_names_expected_and_current() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, vec![ev("a", 0)]).await.unwrap();
    let err =
        f.db.append("s", Exact(5), vec![ev("a", 1)])
            .await
            .unwrap_err();
    assert_eq!(
        err,
        StoreError::WrongExpectedVersion {
            expected: Exact(5),
            current: Some(0)
        }
    );
    assert_eq!(
        err.to_string(),
        "WrongExpectedVersion: expected 5, current 0"
    );
    // Nothing was written.
    assert_eq!(f.db.version("s").await.unwrap(), Some(0));
    assert_eq!(f.db.read_all_everything().await.len(), 1);
}

#[tokio::test]
async fn no_stream_on_an_existing_stream_is_refused() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, vec![ev("a", 0)]).await.unwrap();
    let err =
        f.db.append("s", NoStream, vec![ev("a", 1)])
            .await
            .unwrap_err();
    assert_eq!(
        err,
        StoreError::WrongExpectedVersion {
            expected: NoStream,
            current: Some(0)
        }
    );
    assert_eq!(
        err.to_string(),
        "WrongExpectedVersion: expected -1, current 0"
    );
    assert_eq!(f.db.read_all_everything().await.len(), 1);
}

#[tokio::test]
async fn stream_exists_fails_on_missing_and_succeeds_on_existing() {
    let f = DevStore::start().await;
    let err =
        f.db.append("s", StreamExists, vec![ev("a", 0)])
            .await
            .unwrap_err();
    assert_eq!(
        err,
        StoreError::WrongExpectedVersion {
            expected: StreamExists,
            current: None
        }
    );
    assert_eq!(
        err.to_string(),
        "WrongExpectedVersion: expected -4, current -1"
    );
    assert!(!f.db.exists("s").await.unwrap());
    assert!(f.db.read_all_everything().await.is_empty());

    f.db.append("s", NoStream, vec![ev("a", 0)]).await.unwrap();
    let r =
        f.db.append("s", StreamExists, vec![ev("a", 1)])
            .await
            .unwrap();
    assert_eq!(
        r,
        AppendResult {
            version: 1,
            first_position: 1,
            last_position: 1
        }
    );
}

#[tokio::test]
async fn batch_of_5_gets_consecutive_versions_and_positions() {
    let f = DevStore::start().await;
    // Something before it, so the batch's positions do not start at 0.
    f.db.append("other", NoStream, vec![ev("x", 0)])
        .await
        .unwrap();
    let r = f.db.append("s", NoStream, evs("b", 5)).await.unwrap();
    assert_eq!(
        r,
        AppendResult {
            version: 4,
            first_position: 1,
            last_position: 5
        }
    );
    let read = f.db.read("s", 0, 10, Forward).await.unwrap();
    assert_eq!(versions(&read), vec![0, 1, 2, 3, 4]);
    assert_eq!(positions(&read), vec![1, 2, 3, 4, 5]);
    // One batch, one timestamp.
    assert!(
        read.iter().all(|e| e.timestamp_us == read[0].timestamp_us),
        "{read:?}"
    );
    for (i, e) in read.iter().enumerate() {
        let data: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(data, json!({ "n": i }));
    }
}

/// What one concurrent writer saw.
#[derive(Default)]
struct WriterLog {
    /// (version, event id, result) of every append that succeeded.
    wins: Vec<(u64, Uuid, AppendResult)>,
    /// Appends refused with WrongExpectedVersion.
    conflicts: usize,
}

/// Appends one event at a time to `stream`, expecting the version it last saw, until
/// the stream holds `target` events.
async fn contend(db: StoreClient, stream: String, start: Arc<Barrier>, target: u64) -> WriterLog {
    const ATTEMPTS_MAX: usize = 10_000;
    let mut log = WriterLog::default();
    let mut expected = NoStream;
    start.wait().await;
    for _ in 0..ATTEMPTS_MAX {
        let id = Uuid::new_v4();
        let event = NewEvent::json("claimed", &json!({ "stream": stream })).with_id(id);
        match db.append(&stream, expected, vec![event]).await {
            Ok(r) => {
                assert_eq!(
                    (r.first_position, r.last_position),
                    (r.last_position, r.first_position)
                );
                log.wins.push((r.version, id, r));
                if r.version + 1 >= target {
                    return log;
                }
                expected = Exact(r.version);
            }
            Err(StoreError::WrongExpectedVersion { current, .. }) => {
                log.conflicts += 1;
                match current {
                    Some(v) if v + 1 >= target => return log,
                    Some(v) => expected = Exact(v),
                    None => expected = NoStream,
                }
            }
            Err(e) => panic!("append to {stream}: {e:?}"),
        }
    }
    panic!("writer on {stream} did not finish in {ATTEMPTS_MAX} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_one_winner_per_version_no_gap() {
    const WRITERS: usize = 20;
    const TARGET: u64 = 100;
    let streams = ["race-a", "race-b", "race-c"];
    let f = DevStore::start().await;
    let start = Arc::new(Barrier::new(WRITERS * streams.len()));
    let mut tasks = Vec::new();
    for stream in streams {
        for _ in 0..WRITERS {
            // Each writer has its own connection.
            let db = StoreClient::connect(&f.node, "default").await;
            tasks.push(tokio::spawn(contend(
                db,
                stream.to_string(),
                start.clone(),
                TARGET,
            )));
        }
    }
    let mut logs: BTreeMap<&str, Vec<WriterLog>> = BTreeMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        logs.entry(streams[i / WRITERS])
            .or_default()
            .push(t.await.expect("writer task"));
    }

    let all = f.db.read_all_everything().await;
    for (stream, logs) in &logs {
        // Exactly one winner per version, none missing, none twice.
        let mut wins: Vec<(u64, Uuid, AppendResult)> =
            logs.iter().flat_map(|l| l.wins.iter().copied()).collect();
        wins.sort_by_key(|w| w.0);
        assert_eq!(
            wins.iter().map(|w| w.0).collect::<Vec<_>>(),
            (0..TARGET).collect::<Vec<_>>(),
            "versions won on {stream}"
        );
        // All writers started at once with NoStream: at most one of them won that.
        let conflicts: usize = logs.iter().map(|l| l.conflicts).sum();
        assert!(
            conflicts >= WRITERS - 1,
            "{stream}: only {conflicts} conflicts among {WRITERS} writers"
        );
        // The stream holds exactly the winners, in order, where they were acknowledged.
        let read = f.db.read_stream_everything(stream).await.unwrap();
        assert_eq!(read.len() as u64, TARGET, "{stream}");
        for (e, (v, id, r)) in read.iter().zip(&wins) {
            assert_eq!(
                (e.version, e.event_id, e.position),
                (*v, *id, r.first_position),
                "{stream}"
            );
            assert_eq!(all[e.position as usize], *e);
        }
    }
    // The global log across the three streams: gapless, unique, each event once.
    assert_eq!(all.len() as u64, TARGET * streams.len() as u64);
    assert_eq!(
        positions(&all),
        (0..all.len() as u64).collect::<Vec<_>>(),
        "global positions"
    );
    let ids: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "an event appears twice in $all");
    let keys: BTreeSet<(&str, u64)> = all
        .iter()
        .map(|e| (e.stream_id.as_str(), e.version))
        .collect();
    assert_eq!(keys.len(), all.len(), "a (stream, version) appears twice");
}

#[tokio::test]
async fn idempotent_retry_returns_the_first_result_and_stores_one_copy() {
    let f = DevStore::start().await;
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let batch = |ids: &[Uuid]| -> Vec<NewEvent> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| ev("ordered", i as u64).with_id(*id))
            .collect()
    };
    let first = f.db.append("s", NoStream, batch(&ids)).await.unwrap();
    assert_eq!(
        first,
        AppendResult {
            version: 2,
            first_position: 0,
            last_position: 2
        }
    );
    let again = f.db.append("s", NoStream, batch(&ids)).await.unwrap();
    assert_eq!(again, first, "a retry gives the original result");
    let read = f.db.read_stream_everything("s").await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids,
        "one copy in the stream"
    );
    assert_eq!(
        f.db.read_all_everything().await.len(),
        3,
        "one copy in $all"
    );

    // A retry with Exact(expected) after it succeeded, and one with Any.
    let d = Uuid::new_v4();
    let r =
        f.db.append("s", Exact(2), vec![ev("shipped", 3).with_id(d)])
            .await
            .unwrap();
    assert_eq!(
        r,
        AppendResult {
            version: 3,
            first_position: 3,
            last_position: 3
        }
    );
    let retried =
        f.db.append("s", Exact(2), vec![ev("shipped", 3).with_id(d)])
            .await
            .unwrap();
    assert_eq!(retried, r);
    let retried =
        f.db.append("s", Any, vec![ev("shipped", 3).with_id(d)])
            .await
            .unwrap();
    assert_eq!(retried, r);
    assert_eq!(f.db.read_stream_everything("s").await.unwrap().len(), 4);
    assert_eq!(f.db.read_all_everything().await.len(), 4);

    // The first batch no longer stands at the head: it is still a retry, wherever it
    // stands, and gets its first answer; nothing is written.
    let again = f.db.append("s", NoStream, batch(&ids)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(f.db.read_all_everything().await.len(), 4);
}

#[tokio::test]
async fn a_reused_event_id_is_refused_and_nothing_is_written() {
    let f = DevStore::start().await;
    let a = Uuid::new_v4();
    f.db.append("s", NoStream, vec![ev("placed", 0).with_id(a)])
        .await
        .unwrap();
    f.db.append("s", Any, vec![ev("paid", 1)]).await.unwrap();
    let refused = |e: StoreError| {
        assert_eq!(e, StoreError::DuplicateEventId { event_id: a });
    };
    // In another stream.
    refused(
        f.db.append("t", Any, vec![ev("placed", 0).with_id(a)])
            .await
            .unwrap_err(),
    );
    // In the same stream, with a fresh id beside it: not a retry either.
    refused(
        f.db.append("s", Any, vec![ev("x", 2), ev("y", 3).with_id(a)])
            .await
            .unwrap_err(),
    );
    assert_eq!(f.db.read_all_everything().await.len(), 2, "nothing written");
    assert_eq!(f.db.version("t").await.unwrap(), None);
}

#[tokio::test]
async fn read_forward_gives_versions_0_to_4() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 5)).await.unwrap();
    let read = f.db.read("s", 0, 10, Forward).await.unwrap();
    assert_eq!(versions(&read), vec![0, 1, 2, 3, 4]);
    assert!(read
        .iter()
        .all(|e| e.stream_id == "s" && e.event_type == "e"));
}

#[tokio::test]
async fn read_backward_gives_4_down_to_0() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 5)).await.unwrap();
    let read = f.db.read("s", 4, 5, Backward).await.unwrap();
    assert_eq!(versions(&read), vec![4, 3, 2, 1, 0]);
    assert_eq!(positions(&read), vec![4, 3, 2, 1, 0]);
}

#[tokio::test]
async fn read_count_limits_the_events() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 10)).await.unwrap();
    let read = f.db.read("s", 0, 3, Forward).await.unwrap();
    assert_eq!(versions(&read), vec![0, 1, 2]);
}

#[tokio::test]
async fn read_pages_forward_and_backward() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 10)).await.unwrap();
    assert_eq!(
        versions(&f.db.read("s", 5, 3, Forward).await.unwrap()),
        vec![5, 6, 7]
    );
    assert_eq!(
        versions(&f.db.read("s", 7, 3, Backward).await.unwrap()),
        vec![7, 6, 5]
    );
    // A backward page that reaches the start stops at 0.
    assert_eq!(
        versions(&f.db.read("s", 1, 3, Backward).await.unwrap()),
        vec![1, 0]
    );
}

#[tokio::test]
async fn read_of_a_missing_stream_is_stream_not_found() {
    let f = DevStore::start().await;
    f.db.append("other", NoStream, vec![ev("e", 0)])
        .await
        .unwrap();
    assert_eq!(
        f.db.read("missing", 0, 10, Forward).await.unwrap_err(),
        not_found("missing")
    );
    assert_eq!(
        f.db.read("missing", 0, 10, Backward).await.unwrap_err(),
        not_found("missing")
    );
}

#[tokio::test]
async fn read_past_the_end_is_empty() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 3)).await.unwrap();
    assert_eq!(f.db.read("s", 100, 10, Forward).await.unwrap(), vec![]);
    assert_eq!(f.db.read("s", 3, 10, Forward).await.unwrap(), vec![]);
    assert_eq!(
        versions(&f.db.read("s", 2, 10, Forward).await.unwrap()),
        vec![2]
    );
}

#[tokio::test]
async fn get_version_of_new_5_and_7_events() {
    let f = DevStore::start().await;
    assert_eq!(
        f.db.version("s").await.unwrap(),
        None,
        "-1 for a new stream"
    );
    f.db.append("s", NoStream, evs("e", 5)).await.unwrap();
    assert_eq!(f.db.version("s").await.unwrap(), Some(4));
    f.db.append("s", Exact(4), evs("e", 2)).await.unwrap();
    assert_eq!(f.db.version("s").await.unwrap(), Some(6));
}

#[tokio::test]
async fn exists_after_append_and_never_written() {
    let f = DevStore::start().await;
    f.db.append("written", NoStream, vec![ev("e", 0)])
        .await
        .unwrap();
    assert!(f.db.exists("written").await.unwrap());
    assert!(!f.db.exists("never").await.unwrap());
}

#[tokio::test]
async fn list_streams_gives_both_with_versions_and_pages() {
    let f = DevStore::start().await;
    assert_eq!(f.db.list_streams(None, 100).await.unwrap(), vec![]);
    f.db.append("b-stream", NoStream, evs("e", 3))
        .await
        .unwrap();
    f.db.append("a-stream", NoStream, vec![ev("e", 0)])
        .await
        .unwrap();
    let info = |id: &str, version| StreamInfo {
        stream_id: id.to_string(),
        version,
    };
    assert_eq!(
        f.db.list_streams(None, 100).await.unwrap(),
        vec![info("a-stream", 0), info("b-stream", 2)]
    );
    assert_eq!(
        f.db.list_streams(None, 1).await.unwrap(),
        vec![info("a-stream", 0)]
    );
    assert_eq!(
        f.db.list_streams(Some("a-stream"), 1).await.unwrap(),
        vec![info("b-stream", 2)]
    );
    assert_eq!(
        f.db.list_streams(Some("b-stream"), 1).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn read_all_interleaves_three_streams_by_position() {
    let f = DevStore::start().await;
    let streams = ["s1", "s2", "s3"];
    let mut appended = Vec::new();
    for round in 0..3u64 {
        for s in streams {
            let id = Uuid::new_v4();
            let expected = if round == 0 {
                NoStream
            } else {
                Exact(round - 1)
            };
            f.db.append(s, expected, vec![ev("e", round).with_id(id)])
                .await
                .unwrap();
            appended.push((s.to_string(), round, id));
        }
    }
    let all = f.db.read_all(0, 100, Forward).await.unwrap();
    assert_eq!(positions(&all), (0..9).collect::<Vec<_>>());
    assert_eq!(
        all.iter()
            .map(|e| (e.stream_id.clone(), e.version, e.event_id))
            .collect::<Vec<_>>(),
        appended,
        "every event once, in append order"
    );
    let back = f.db.read_all(8, 100, Backward).await.unwrap();
    assert_eq!(positions(&back), (0..9).rev().collect::<Vec<_>>());
    let page = f.db.read_all(3, 3, Forward).await.unwrap();
    assert_eq!(page, all[3..6].to_vec());
    assert_eq!(f.db.read_all(9, 10, Forward).await.unwrap(), vec![]);
}

/// The page sizes and events `read_all_pages` gives from `from` in pages of `page`.
async fn pages_from(f: &DevStore, from: u64, page: u32) -> (Vec<usize>, Vec<EventRecord>) {
    use futures::StreamExt;
    let mut pages = std::pin::pin!(f.db.handle.read_all_pages(from, page));
    let (mut sizes, mut events) = (Vec::new(), Vec::new());
    while let Some(p) = pages.next().await {
        let p = p.expect("page");
        sizes.push(p.len());
        events.extend(p);
    }
    (sizes, events)
}

#[tokio::test]
async fn read_all_pages_streams_the_whole_log_once_in_order() {
    let f = DevStore::start().await;
    for s in ["a", "b", "c", "a", "b"] {
        f.db.append(s, Any, evs("e", 5)).await.unwrap();
    }
    let all = f.db.read_all(0, 100, Forward).await.unwrap();
    assert_eq!(all.len(), 25);

    assert_eq!(pages_from(&f, 0, 10).await, (vec![10, 10, 5], all.clone()));
    // A log that ends on a page's edge ends with the empty page after it.
    assert_eq!(pages_from(&f, 0, 5).await, (vec![5; 5], all.clone()));
    assert_eq!(
        pages_from(&f, 7, 10).await,
        (vec![10, 8], all[7..].to_vec())
    );
    assert_eq!(pages_from(&f, 25, 10).await, (vec![], vec![]));
}

#[tokio::test]
async fn read_all_pages_asks_again_after_a_page_cut_short_by_its_byte_limit() {
    let f = DevStore::start().await;
    // 12 events of 1,000,000 bytes: a page holds 9 of them before it reaches the
    // node's 8 MiB per read, so the pages asked for ahead, as if it held 10, start
    // at the wrong place and must be asked again.
    let big = |n: u8| NewEvent {
        data: vec![n; 1_000_000],
        content_type: reckon_gater::types::ContentType::Binary,
        ..ev("big", u64::from(n))
    };
    for a in 0..4u8 {
        let batch = (0..3).map(|i| big(a * 3 + i)).collect();
        f.db.append("big", Any, batch).await.unwrap();
    }
    let (sizes, events) = pages_from(&f, 0, 10).await;
    assert_eq!(sizes, vec![9, 3], "the first page stops at the byte limit");
    assert_eq!(positions(&events), (0..12).collect::<Vec<_>>());
    assert!(events.iter().enumerate().all(|(i, e)| e.data[0] == i as u8));
}

#[tokio::test]
async fn read_by_type_gives_matching_events_in_position_order_paged() {
    let f = DevStore::start().await;
    f.db.append("s1", NoStream, vec![ev("A", 0)]).await.unwrap();
    f.db.append("s2", NoStream, vec![ev("B", 1)]).await.unwrap();
    f.db.append("s1", Exact(0), vec![ev("A", 2)]).await.unwrap();

    let a = f.db.read_by_types(&["A"], 0, 10).await.unwrap();
    assert_eq!(positions(&a), vec![0, 2]);
    assert!(a.iter().all(|e| e.event_type == "A" && e.stream_id == "s1"));
    // Paged.
    let page1 = f.db.read_by_types(&["A"], 0, 1).await.unwrap();
    assert_eq!(positions(&page1), vec![0]);
    let page2 = f.db.read_by_types(&["A"], 1, 1).await.unwrap();
    assert_eq!(positions(&page2), vec![2]);
    assert_eq!(f.db.read_by_types(&["A"], 3, 1).await.unwrap(), vec![]);

    assert_eq!(
        positions(&f.db.read_by_types(&["B"], 0, 10).await.unwrap()),
        vec![1]
    );
    assert_eq!(
        positions(&f.db.read_by_types(&["A", "B"], 0, 10).await.unwrap()),
        vec![0, 1, 2]
    );
    assert_eq!(
        positions(&f.db.read_by_types(&[], 0, 10).await.unwrap()),
        vec![0, 1, 2],
        "no types means every event"
    );
    assert_eq!(f.db.read_by_types(&["C"], 0, 10).await.unwrap(), vec![]);
}

#[tokio::test]
async fn read_by_tags_any_all_and_untagged_never_matches() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, vec![ev("e", 0).with_tags(["x"])])
        .await
        .unwrap();
    f.db.append("s", Exact(0), vec![ev("e", 1).with_tags(["x", "y"])])
        .await
        .unwrap();
    f.db.append("s", Exact(1), vec![ev("e", 2)]).await.unwrap();

    let any =
        f.db.read_by_tags(&["x", "y"], TagMatch::Any, 0, 10)
            .await
            .unwrap();
    assert_eq!(positions(&any), vec![0, 1]);
    let all =
        f.db.read_by_tags(&["x", "y"], TagMatch::All, 0, 10)
            .await
            .unwrap();
    assert_eq!(positions(&all), vec![1]);
    assert_eq!(all[0].tags, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(
        positions(
            &f.db
                .read_by_tags(&["y"], TagMatch::Any, 0, 10)
                .await
                .unwrap()
        ),
        vec![1]
    );
    assert_eq!(
        positions(
            &f.db
                .read_by_tags(&["x"], TagMatch::Any, 1, 10)
                .await
                .unwrap()
        ),
        vec![1],
        "paged from position 1"
    );
    assert_eq!(
        f.db.read_by_tags(&[], TagMatch::Any, 0, 10).await.unwrap(),
        vec![],
        "the untagged event matches no tag query"
    );
    assert_eq!(
        f.db.read_by_tags(&[], TagMatch::All, 0, 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        f.db.read_by_tags(&["x", "z"], TagMatch::All, 0, 10)
            .await
            .unwrap(),
        vec![],
        "a tag no event carries"
    );
}

#[tokio::test]
async fn delete_hides_the_stream_but_keeps_the_global_log() {
    let f = DevStore::start().await;
    let tagged = |n| ev("T", n).with_tags(["t"]);
    f.db.append("doomed", NoStream, vec![tagged(0), tagged(1)])
        .await
        .unwrap();
    f.db.append("kept", NoStream, vec![tagged(2)])
        .await
        .unwrap();
    let before = f.db.read_all_everything().await;

    f.db.delete("doomed", false).await.unwrap();
    assert!(!f.db.exists("doomed").await.unwrap());
    assert_eq!(f.db.version("doomed").await.unwrap(), None);
    assert_eq!(
        f.db.read("doomed", 0, 10, Forward).await.unwrap_err(),
        not_found("doomed")
    );
    // Gone from the type and tag indexes; the other stream's event stays.
    assert_eq!(
        positions(&f.db.read_by_types_everything(&["T"]).await),
        vec![2]
    );
    assert_eq!(
        positions(&f.db.read_by_tags_everything(&["t"], TagMatch::Any).await),
        vec![2]
    );
    assert_eq!(
        f.db.list_streams(None, 100).await.unwrap(),
        vec![StreamInfo {
            stream_id: "kept".into(),
            version: 0
        }]
    );
    // Still in $all at its positions.
    assert_eq!(f.db.read_all_everything().await, before);
    // Deleting it again is fine and changes nothing.
    f.db.delete("doomed", false).await.unwrap();
    assert_eq!(f.db.read_all_everything().await, before);
}

#[tokio::test]
async fn delete_of_a_missing_stream_is_ok() {
    let f = DevStore::start().await;
    f.db.delete("never-written", false).await.unwrap();
    assert!(!f.db.exists("never-written").await.unwrap());
    assert_eq!(f.db.list_streams(None, 100).await.unwrap(), vec![]);
    assert_eq!(f.db.read_all_everything().await, vec![]);
    // It can be created afterwards as usual.
    let r =
        f.db.append("never-written", NoStream, vec![ev("e", 0)])
            .await
            .unwrap();
    assert_eq!(r.version, 0);
}

#[tokio::test]
async fn recreate_after_delete_continues_the_numbering_and_all_keeps_old_positions() {
    let f = DevStore::start().await;
    let old_ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    f.db.append(
        "s",
        NoStream,
        old_ids.iter().map(|id| ev("old", 0).with_id(*id)).collect(),
    )
    .await
    .unwrap();
    f.db.append("other", NoStream, vec![ev("e", 0)])
        .await
        .unwrap();
    let before = f.db.read_all_everything().await;
    assert_eq!(positions(&before), vec![0, 1, 2, 3, 4, 5]);

    f.db.delete("s", false).await.unwrap();
    // Deleted: as if it did not exist, for reads and for expected versions.
    assert_eq!(f.db.version("s").await.unwrap(), None);
    let new_id = Uuid::new_v4();
    let r =
        f.db.append("s", NoStream, vec![ev("new", 0).with_id(new_id)])
            .await
            .unwrap();
    // Versions are never reused: the stream goes on after its last version, 4.
    assert_eq!(
        r,
        AppendResult {
            version: 5,
            first_position: 6,
            last_position: 6
        }
    );
    let read = f.db.read("s", 0, 10, Forward).await.unwrap();
    assert_eq!(read.len(), 1, "only the new incarnation: {read:?}");
    assert_eq!(
        (read[0].version, read[0].position, read[0].event_id),
        (5, 6, new_id)
    );
    // A page of one from version 0 finds it: the deleted versions hold nothing and
    // do not count.
    assert_eq!(f.db.read("s", 0, 1, Forward).await.unwrap(), read);
    assert_eq!(f.db.read("s", u64::MAX, 1, Backward).await.unwrap(), read);
    assert_eq!(f.db.read("s", 4, 10, Backward).await.unwrap(), vec![]);
    let after = f.db.read_all_everything().await;
    assert_eq!(after[..6], before[..], "old positions kept");
    assert_eq!(after[6], read[0]);
    assert_eq!(f.db.version("s").await.unwrap(), Some(5));
    assert_eq!(
        f.db.list_streams(None, 100).await.unwrap(),
        vec![
            StreamInfo {
                stream_id: "other".into(),
                version: 0
            },
            StreamInfo {
                stream_id: "s".into(),
                version: 5
            }
        ]
    );
    assert_eq!(
        positions(&f.db.read_by_types_everything(&["old"]).await),
        Vec::<u64>::new()
    );
    assert_eq!(
        positions(&f.db.read_by_types_everything(&["new"]).await),
        vec![6]
    );
    // Writers that expected the new incarnation's version are right.
    f.db.append("s", Exact(5), vec![ev("new", 1)])
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_checks_the_expected_version_atomically_and_a_refusal_changes_nothing() {
    let f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 3)).await.unwrap();
    let before = f.db.read_all_everything().await;
    let wrong = |expected, current| StoreError::WrongExpectedVersion { expected, current };
    for (expected, hard) in [(Exact(1), false), (Exact(3), true), (NoStream, false)] {
        assert_eq!(
            f.db.delete_expected("s", expected, hard).await.unwrap_err(),
            wrong(expected, Some(2)),
            "{expected:?} hard={hard}"
        );
    }
    assert_eq!(f.db.version("s").await.unwrap(), Some(2));
    assert_eq!(f.db.read("s", 0, 10, Forward).await.unwrap(), before);
    assert_eq!(
        f.db.delete_expected("never", StreamExists, false)
            .await
            .unwrap_err(),
        wrong(StreamExists, None)
    );

    f.db.delete_expected("s", Exact(2), false).await.unwrap();
    assert_eq!(f.db.version("s").await.unwrap(), None);
    // Deleted, it no longer exists: a second delete expecting 2 is refused.
    assert_eq!(
        f.db.delete_expected("s", Exact(2), false)
            .await
            .unwrap_err(),
        wrong(Exact(2), None)
    );
    f.db.delete_expected("s", NoStream, false).await.unwrap();
    // Recreated, then tombstoned at its exact version.
    let r = f.db.append("s", NoStream, evs("e", 1)).await.unwrap();
    assert_eq!(r.version, 3);
    f.db.delete_expected("s", Exact(3), true).await.unwrap();
    assert_eq!(
        f.db.delete_expected("s", Any, true).await.unwrap_err(),
        StoreError::StreamDeleted {
            stream_id: "s".into()
        }
    );
}

#[tokio::test]
async fn hard_delete_refuses_appends_for_ever_even_after_restart() {
    let mut f = DevStore::start().await;
    f.db.append("s", NoStream, evs("e", 2)).await.unwrap();
    f.db.delete("s", true).await.unwrap();
    // And one that was never written.
    f.db.delete("never", true).await.unwrap();
    let deleted = |s: &str| StoreError::StreamDeleted {
        stream_id: s.to_string(),
    };
    for expected in [Any, NoStream, Exact(1), StreamExists] {
        assert_eq!(
            f.db.append("s", expected, vec![ev("e", 9)])
                .await
                .unwrap_err(),
            deleted("s"),
            "{expected:?}"
        );
    }
    assert_eq!(
        f.db.append("never", Any, vec![ev("e", 9)])
            .await
            .unwrap_err(),
        deleted("never")
    );
    assert!(!f.db.exists("s").await.unwrap());
    assert_eq!(
        f.db.read("s", 0, 10, Forward).await.unwrap_err(),
        not_found("s")
    );
    assert_eq!(f.db.read_all_everything().await.len(), 2);

    // Restart on the same data directory.
    let status = f.node.terminate();
    assert!(status.success(), "node exit: {status:?}");
    let node = NodeProc::start_dev_alone(f.dir.path(), &[]);
    let db = StoreClient::connect_serving(&node, "default").await;
    for stream in ["s", "never"] {
        assert_eq!(
            db.append(stream, NoStream, vec![ev("e", 9)])
                .await
                .unwrap_err(),
            deleted(stream)
        );
    }
    assert_eq!(db.read_all_everything().await.len(), 2);
    // A soft delete does not lift the tombstone: it is refused as an append is.
    assert_eq!(db.delete("s", false).await.unwrap_err(), deleted("s"));
    assert_eq!(
        db.append("s", Any, vec![ev("e", 9)]).await.unwrap_err(),
        deleted("s")
    );
}

#[tokio::test]
async fn bad_input_is_invalid_input_naming_the_field_and_writes_nothing() {
    let f = DevStore::start().await;
    f.db.append("ok", NoStream, vec![ev("e", 0)]).await.unwrap();
    let before_all = f.db.read_all_everything().await;
    let before_streams = f.db.list_streams(None, 100).await.unwrap();

    let two_mib = NewEvent::json("big", &json!("x".repeat(2 * 1024 * 1024)));
    let near_mib = || NewEvent::json("big", &json!("x".repeat(1000 * 1000)));
    let cases: Vec<(&str, String, Vec<NewEvent>, &str)> = vec![
        (
            "empty event type",
            "s".into(),
            vec![ev("", 0)],
            "events[0].event_type",
        ),
        (
            "empty type in the second event",
            "s".into(),
            vec![ev("e", 0), ev("", 1)],
            "events[1].event_type",
        ),
        ("$ stream", "$x".into(), vec![ev("e", 0)], "stream_id"),
        ("2 MiB event", "s".into(), vec![two_mib], "events[0].data"),
        (
            "5 MB batch",
            "s".into(),
            (0..5).map(|_| near_mib()).collect(),
            "events",
        ),
        ("empty batch", "s".into(), vec![], "events"),
        (
            "257-byte stream id",
            "s".repeat(257),
            vec![ev("e", 0)],
            "stream_id",
        ),
        (
            "empty stream id",
            String::new(),
            vec![ev("e", 0)],
            "stream_id",
        ),
        (
            "control char in stream id",
            "a\u{7}b".into(),
            vec![ev("e", 0)],
            "stream_id",
        ),
        (
            "newline in stream id",
            "a\nb".into(),
            vec![ev("e", 0)],
            "stream_id",
        ),
    ];
    for (what, stream, events, field) in cases {
        let err = f.db.append(&stream, Any, events).await.unwrap_err();
        assert_eq!(field_of(err), field, "{what}");
    }
    // Nothing was written by any of them.
    assert_eq!(f.db.read_all_everything().await, before_all);
    assert_eq!(f.db.list_streams(None, 100).await.unwrap(), before_streams);
    assert!(!f.db.exists("s").await.unwrap());

    // The longest valid stream id is accepted (the limit is 256 bytes, inclusive).
    f.db.append(&"s".repeat(256), NoStream, vec![ev("e", 0)])
        .await
        .unwrap();
    assert_eq!(f.db.read_all_everything().await.len(), 2);
}

#[tokio::test]
async fn several_stores_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_dev_alone(dir.path(), &["--store", "a", "--store", "b"]);
    let a = StoreClient::connect(&node, "a").await;
    let b = StoreClient::connect(&node, "b").await;
    a.wait_until_serving().await;
    b.wait_until_serving().await;

    let ra = a.append("s", NoStream, evs("in-a", 2)).await.unwrap();
    let rb = b.append("s", NoStream, evs("in-b", 1)).await.unwrap();
    assert_eq!(
        ra,
        AppendResult {
            version: 1,
            first_position: 0,
            last_position: 1
        }
    );
    assert_eq!(
        rb,
        AppendResult {
            version: 0,
            first_position: 0,
            last_position: 0
        },
        "store b has its own versions and positions"
    );
    b.append("only-b", NoStream, vec![ev("in-b", 9)])
        .await
        .unwrap();

    assert_eq!(a.version("s").await.unwrap(), Some(1));
    assert_eq!(b.version("s").await.unwrap(), Some(0));
    assert!(!a.exists("only-b").await.unwrap());
    let all_a = a.read_all_everything().await;
    let all_b = b.read_all_everything().await;
    assert!(all_a.iter().all(|e| e.event_type == "in-a"), "{all_a:?}");
    assert!(all_b.iter().all(|e| e.event_type == "in-b"), "{all_b:?}");
    assert_eq!((all_a.len(), all_b.len()), (2, 2));
    assert_eq!(
        a.list_streams(None, 10).await.unwrap(),
        vec![StreamInfo {
            stream_id: "s".into(),
            version: 1
        }]
    );
    // A delete in one store leaves the other alone.
    a.delete("s", true).await.unwrap();
    assert_eq!(b.version("s").await.unwrap(), Some(0));
    b.append("s", Exact(0), vec![ev("in-b", 1)]).await.unwrap();
    assert!(dir.path().join("a").is_dir() && dir.path().join("b").is_dir());

    for unknown in ["default", "c"] {
        let u = StoreClient::connect(&node, unknown).await;
        assert_eq!(
            u.append("s", Any, vec![ev("e", 0)]).await.unwrap_err(),
            StoreError::UnknownStore {
                store: unknown.to_string()
            }
        );
        assert_eq!(
            u.read_all(0, 10, Forward).await.unwrap_err(),
            StoreError::UnknownStore {
                store: unknown.to_string()
            }
        );
    }
}
