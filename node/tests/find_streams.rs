//! `find_streams` on the state database directly: a filter by substring that pages
//! and stops at its scan bound, saying where to resume.

#![allow(clippy::unwrap_used)]

use reckon_gater::types::StreamInfo;
use reckon_node::command::{Command, ContentType, ExpectedVersion, ProposedEvent, WriteBatch};
use reckon_node::storage::state::ApplyItem;
use reckon_node::storage::StateDb;

fn append(id: &str, n: usize) -> Command {
    Command::Append {
        stream_id: id.to_string(),
        expected: ExpectedVersion::Any,
        events: (0..n)
            .map(|_| ProposedEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "e".into(),
                data: b"{}".to_vec(),
                metadata: Vec::new(),
                content_type: ContentType::Json,
                tags: Vec::new(),
            })
            .collect(),
    }
}

/// Every stream found for `contains`, following `resume_after`, with the number of
/// calls it took.
fn find_all(db: &StateDb, contains: &str, limit: u32, scan_max: usize) -> (Vec<StreamInfo>, usize) {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 1000, "find_streams does not terminate");
        let page = db
            .read()
            .unwrap()
            .find_streams(after.as_deref(), contains, limit, scan_max)
            .unwrap();
        assert!(page.streams.len() <= limit as usize);
        found.extend(page.streams);
        match page.resume_after {
            Some(a) => after = Some(a),
            None => return (found, calls),
        }
    }
}

#[test]
fn finds_by_substring_across_pages_and_scan_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
    let mut commands = Vec::new();
    for i in 0..40 {
        commands.push(append(&format!("invoice-{i:02}"), 1));
        if i % 4 == 0 {
            commands.push(append(&format!("order-{i:02}"), i % 3 + 1));
        }
    }
    commands.push(Command::Delete {
        stream_id: "order-04".into(),
        hard: false,
    });
    let batch = WriteBatch {
        timestamp_us: 1,
        commands,
    };
    db.apply(vec![ApplyItem::Batch(batch)], b"r").unwrap();
    let want: Vec<StreamInfo> = (0..40)
        .step_by(4)
        .filter(|i| *i != 4)
        .map(|i| StreamInfo {
            stream_id: format!("order-{i:02}"),
            version: (i % 3) as u64,
        })
        .collect();
    // A large bound: one call when the page is big enough, several when not.
    assert_eq!(find_all(&db, "order", 100, 10_000), (want.clone(), 1));
    let (found, calls) = find_all(&db, "order", 3, 10_000);
    assert_eq!(found, want);
    assert_eq!(calls, 4, "nine streams in pages of three, then the end");
    // A small scan bound: fewer per call, the same streams in the end.
    let (found, calls) = find_all(&db, "order", 100, 7);
    assert_eq!(found, want);
    assert_eq!(calls, 50usize.div_ceil(7), "50 ids examined 7 at a time");
    // No match: empty, and the end is reached.
    assert_eq!(find_all(&db, "refund", 10, 10_000), (vec![], 1));
    // Every id contains the empty string.
    assert_eq!(find_all(&db, "", 100, 10_000).0.len(), 49);
}
