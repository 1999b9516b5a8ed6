//! Prometheus text on `http://<metrics_listen>/metrics`: every store's counters,
//! gauges and latency histograms on this node, labelled `store` and `node`.
//!
//! Each scrape takes a fresh [`StoreStats`] of every store and encodes it with
//! `prometheus-client` (OpenMetrics text). hyper serves it over HTTP/1: `GET /metrics`,
//! one request per connection, with the request head, the time to read it and the
//! number of connections all bounded.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use reckon_gater::metrics::StoreStats;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::store::Stores;

/// Largest request head read (request line and headers).
pub const REQUEST_HEAD_MAX: usize = 8 * 1024;
/// Time a scraper has to send its request head.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more connections wait for a slot.
pub const CONNECTIONS_MAX: usize = 16;
/// Upper bounds of the exported latency buckets, in microseconds: powers of two from
/// 16 µs to 2^26 µs (about 67 s).
const LE_US: [u64; 23] = {
    let mut b = [0u64; 23];
    let mut i = 0;
    while i < 23 {
        b[i] = 1u64 << (i + 4);
        i += 1;
    }
    b
};

/// Content type of the OpenMetrics text the encoder writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The stats of every store at one scrape, encoded on demand, with the bytes each
/// store's Raft log holds (in the same order).
#[derive(Debug)]
struct Scrape(Vec<StoreStats>, Vec<u64>);

fn labels<'a>(s: &'a StoreStats, node: &'a str) -> [(&'static str, &'a str); 2] {
    [("store", s.store.as_str()), ("node", node)]
}

impl Scrape {
    fn family(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        kind: MetricType,
        value: impl Fn(&StoreStats) -> u64,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, kind)?;
        for s in &self.0 {
            let node = s.node_id.to_string();
            let l = labels(s, &node);
            let mut f = m.encode_family(&l)?;
            match kind {
                MetricType::Counter => f.encode_counter::<NoLabelSet, u64, u64>(&value(s), None)?,
                _ => f.encode_gauge(&(value(s) as i64))?,
            }
        }
        Ok(())
    }

    fn latency(
        &self,
        enc: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        hist: impl Fn(&StoreStats) -> &reckon_gater::metrics::HistogramSnapshot,
    ) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for s in &self.0 {
            let h = hist(s);
            let cumulative = h.cumulative_at(&LE_US);
            let total = h.count();
            let mut buckets = Vec::with_capacity(LE_US.len() + 1);
            let mut prev = 0;
            for (le, c) in LE_US.iter().zip(&cumulative) {
                buckets.push((*le as f64 / 1e6, c - prev));
                prev = *c;
            }
            buckets.push((f64::INFINITY, total - prev));
            let node = s.node_id.to_string();
            let l = labels(s, &node);
            m.encode_family(&l)?.encode_histogram::<NoLabelSet>(
                h.sum_us as f64 / 1e6,
                total,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let e = &mut enc;
        self.family(
            e,
            "appends",
            "Append requests acknowledged.",
            Counter,
            |s| s.appends,
        )?;
        self.family(
            e,
            "appended_events",
            "Events in acknowledged appends.",
            Counter,
            |s| s.appended_events,
        )?;
        self.family(
            e,
            "appended_bytes",
            "Data and metadata bytes appended.",
            Counter,
            |s| s.appended_bytes,
        )?;
        self.family(e, "reads", "Read requests answered.", Counter, |s| s.reads)?;
        self.family(
            e,
            "read_events",
            "Events returned by reads.",
            Counter,
            |s| s.read_events,
        )?;
        self.family(
            e,
            "leader_changes",
            "Leaders elected or lost, as this node saw them.",
            Counter,
            |s| s.leader_changes,
        )?;
        self.family(
            e,
            "subscription_deliveries",
            "Subscription deliveries with events.",
            Counter,
            |s| s.deliveries,
        )?;
        self.family(
            e,
            "delivered_events",
            "Events delivered to subscribers.",
            Counter,
            |s| s.delivered_events,
        )?;
        self.family(
            e,
            "events",
            "Events the store holds (its global log).",
            Gauge,
            |s| s.events,
        )?;
        self.family(
            e,
            "subscriptions",
            "Subscriptions of the store.",
            Gauge,
            |s| s.subscriptions,
        )?;
        self.family(
            e,
            "subscription_lag_max",
            "Largest subscription lag, in positions.",
            Gauge,
            |s| s.max_subscription_lag,
        )?;
        self.family(
            e,
            "leader",
            "1 when this node leads the store's group.",
            Gauge,
            |s| u64::from(s.role == Some(reckon_gater::types::Role::Leader)),
        )?;
        {
            let mut m = e.encode_descriptor("errors", "Failed requests by kind.", None, Counter)?;
            for s in &self.0 {
                let node = s.node_id.to_string();
                for (kind, n) in &s.errors {
                    let l = [
                        ("store", s.store.as_str()),
                        ("node", node.as_str()),
                        ("kind", kind.as_str()),
                    ];
                    m.encode_family(&l)?
                        .encode_counter::<NoLabelSet, u64, u64>(n, None)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "raft_log_bytes",
                "Bytes of entries the store's Raft log holds (snapshots let it be purged).",
                None,
                Gauge,
            )?;
            for (s, bytes) in self.0.iter().zip(&self.1) {
                let node = s.node_id.to_string();
                m.encode_family(&labels(s, &node))?
                    .encode_gauge(&(*bytes as i64))?;
            }
        }
        let scavenge = |f: fn(&reckon_gater::types::ScavengeStatus) -> u64| {
            move |s: &StoreStats| s.scavenge.as_ref().map_or(0, f)
        };
        self.family(
            e,
            "scavenge_running",
            "1 while the store's scavenge runs.",
            Gauge,
            scavenge(|c| u64::from(c.phase == reckon_gater::types::ScavengePhase::Running)),
        )?;
        self.family(
            e,
            "scavenge_next_position",
            "The next position the store's scavenge looks at (progress: next over end).",
            Gauge,
            scavenge(|c| c.next.min(c.end)),
        )?;
        self.family(
            e,
            "scavenge_end_position",
            "The position the store's scavenge looks up to.",
            Gauge,
            scavenge(|c| c.end),
        )?;
        self.family(
            e,
            "scavenge_removed_events",
            "Events the store's last or running scavenge removed.",
            Gauge,
            scavenge(|c| c.removed_events),
        )?;
        self.family(
            e,
            "scavenge_removed_bytes",
            "Bytes of event records the store's last or running scavenge removed.",
            Gauge,
            scavenge(|c| c.removed_bytes),
        )?;
        self.family(
            e,
            "scavenge_reclaimed_bytes",
            "Bytes of state file this node gave back to the file system after scavenges.",
            Counter,
            scavenge(|c| c.reclaimed_bytes),
        )?;
        self.latency(
            e,
            "append_latency_seconds",
            "Append latency on the node.",
            |s| &s.append_latency,
        )?;
        self.latency(
            e,
            "read_latency_seconds",
            "Read latency on the node.",
            |s| &s.read_latency,
        )?;
        Ok(())
    }
}

/// The metrics text of `stores` now.
pub async fn render(stores: &Stores) -> String {
    let mut all = Vec::with_capacity(stores.len());
    for store in stores.values() {
        all.push((store.stats().await, store.log_bytes()));
    }
    all.sort_by(|a, b| a.0.store.cmp(&b.0.store));
    let (stats, log_bytes) = all.into_iter().unzip();
    let mut registry = Registry::with_prefix("reckon");
    registry.register_collector(Box::new(Scrape(stats, log_bytes)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves: HTTP/1 by hyper,
/// one request per connection, at most [`CONNECTIONS_MAX`] connections at once
/// (more wait for a slot), a request head of at most [`REQUEST_HEAD_MAX`] bytes (431
/// past it) read within [`REQUEST_READ_TIMEOUT`].
pub async fn serve(listener: TcpListener, stores: Stores, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(false)
        .max_buf_size(REQUEST_HEAD_MAX)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(REQUEST_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(reckon_gater::transport::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stores = stores.clone();
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper::service::service_fn(move |req| {
                let stores = stores.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &stores).await) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "metrics: request failed");
            }
            drop(permit);
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics`, 404 for another path,
/// 405 for another method.
async fn answer<B>(req: &hyper::Request<B>, stores: &Stores) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, render(stores).await),
        (&hyper::Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served here\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET /metrics is served here\n".to_string(),
        ),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_gater::metrics::Histogram;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends `request` to a listener serving no stores; the status line answered.
    async fn status_of(request: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Stores::default(), async {
            let _ = stopped.await;
        }));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&request).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        let _ = stop.send(());
        server.await.unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn only_get_metrics_is_served_and_the_request_head_is_bounded() {
        assert_eq!(
            status_of(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()).await,
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await,
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status_of(b"POST /metrics HTTP/1.1\r\n\r\n".to_vec()).await,
            "HTTP/1.1 405 Method Not Allowed"
        );
        let mut endless = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        // Exactly the bound and no end of head: the server reads all of it (so the
        // connection closes cleanly) and refuses to read more.
        endless.resize(REQUEST_HEAD_MAX, b'a');
        assert_eq!(
            status_of(endless).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn text_has_counters_errors_and_histograms_with_labels() {
        let h = Histogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(3));
        let mut s = StoreStats {
            store: "default".into(),
            node_id: 2,
            role: Some(reckon_gater::types::Role::Leader),
            appends: 7,
            events: 9,
            append_latency: h.snapshot(),
            scavenge: Some(reckon_gater::types::ScavengeStatus {
                phase: reckon_gater::types::ScavengePhase::Running,
                generation: 1,
                end: 100,
                next: 40,
                removed_events: 12,
                removed_bytes: 3000,
                started_us: 1,
                finished_us: None,
                file_bytes: 1 << 20,
                reclaimed_bytes: 8192,
            }),
            ..Default::default()
        };
        s.errors.insert("WrongExpectedVersion".into(), 3);
        let mut registry = Registry::with_prefix("reckon");
        registry.register_collector(Box::new(Scrape(vec![s], vec![4096])));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for want in [
            "reckon_appends_total{store=\"default\",node=\"2\"} 7",
            "reckon_events{store=\"default\",node=\"2\"} 9",
            "reckon_leader{store=\"default\",node=\"2\"} 1",
            "reckon_raft_log_bytes{store=\"default\",node=\"2\"} 4096",
            "reckon_scavenge_running{store=\"default\",node=\"2\"} 1",
            "reckon_scavenge_next_position{store=\"default\",node=\"2\"} 40",
            "reckon_scavenge_end_position{store=\"default\",node=\"2\"} 100",
            "reckon_scavenge_removed_events{store=\"default\",node=\"2\"} 12",
            "reckon_scavenge_reclaimed_bytes_total{store=\"default\",node=\"2\"} 8192",
            "reckon_errors_total{store=\"default\",node=\"2\",kind=\"WrongExpectedVersion\"} 3",
            "reckon_append_latency_seconds_count{store=\"default\",node=\"2\"} 2",
            "reckon_append_latency_seconds_bucket{le=\"0.000128\",store=\"default\",node=\"2\"} 1",
            "reckon_append_latency_seconds_bucket{le=\"+Inf\",store=\"default\",node=\"2\"} 2",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
