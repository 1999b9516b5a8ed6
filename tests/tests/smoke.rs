use std::time::Duration;

use reckon_gater::types::{Direction, ExpectedVersion, NewEvent};
use reckon_gater::StoreHandle;
use reckon_tests::NodeProc;
use serde_json::json;

#[tokio::test]
async fn append_and_read_back_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_dev(dir.path(), &[]);
    let c = StoreHandle::direct(node.worker().await, "default", Duration::from_secs(10));
    let r = c
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::json("placed", &json!({"total": 5}))],
        )
        .await
        .unwrap();
    assert_eq!(r.version, 0);
    let evs = c
        .read_stream("order-1", 0, 10, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type, "placed");
}
