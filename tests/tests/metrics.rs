//! The Prometheus endpoint of a real node, scraped over HTTP after some appends,
//! reads and a refused append, shows the counters with the right values.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reckon_gater::{ExpectedVersion, NewEvent};
use reckon_tests::{dev, dev_command, NodeProc};
use serde_json::json;

/// The embedded gater's and the metrics endpoint's addresses, from the lines the
/// node printed after its ready line.
fn addresses(node: &NodeProc) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut gater, mut metrics) = (None, None);
    loop {
        for line in node.more_lines() {
            if let Some(rest) = line.split("embedded gater listening on ").nth(1) {
                gater = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                metrics = Some(rest.trim().trim_end_matches("/metrics").to_string());
            }
        }
        if let (Some(g), Some(m)) = (&gater, &metrics) {
            return (g.clone(), m.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the node never printed both addresses: gater {gater:?}, metrics {metrics:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP/1.1 GET; the status line and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a response head and body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// The value of the sample line starting with `series` (name and labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn prometheus_text_after_appends_shows_the_counters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = dev_command(dir.path());
    cmd.env("RECKON_NODE_METRICS_LISTEN", "127.0.0.1:0");
    let node = NodeProc::spawn(cmd, dir.path());
    let (gater, metrics) = addresses(&node);
    let client = dev::wait_for_store(&gater, "default").await;
    let store = client.store("default");
    let e = |n: u64| NewEvent::json("placed", &json!({ "n": n }));
    store
        .append("order-1", ExpectedVersion::NoStream, vec![e(0), e(1)])
        .await
        .expect("first append");
    store
        .append("order-2", ExpectedVersion::Any, vec![e(2)])
        .await
        .expect("second append");
    store
        .append("order-1", ExpectedVersion::Exact(0), vec![e(3)])
        .await
        .expect_err("a wrong expected version");
    assert_eq!(store.read("order-1", 0, 10).await.expect("read").len(), 2);

    let (status, body) = get(&metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let l = "{store=\"default\",node=\"1\"}";
    for (series, want) in [
        (format!("reckon_appends_total{l}"), 2.0),
        (format!("reckon_appended_events_total{l}"), 3.0),
        (format!("reckon_reads_total{l}"), 1.0),
        (format!("reckon_read_events_total{l}"), 2.0),
        (format!("reckon_events{l}"), 3.0),
        (format!("reckon_leader{l}"), 1.0),
        (format!("reckon_append_latency_seconds_count{l}"), 2.0),
        (format!("reckon_read_latency_seconds_count{l}"), 1.0),
        (
            "reckon_errors_total{store=\"default\",node=\"1\",kind=\"WrongExpectedVersion\"}"
                .into(),
            1.0,
        ),
        (
            "reckon_append_latency_seconds_bucket{le=\"+Inf\",store=\"default\",node=\"1\"}".into(),
            2.0,
        ),
    ] {
        assert_eq!(sample(&body, &series), Some(want), "{series} in\n{body}");
    }
    assert!(
        body.contains("# TYPE reckon_append_latency_seconds histogram"),
        "{body}"
    );
    let (status, _) = get(&metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

/// A load of large appends on a node told to snapshot every 2 MiB of log and keep
/// 1 MiB behind it: the Raft log (its gauge) ends up holding a few MiB, not the 16
/// MiB appended, and after kill -9 every event is still there, though the log no
/// longer holds them (the state file is the snapshot, durable up to its point).
#[tokio::test]
async fn the_raft_log_is_purged_by_bytes_and_the_state_survives_kill_9() {
    const APPENDS: usize = 16;
    const EVENTS_EACH: usize = 256;
    let dir = tempfile::tempdir().expect("temp dir");
    let start = || {
        let mut cmd = dev_command(dir.path());
        cmd.env("RECKON_NODE_METRICS_LISTEN", "127.0.0.1:0")
            .env("RECKON_NODE_RAFT__SNAPSHOT_LOG_MIB", "2")
            .env("RECKON_NODE_RAFT__LOG_KEEP_MIB", "1");
        let node = NodeProc::spawn(cmd, dir.path());
        let (gater, metrics) = addresses(&node);
        (node, gater, metrics)
    };
    let (mut node, gater, metrics) = start();
    let client = dev::wait_for_store(&gater, "default").await;
    let store = client.store("default");
    let data = "x".repeat(4000);
    for a in 0..APPENDS {
        let events = (0..EVENTS_EACH)
            .map(|n| NewEvent::json("big", &json!({ "a": a, "n": n, "pad": data })))
            .collect();
        store
            .append(&format!("s-{a}"), ExpectedVersion::NoStream, events)
            .await
            .expect("append");
    }
    let series = "reckon_raft_log_bytes{store=\"default\",node=\"1\"}";
    let appended = (APPENDS * EVENTS_EACH * data.len()) as f64;
    let (_, body) = get(&metrics, "/metrics");
    eprintln!("log after the load: {:?} bytes", sample(&body, series));
    // At most 2 MiB since the last snapshot, one entry over, and 1 MiB behind it.
    let bound = 4.5 * 1024.0 * 1024.0;
    reckon_tests::wait::wait_until(
        "the Raft log to be purged down to its limits",
        reckon_tests::wait::for_work(APPENDS as u64, (APPENDS * EVENTS_EACH) as u64),
        || async {
            let (_, body) = get(&metrics, "/metrics");
            sample(&body, series).is_some_and(|b| b <= bound)
        },
    )
    .await;
    assert!(appended > 3.0 * bound, "the load is well beyond the bound");

    node.kill9();
    let (_node, gater, _) = start();
    let client = dev::wait_for_store(&gater, "default").await;
    let store = client.store("default");
    let mut positions = Vec::new();
    loop {
        // Pages stop at 8 MiB: continue after the last event received.
        let from = positions.last().map_or(0, |p| p + 1);
        let page = store
            .read_all(from, 10_000, reckon_gater::Direction::Forward)
            .await
            .expect("read all");
        if page.is_empty() {
            break;
        }
        positions.extend(page.iter().map(|e| e.position));
    }
    let want: Vec<u64> = (0..(APPENDS * EVENTS_EACH) as u64).collect();
    assert_eq!(positions, want, "every event, once, after kill -9");
}
