//! The gater embedded by `reckon-node --dev`: routing, health and NoWorkers.

use std::time::{Duration, Instant};

use reckon_gater::{ClientError, ExpectedVersion, NewEvent, StoreError};
use reckon_tests::dev;
use reckon_tests::gater::assert_no_workers_at_once;
use reckon_tests::one_event;
use reckon_tests::wait;
use serde_json::json;

#[tokio::test]
async fn append_and_read_through_the_embedded_gater() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = dev::start_dev_with_gater(dir.path(), &[]);
    let client = dev::wait_for_store(&addr, "default").await;
    let s = client.store("default");
    let r = s
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::json("placed", &json!({"n": 1}))],
        )
        .await
        .unwrap();
    assert_eq!(r.version, 0);
    let evs = s.read("order-1", 0, 10).await.unwrap();
    assert_eq!(evs.len(), 1);
    // Health follows heartbeats (every lease / 3, 1 s by default): wait (bounded)
    // for the leader to be reported.
    let deadline = Instant::now() + wait::BASE;
    let h = loop {
        let h = client.health().await.unwrap();
        if h.healthy() || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(h.healthy(), "{h:?}");
    assert_eq!(h.stores[0].leader, Some(1));
    let e = s
        .append("order-1", ExpectedVersion::Exact(5), one_event("x"))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Store(StoreError::WrongExpectedVersion {
            expected: ExpectedVersion::Exact(5),
            current: Some(0)
        })
    );
}

/// NoWorkers at once: without waiting out retries or the caller's deadline (see
/// `assert_no_workers_at_once` for how "at once" is told apart on any machine).
#[tokio::test]
async fn unknown_store_gives_no_workers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr) = dev::start_dev_with_gater(dir.path(), &[]);
    let client = dev::wait_for_store(&addr, "default").await;
    assert_no_workers_at_once(&client, "nope").await;
}
