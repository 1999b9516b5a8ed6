//! A connection flood against real processes: `reckon-node --dev` and its gater get
//! hundreds of idle connections each (silent, or stalled inside their first frame),
//! and a well-behaved client still appends and reads through the gater; the silent
//! ones are closed by the servers within `PREAMBLE_TIMEOUT`.

use std::time::Duration;

use reckon_gater::transport::{MAGIC, PREAMBLE_TIMEOUT};
use reckon_gater::{ExpectedVersion, NewEvent};
use reckon_tests::dev;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections per server: well below the file descriptor limit.
const FLOOD: usize = 300;

/// Opens `FLOOD` connections to `addr`: even ones silent, odd ones with a preamble
/// and the start of a frame that never ends.
async fn flood(addr: &str, service: u8) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let (mut silent, mut stalled) = (Vec::new(), Vec::new());
    for i in 0..FLOOD {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            silent.push(tcp);
        } else {
            tcp.write_all(&MAGIC).await.unwrap();
            tcp.write_all(&[service]).await.unwrap();
            tcp.write_all(&1000u32.to_be_bytes()).await.unwrap();
            tcp.write_all(&[0; 10]).await.unwrap();
            stalled.push(tcp);
        }
    }
    (silent, stalled)
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_stop_a_good_client() {
    let dir = tempfile::tempdir().unwrap();
    let (node, gater) = dev::start_dev_with_gater(dir.path(), &[]);
    let client = dev::wait_for_store(&gater, "default").await;

    let (gater_silent, _gater_stalled) = flood(&gater, b'G').await;
    let (node_silent, _node_stalled) = flood(&node.addr, b'W').await;

    // A new client, through the gater to the node, is served while the flood holds.
    let fresh = reckon_gater::Client::connect(&[gater.as_str()])
        .await
        .unwrap();
    for c in [&client, &fresh] {
        let s = c.store("default");
        s.append(
            "flooded",
            ExpectedVersion::Any,
            vec![NewEvent::json("still-here", &json!({}))],
        )
        .await
        .expect("append during the flood");
    }
    let events = fresh.store("default").read("flooded", 0, 10).await.unwrap();
    assert_eq!(events.len(), 2);

    // The silent connections are closed by the servers, not held.
    let bound = PREAMBLE_TIMEOUT * 2 + Duration::from_secs(5);
    for mut tcp in gater_silent.into_iter().chain(node_silent) {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(bound, tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a silent connection was still open after {bound:?}: {read:?}"
        );
    }
    drop(node);
}
