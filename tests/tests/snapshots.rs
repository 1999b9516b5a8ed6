//! The acceptance scenarios of snapshots, row by row, against a real
//! `reckon-node --dev` process over TCP, and the aggregate row with
//! `reckon_gater::aggregate` over a snapshot and events read back from the node.

use reckon_gater::aggregate::aggregate;
use reckon_gater::types::{Direction, ExpectedVersion, NewEvent, StoreError};
use reckon_tests::{DevStore, StoreClient};
use serde_json::{json, Value};

/// The versions of the snapshots of `stream`, as `snapshot_list` gives them.
async fn versions(db: &StoreClient, stream: &str) -> Vec<u64> {
    db.snapshot_list(stream)
        .await
        .expect("snapshot_list")
        .iter()
        .map(|s| s.version)
        .collect()
}

/// Saves a snapshot of `stream` at each of `versions`, in that order, with data
/// `{"v":VERSION}`.
async fn save_in_order(db: &StoreClient, stream: &str, versions: &[u64]) {
    for &v in versions {
        db.snapshot_save(stream, v, format!("{{\"v\":{v}}}").as_bytes(), b"")
            .await
            .unwrap();
    }
}

fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::NotFound { .. })
}

#[tokio::test]
async fn save_5_then_load_gives_version_5_and_the_same_data() {
    let f = DevStore::start().await;
    let data = br#"{"name":"Bob","balance":500}"#;
    f.db.snapshot_save("acct-1", 5, data, b"").await.unwrap();
    let s = f.db.snapshot_load("acct-1", None).await.unwrap();
    assert_eq!(s.stream_id, "acct-1");
    assert_eq!(s.version, 5);
    assert_eq!(s.data, data.to_vec());
    assert!(s.timestamp_us > 0, "{s:?}");
    assert_eq!(f.db.snapshot_load("acct-1", Some(5)).await.unwrap(), s);
}

#[tokio::test]
async fn load_with_no_snapshot_is_not_found() {
    let f = DevStore::start().await;
    let err = f.db.snapshot_load("acct-1", None).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    // Another stream's snapshot, or one at another version, does not count.
    f.db.snapshot_save("acct-2", 1, b"{}", b"").await.unwrap();
    let err = f.db.snapshot_load("acct-1", None).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    let err = f.db.snapshot_load("acct-2", Some(2)).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
}

#[tokio::test]
async fn metadata_round_trips() {
    let f = DevStore::start().await;
    let metadata = br#"{"schema":3,"by":"projector-7"}"#;
    f.db.snapshot_save("acct-1", 3, b"{\"a\":1}", metadata)
        .await
        .unwrap();
    let loaded = f.db.snapshot_load("acct-1", Some(3)).await.unwrap();
    assert_eq!(loaded.metadata, metadata.to_vec());
    assert_eq!(loaded.data, b"{\"a\":1}".to_vec());
    let listed = f.db.snapshot_list("acct-1").await.unwrap();
    assert_eq!(listed, vec![loaded]);
    // Binary bytes survive as they are, too.
    let binary: Vec<u8> = (0..=255).collect();
    f.db.snapshot_save("acct-1", 4, &binary, &binary)
        .await
        .unwrap();
    let loaded = f.db.snapshot_load("acct-1", None).await.unwrap();
    assert_eq!((loaded.data, loaded.metadata), (binary.clone(), binary));
}

#[tokio::test]
async fn saving_the_same_version_twice_keeps_the_later_data() {
    let f = DevStore::start().await;
    f.db.snapshot_save("acct-1", 7, b"{\"v\":\"first\"}", b"m1")
        .await
        .unwrap();
    f.db.snapshot_save("acct-1", 7, b"{\"v\":\"second\"}", b"m2")
        .await
        .unwrap();
    let s = f.db.snapshot_load("acct-1", Some(7)).await.unwrap();
    assert_eq!(
        (s.data, s.metadata),
        (b"{\"v\":\"second\"}".to_vec(), b"m2".to_vec())
    );
    assert_eq!(
        versions(&f.db, "acct-1").await,
        vec![7],
        "one snapshot, not two"
    );
}

#[tokio::test]
async fn list_is_ascending() {
    let f = DevStore::start().await;
    save_in_order(&f.db, "acct-1", &[10, 20, 30]).await;
    let listed = f.db.snapshot_list("acct-1").await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.version).collect::<Vec<_>>(),
        vec![10, 20, 30]
    );
    for s in &listed {
        assert_eq!(s.data, format!("{{\"v\":{}}}", s.version).into_bytes());
        assert_eq!(s.stream_id, "acct-1");
    }
    // Saved out of order, listed in order; a stream whose id extends another's is
    // its own.
    for v in [30, 10, 20] {
        f.db.snapshot_save("acct-10", v, b"{}", b"").await.unwrap();
    }
    assert_eq!(versions(&f.db, "acct-10").await, vec![10, 20, 30]);
    assert_eq!(versions(&f.db, "acct").await, Vec::<u64>::new());
}

#[tokio::test]
async fn load_gives_the_highest_version_not_the_last_saved() {
    let f = DevStore::start().await;
    save_in_order(&f.db, "acct-1", &[5, 15, 10]).await;
    let latest = f.db.snapshot_load("acct-1", None).await.unwrap();
    assert_eq!(latest.version, 15);
    assert_eq!(latest.data, b"{\"v\":15}".to_vec());
    let at_10 = f.db.snapshot_load("acct-1", Some(10)).await.unwrap();
    assert_eq!(
        (at_10.version, at_10.data),
        (10, b"{\"v\":10}".to_vec()),
        "load_at"
    );
}

#[tokio::test]
async fn delete_at_2_of_1_2_3_leaves_1_and_3() {
    let f = DevStore::start().await;
    for v in [1, 2, 3] {
        f.db.snapshot_save("acct-1", v, b"{}", b"").await.unwrap();
    }
    f.db.snapshot_delete("acct-1", Some(2)).await.unwrap();
    assert_eq!(versions(&f.db, "acct-1").await, vec![1, 3]);
    assert!(!f.db.snapshot_exists("acct-1", Some(2)).await.unwrap());
    let err = f.db.snapshot_load("acct-1", Some(2)).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    assert_eq!(f.db.snapshot_load("acct-1", None).await.unwrap().version, 3);
}

#[tokio::test]
async fn delete_all_leaves_nothing() {
    let f = DevStore::start().await;
    for v in [1, 2, 3] {
        f.db.snapshot_save("acct-1", v, b"{}", b"").await.unwrap();
    }
    f.db.snapshot_save("acct-2", 1, b"{}", b"").await.unwrap();
    f.db.snapshot_delete("acct-1", None).await.unwrap();
    assert!(!f.db.snapshot_exists("acct-1", None).await.unwrap());
    assert_eq!(f.db.snapshot_list("acct-1").await.unwrap(), vec![]);
    let err = f.db.snapshot_load("acct-1", None).await.unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    // Another stream's snapshots are untouched.
    assert_eq!(versions(&f.db, "acct-2").await, vec![1]);
    // Deleting what is not there is fine.
    f.db.snapshot_delete("acct-1", None).await.unwrap();
    f.db.snapshot_delete("acct-1", Some(9)).await.unwrap();
    assert_eq!(versions(&f.db, "acct-2").await, vec![1]);
}

#[tokio::test]
async fn exists_at_10_when_only_5_is_false() {
    let f = DevStore::start().await;
    assert!(!f.db.snapshot_exists("acct-1", None).await.unwrap());
    f.db.snapshot_save("acct-1", 5, b"{}", b"").await.unwrap();
    assert!(!f.db.snapshot_exists("acct-1", Some(10)).await.unwrap());
    assert!(f.db.snapshot_exists("acct-1", Some(5)).await.unwrap());
    assert!(f.db.snapshot_exists("acct-1", None).await.unwrap());
}

#[tokio::test]
async fn aggregate_from_a_snapshot_and_the_events_after_it() {
    let f = DevStore::start().await;
    let stream = "acct-bob";
    // The history the snapshot sums up: versions 0 and 1.
    f.db.append(
        stream,
        ExpectedVersion::NoStream,
        vec![
            NewEvent::json("opened", &json!({"name": "Bob"})),
            NewEvent::json("deposited", &json!({"balance": {"$sum": 500}})),
        ],
    )
    .await
    .unwrap();
    f.db.snapshot_save(
        stream,
        1,
        &serde_json::to_vec(&json!({"name": "Bob", "balance": 500})).unwrap(),
        b"",
    )
    .await
    .unwrap();
    // What happened since: versions 2 and 3.
    f.db.append(
        stream,
        ExpectedVersion::Exact(1),
        vec![
            NewEvent::json("deposited", &json!({"balance": {"$sum": 100}})),
            NewEvent::json("withdrew", &json!({"balance": {"$sum": -50}})),
        ],
    )
    .await
    .unwrap();

    // Rebuild as a reader would: latest snapshot, then the events after it.
    let snap = f.db.snapshot_load(stream, None).await.unwrap();
    assert_eq!(snap.version, 1);
    let snapshot: Value = serde_json::from_slice(&snap.data).unwrap();
    let events: Vec<Value> =
        f.db.read(stream, snap.version + 1, 100, Direction::Forward)
            .await
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice(&e.data).unwrap())
            .collect();
    assert_eq!(events.len(), 2);

    let state = aggregate(&events, Some(&snapshot), json!({}), true);
    assert_eq!(state, json!({"name": "Bob", "balance": 550}));
    let tagged = aggregate(&events, Some(&snapshot), json!({}), false);
    assert_eq!(tagged, json!({"name": "Bob", "balance": {"$sum": 550}}));

    // The whole history without the snapshot folds to the same state.
    let all: Vec<Value> =
        f.db.read_stream_everything(stream)
            .await
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice(&e.data).unwrap())
            .collect();
    assert_eq!(
        aggregate(&all, None, json!({}), true),
        json!({"name": "Bob", "balance": 550})
    );
}
