//! With the `otel` feature, the node's metrics reach an OTLP/HTTP collector: a
//! collector the test runs on loopback receives the counters and the latency
//! histograms with the right values after some appends and reads.

#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::{Client, ExpectedVersion, NewEvent};
use reckon_node::embedded::EmbeddedCluster;
use reckon_node::otel::OtelExporter;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Bodies = Arc<Mutex<Vec<(String, Value)>>>;

/// Accepts OTLP/HTTP JSON posts and keeps (path, body) of each.
async fn collector(listener: TcpListener, bodies: Bodies) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head_len, content_len) = loop {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_len + content_len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "body cut short");
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
            let path = head.split(' ').nth(1).unwrap_or_default().to_string();
            let body: Value = serde_json::from_slice(&buf[head_len..head_len + content_len])
                .unwrap_or_else(|e| panic!("not JSON ({e}): {head}"));
            bodies.lock().unwrap().push((path, body));
            let reply =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            s.write_all(reply.as_bytes()).await.unwrap();
        });
    }
}

/// The last data point of metric `name` for store `default` in any body.
fn point(bodies: &[(String, Value)], name: &str) -> Option<Value> {
    point_where(bodies, name, ("store", "default"))
}

/// The last data point of metric `name` for store `default` with attribute `attr`.
fn point_where(bodies: &[(String, Value)], name: &str, attr: (&str, &str)) -> Option<Value> {
    let mut found = None;
    for (_, b) in bodies {
        for rm in b["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    if m["name"] != name {
                        continue;
                    }
                    let points = m["sum"]["dataPoints"]
                        .as_array()
                        .or_else(|| m["histogram"]["dataPoints"].as_array());
                    for p in points.into_iter().flatten() {
                        let has = |k: &str, v: &str| {
                            p["attributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|a| a["key"] == k && a["value"]["stringValue"] == v)
                        };
                        if has("store", "default") && has(attr.0, attr.1) {
                            found = Some(p.clone());
                        }
                    }
                }
            }
        }
    }
    found
}

fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_u64().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_an_otlp_collector() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/metrics", listener.local_addr().unwrap());
    let bodies: Bodies = Arc::default();
    tokio::spawn(collector(listener, bodies.clone()));

    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(1, dir.path(), |_| {}).await.unwrap();
    let stores = cluster.node(1).unwrap().stores().clone();
    let ep = endpoint.clone();
    let exporter = tokio::task::spawn_blocking(move || {
        OtelExporter::start(stores, 1, &ep, Duration::from_secs(3600))
    })
    .await
    .unwrap()
    .unwrap();

    // The first append may wait out the store's election: a deadline that fits it,
    // so that the client does not give up on an append that is then applied (a
    // retry of it would be refused, NoStream, and the counters below be off).
    let patience = Duration::from_secs(30);
    let client = Client::connect(&[cluster.gater()])
        .await
        .unwrap()
        .with_timeout(patience);
    let store = client.store("default");
    let deadline = Instant::now() + patience;
    let e = |n: u64| NewEvent::json("placed", &json!({ "n": n }));
    while store
        .append("order-1", ExpectedVersion::NoStream, vec![e(0), e(1)])
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the store never took a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store
        .append("order-1", ExpectedVersion::Exact(1), vec![e(2)])
        .await
        .unwrap();
    store
        .append("order-1", ExpectedVersion::Exact(0), vec![e(3)])
        .await
        .unwrap_err();
    assert_eq!(store.read("order-1", 0, 10).await.unwrap().len(), 3);

    let exporter = tokio::task::spawn_blocking(move || {
        exporter.flush().unwrap();
        exporter
    })
    .await
    .unwrap();
    let got = bodies.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing reached the collector");
    assert!(got.iter().all(|(path, _)| path == "/v1/metrics"), "{got:?}");
    let value = |name: &str| {
        let p = point(&got, name).unwrap_or_else(|| panic!("no {name} in {got:?}"));
        int(&p["asInt"])
    };
    assert_eq!(value("reckon.appends"), 2);
    assert_eq!(value("reckon.appended_events"), 3);
    assert_eq!(value("reckon.reads"), 1);
    assert_eq!(value("reckon.read_events"), 3);
    let wrong = point_where(&got, "reckon.errors", ("kind", "WrongExpectedVersion"))
        .expect("errors by kind");
    assert_eq!(int(&wrong["asInt"]), 1, "{wrong}");
    let appends = point(&got, "reckon.append.duration").expect("append histogram");
    // The retried first append may have failed while the store was electing: every
    // acknowledged one is in the histogram, and only those.
    assert_eq!(int(&appends["count"]), 2, "{appends}");
    assert!(appends["sum"].as_f64().unwrap() > 0.0, "{appends}");
    let reads = point(&got, "reckon.read.duration").expect("read histogram");
    assert_eq!(int(&reads["count"]), 1, "{reads}");

    tokio::task::spawn_blocking(move || exporter.shutdown())
        .await
        .unwrap();
    cluster.stop().await;
}
