use reckon_gater::types::{Direction, ExpectedVersion, NewEvent, ReadConsistency};
use reckon_tests::{ctx, NodeProc};
use serde_json::json;

#[tokio::test]
async fn append_and_read_back_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_dev(dir.path(), &[]);
    let c = node.worker().await;
    let r = c
        .append(
            ctx(10),
            "default".into(),
            "order-1".into(),
            ExpectedVersion::NoStream,
            vec![NewEvent::json("placed", &json!({"total": 5}))],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version, 0);
    let evs = c
        .read_stream(
            ctx(10),
            "default".into(),
            "order-1".into(),
            0,
            10,
            Direction::Forward,
            ReadConsistency::Linearizable,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type, "placed");
}
