//! OpenTelemetry export of the node's metrics over OTLP/HTTP with JSON bodies
//! (cargo feature `otel`), to a collector at `[otel] endpoint`.
//!
//! The counters are observed from each store's [`StoreMetrics`]
//! at every export; append and read latencies are recorded into OpenTelemetry
//! histograms by a [telemetry](reckon_gater::telemetry) handler on
//! `stream.write.stop` and `stream.read.stop`. Every point carries the attributes
//! `store` and `node`. A periodic reader exports on its own thread, so a slow or
//! absent collector never holds up a request; exports that fail are logged by the
//! SDK and retried at the next period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use reckon_gater::metrics::StoreMetrics;
use reckon_gater::telemetry::{self as t, Event};
use reckon_gater::types::StoreError;

use crate::store::Stores;

/// The telemetry handler id the exporter attaches under.
pub const HANDLER_ID: &str = "reckon_db.otel";
/// Longest wait for the collector on one export.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running exporter; [`OtelExporter::shutdown`] exports what is left and stops.
pub struct OtelExporter {
    provider: SdkMeterProvider,
}

/// Why the exporter did not start.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry export to {endpoint} (key \"otel.endpoint\"): {reason}")]
pub struct OtelError {
    endpoint: String,
    reason: String,
}

/// Where a counter is in a store's metrics.
type Counter = fn(&StoreMetrics) -> &AtomicU64;

fn observe_counter(
    meter: &Meter,
    stores: &Stores,
    node: u64,
    name: &'static str,
    description: &'static str,
    value: Counter,
) {
    let stores = stores.clone();
    meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_callback(move |o| {
            for store in stores.values() {
                let attrs = [
                    KeyValue::new("store", store.name().to_string()),
                    KeyValue::new("node", node as i64),
                ];
                o.observe(value(store.metrics()).load(Ordering::Relaxed), &attrs);
            }
        })
        .build();
}

impl OtelExporter {
    /// Starts exporting the metrics of `stores` on node `node` to the OTLP/HTTP
    /// metrics endpoint `endpoint` (a full URL such as
    /// `http://127.0.0.1:4318/v1/metrics`) every `interval`.
    ///
    /// Builds a blocking HTTP client: call it outside an async context (from
    /// `spawn_blocking` in async code).
    pub fn start(
        stores: Stores,
        node: u64,
        endpoint: &str,
        interval: Duration,
    ) -> Result<OtelExporter, OtelError> {
        let exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| OtelError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder()
                    .with_service_name("reckon-node")
                    .with_attribute(KeyValue::new("reckon.node", node as i64))
                    .build(),
            )
            .build();
        let meter = provider.meter("reckon_db");
        let counters: [(&'static str, &'static str, Counter); 8] = [
            ("reckon.appends", "Append requests acknowledged.", |m| {
                &m.appends
            }),
            ("reckon.appended_events", "Events appended.", |m| {
                &m.appended_events
            }),
            (
                "reckon.appended_bytes",
                "Data and metadata bytes appended.",
                |m| &m.appended_bytes,
            ),
            ("reckon.reads", "Read requests answered.", |m| &m.reads),
            ("reckon.read_events", "Events returned by reads.", |m| {
                &m.read_events
            }),
            (
                "reckon.leader_changes",
                "Leaders elected or lost, as this node saw them.",
                |m| &m.leader_changes,
            ),
            (
                "reckon.subscription_deliveries",
                "Subscription deliveries with events.",
                |m| &m.deliveries,
            ),
            (
                "reckon.delivered_events",
                "Events delivered to subscribers.",
                |m| &m.delivered_events,
            ),
        ];
        for (name, description, value) in counters {
            observe_counter(&meter, &stores, node, name, description, value);
        }
        {
            let stores = stores.clone();
            meter
                .u64_observable_counter("reckon.errors")
                .with_description("Failed requests by kind.")
                .with_callback(move |o| {
                    for store in stores.values() {
                        for (i, kind) in StoreError::KINDS.iter().enumerate() {
                            let n = store.metrics().errors[i].load(Ordering::Relaxed);
                            if n > 0 {
                                let attrs = [
                                    KeyValue::new("store", store.name().to_string()),
                                    KeyValue::new("node", node as i64),
                                    KeyValue::new("kind", *kind),
                                ];
                                o.observe(n, &attrs);
                            }
                        }
                    }
                })
                .build();
        }
        let appends = meter
            .f64_histogram("reckon.append.duration")
            .with_unit("s")
            .with_description("Append latency on the node.")
            .build();
        let reads = meter
            .f64_histogram("reckon.read.duration")
            .with_unit("s")
            .with_description("Read latency on the node.")
            .build();
        let handler = move |e: &Event<'_>| {
            let Some(us) = e.get("duration_us").and_then(|v| v.as_u64()) else {
                return;
            };
            let store = e.get("store").and_then(|v| v.as_str()).unwrap_or_default();
            let attrs = [
                KeyValue::new("store", store.to_string()),
                KeyValue::new("node", node as i64),
            ];
            let secs = us as f64 / 1e6;
            if e.name == t::STREAM_WRITE_STOP {
                appends.record(secs, &attrs);
            } else {
                reads.record(secs, &attrs);
            }
        };
        // A second exporter in one process replaces the first one's handler.
        t::detach(HANDLER_ID);
        t::attach(
            HANDLER_ID,
            &[t::STREAM_WRITE_STOP, t::STREAM_READ_STOP],
            handler,
        )
        .map_err(|e| OtelError {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
        Ok(OtelExporter { provider })
    }

    /// Exports what is pending now.
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Detaches the handler, exports what is left and stops. Blocks: call it outside
    /// an async context.
    pub fn shutdown(self) {
        t::detach(HANDLER_ID);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry exporter did not shut down cleanly");
        }
    }
}
