//! How `reckon` prints results: text for people, or one JSON object a line with
//! `--json`.
//!
//! The JSON shapes are an interface scripts read: keys may be added, never
//! renamed. They are built from `Serialize` structs so that keys come out
//! in the documented order. Every function here is a pure function of its input that
//! returns the line to print, without the newline.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::{AuditCounts, HealthReport, StoreStatus};
use crate::metrics::{human_bytes, HistogramSnapshot, StoreStats};
use crate::subscription::SubscriptionInfo;
use crate::types::{
    AppendResult, ContentType, EventRecord, ScavengePhase, ScavengeStatus, SnapshotRecord,
    StreamInfo, StreamRetention,
};

/// Bytes as they are shown: parsed JSON, or base64 when they are not JSON.
#[derive(Debug, Clone, PartialEq)]
enum Shown {
    Json(Value),
    Base64(String),
}

impl Shown {
    /// `as_json`: whether the bytes claim to be JSON; bytes that claim so but do not
    /// parse are shown as base64 rather than lost.
    fn of(bytes: &[u8], as_json: bool) -> Shown {
        if as_json {
            if let Ok(v) = serde_json::from_slice(bytes) {
                return Shown::Json(v);
            }
        }
        Shown::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Metadata: `{}` when empty, JSON when it parses, base64 otherwise.
    fn metadata(bytes: &[u8]) -> Shown {
        if bytes.is_empty() {
            Shown::Json(Value::Object(serde_json::Map::new()))
        } else {
            Shown::of(bytes, true)
        }
    }

    fn split(self) -> (Option<Value>, Option<String>) {
        match self {
            Shown::Json(v) => (Some(v), None),
            Shown::Base64(s) => (None, Some(s)),
        }
    }

    /// The text form: compact JSON, or `base64:` and the encoding.
    fn text(&self) -> String {
        match self {
            Shown::Json(v) => v.to_string(),
            Shown::Base64(s) => format!("base64:{s}"),
        }
    }
}

fn to_line<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs into a String cannot fail: every map key is a
    // string and no Serialize impl here returns an error.
    match serde_json::to_string(v) {
        Ok(s) => s,
        Err(e) => panic!("serializing CLI output failed: {e}"),
    }
}

/// The data and metadata of an event or snapshot as JSON output shows them: as JSON
/// when they are JSON, else as base64 under `*_base64`.
#[derive(Serialize)]
struct Payload {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_base64: Option<String>,
}

impl Payload {
    fn of(data: Shown, metadata: &[u8]) -> Payload {
        let (data, data_base64) = data.split();
        let (metadata, metadata_base64) = Shown::metadata(metadata).split();
        Payload {
            data,
            data_base64,
            metadata,
            metadata_base64,
        }
    }
}

#[derive(Serialize)]
struct EventJson<'a> {
    stream_id: &'a str,
    version: u64,
    position: u64,
    event_id: Uuid,
    event_type: &'a str,
    #[serde(flatten)]
    payload: Payload,
    tags: &'a [String],
    timestamp_us: u64,
}

/// One event. Text: `position version stream type data`.
pub fn event(e: &EventRecord, json: bool) -> String {
    let data = Shown::of(&e.data, e.content_type == ContentType::Json);
    if !json {
        return format!(
            "{} {} {} {} {}",
            e.position,
            e.version,
            e.stream_id,
            e.event_type,
            data.text()
        );
    }
    to_line(&EventJson {
        stream_id: &e.stream_id,
        version: e.version,
        position: e.position,
        event_id: e.event_id,
        event_type: &e.event_type,
        payload: Payload::of(data, &e.metadata),
        tags: &e.tags,
        timestamp_us: e.timestamp_us,
    })
}

#[derive(Serialize)]
struct AppendJson {
    version: u64,
    first_position: u64,
    last_position: u64,
}

/// An append's result. Text: the new version.
pub fn appended(r: &AppendResult, json: bool) -> String {
    if !json {
        return r.version.to_string();
    }
    to_line(&AppendJson {
        version: r.version,
        first_position: r.first_position,
        last_position: r.last_position,
    })
}

#[derive(Serialize)]
struct VersionJson {
    version: i64,
}

/// A stream's version, -1 when it does not exist.
pub fn version(v: Option<u64>, json: bool) -> String {
    let v = v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    if json {
        to_line(&VersionJson { version: v })
    } else {
        v.to_string()
    }
}

#[derive(Serialize)]
struct ExistsJson {
    exists: bool,
}

/// Whether a stream exists. Text: `true` or `false`.
pub fn exists(b: bool, json: bool) -> String {
    if json {
        to_line(&ExistsJson { exists: b })
    } else {
        b.to_string()
    }
}

/// One stream. Text: `stream version`.
pub fn stream(s: &StreamInfo, json: bool) -> String {
    if json {
        to_line(s)
    } else {
        format!("{} {}", s.stream_id, s.version)
    }
}

#[derive(Serialize)]
struct DeletedJson<'a> {
    stream_id: &'a str,
    deleted: bool,
    hard: bool,
}

/// An age in microseconds as the CLI takes it: `90d`, `12h`, `30m`, `45s`.
fn age(us: u64) -> String {
    let s = us / 1_000_000;
    for (unit, n) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= n && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    if us.is_multiple_of(1_000_000) {
        format!("{s}s")
    } else {
        format!("{us}us")
    }
}

#[derive(Serialize)]
struct RetentionJson<'a> {
    stream_id: &'a str,
    max_age_us: Option<u64>,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
}

/// A stream's retention. Text: `STREAM keeps every event`, or `STREAM keeps events
/// max-age 90d, max-count 1000, from version 5`.
pub fn retention(stream_id: &str, r: &StreamRetention, json: bool) -> String {
    if json {
        return to_line(&RetentionJson {
            stream_id,
            max_age_us: r.max_age_us,
            max_count: r.max_count,
            truncate_before: r.truncate_before,
        });
    }
    let mut parts = Vec::new();
    if let Some(a) = r.max_age_us {
        parts.push(format!("max-age {}", age(a)));
    }
    if let Some(c) = r.max_count {
        parts.push(format!("max-count {c}"));
    }
    if let Some(v) = r.truncate_before {
        parts.push(format!("from version {v}"));
    }
    if parts.is_empty() {
        format!("{stream_id} keeps every event")
    } else {
        format!("{stream_id} keeps events {}", parts.join(", "))
    }
}

/// Where a scavenge stands. Text: `running 45% (position 4500 of 10000), removed 120
/// events (36.2 KiB); state file 12.0 MiB, 3.1 MiB given back`.
pub fn scavenge(s: &ScavengeStatus, json: bool) -> String {
    if json {
        return to_line(s);
    }
    let phase = match s.phase {
        ScavengePhase::Never => {
            return format!("never run; state file {}", human_bytes(s.file_bytes))
        }
        ScavengePhase::Running => "running",
        ScavengePhase::Stopped => "stopped",
        ScavengePhase::Done => "done",
    };
    format!(
        "{phase} {:.0}% (position {} of {}), removed {} events ({}); state file {}, {} given back",
        s.progress() * 100.0,
        s.next.min(s.end),
        s.end,
        s.removed_events,
        human_bytes(s.removed_bytes),
        human_bytes(s.file_bytes),
        human_bytes(s.reclaimed_bytes)
    )
}

/// A deleted stream. Text: `deleted STREAM` or `hard-deleted STREAM`.
pub fn deleted(stream_id: &str, hard: bool, json: bool) -> String {
    if json {
        return to_line(&DeletedJson {
            stream_id,
            deleted: true,
            hard,
        });
    }
    let verb = if hard { "hard-deleted" } else { "deleted" };
    format!("{verb} {stream_id}")
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    stream_id: &'a str,
    version: u64,
    #[serde(flatten)]
    payload: Payload,
    timestamp_us: u64,
}

/// One snapshot. Text: `version data`.
pub fn snapshot(s: &SnapshotRecord, json: bool) -> String {
    let data = Shown::of(&s.data, true);
    if !json {
        return format!("{} {}", s.version, data.text());
    }
    to_line(&SnapshotJson {
        stream_id: &s.stream_id,
        version: s.version,
        payload: Payload::of(data, &s.metadata),
        timestamp_us: s.timestamp_us,
    })
}

#[derive(Serialize)]
struct SnapshotSavedJson<'a> {
    stream_id: &'a str,
    version: u64,
    saved: bool,
}

/// A saved snapshot. Text: `saved snapshot of STREAM at version N`.
pub fn snapshot_saved(stream_id: &str, version: u64, json: bool) -> String {
    if json {
        to_line(&SnapshotSavedJson {
            stream_id,
            version,
            saved: true,
        })
    } else {
        format!("saved snapshot of {stream_id} at version {version}")
    }
}

#[derive(Serialize)]
struct SnapshotDeletedJson<'a> {
    stream_id: &'a str,
    version: Option<u64>,
    deleted: bool,
}

/// Deleted snapshots (one version, or all when `None`).
pub fn snapshot_deleted(stream_id: &str, version: Option<u64>, json: bool) -> String {
    if json {
        return to_line(&SnapshotDeletedJson {
            stream_id,
            version,
            deleted: true,
        });
    }
    match version {
        Some(v) => format!("deleted snapshot of {stream_id} at version {v}"),
        None => format!("deleted every snapshot of {stream_id}"),
    }
}

#[derive(Serialize)]
struct HealthJson<'a> {
    status: &'static str,
    stores: BTreeMap<&'a str, StoreHealthJson>,
    /// Left out while the gater has counted nothing (an open gater).
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditCounts>,
}

/// The audit counts, unless all are zero.
fn audit_of(h: &HealthReport) -> Option<AuditCounts> {
    (h.audit != AuditCounts::default()).then_some(h.audit)
}

#[derive(Serialize)]
struct StoreHealthJson {
    workers: u32,
    leader: Option<u64>,
}

/// `subscribe` and `subscriptions`: one subscription.
///
/// JSON: `{"key","type","selector","name","checkpoint","head","lag","pool_size","consumers"}`
/// (checkpoint null before the first ack).
pub fn subscription(s: &SubscriptionInfo, json: bool) -> String {
    if json {
        #[derive(serde::Serialize)]
        struct SubscriptionJson<'a> {
            key: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            selector: &'a str,
            name: &'a str,
            checkpoint: Option<u64>,
            head: u64,
            lag: u64,
            pool_size: u32,
            consumers: u32,
            delivered: u64,
        }
        to_line(&SubscriptionJson {
            key: &s.key,
            kind: s.kind.as_str(),
            selector: &s.selector,
            name: &s.name,
            checkpoint: s.checkpoint(),
            head: s.head,
            lag: s.lag(),
            pool_size: s.pool_size,
            consumers: s.consumers,
            delivered: s.delivered,
        })
    } else {
        format!(
            "{} {} {} {} checkpoint={} lag={} pool={} consumers={}",
            s.key,
            s.kind.as_str(),
            s.selector,
            s.name,
            s.checkpoint()
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            s.lag(),
            s.pool_size,
            s.consumers
        )
    }
}

/// The health report, on one line with `--json`; text: the status, then one store a
/// line with its workers and leader.
pub fn health(h: &HealthReport, json: bool) -> String {
    let status = if h.healthy() { "healthy" } else { "degraded" };
    if json {
        let stores = h
            .stores
            .iter()
            .map(|s| {
                let v = StoreHealthJson {
                    workers: s.workers,
                    leader: s.leader,
                };
                (s.store.as_str(), v)
            })
            .collect();
        return to_line(&HealthJson {
            status,
            stores,
            audit: audit_of(h),
        });
    }
    let mut out = status.to_string();
    if h.stores.is_empty() {
        out.push_str("\nno store has a registered worker");
    }
    for s in &h.stores {
        let leader = s
            .leader
            .map_or_else(|| "none".to_string(), |l| l.to_string());
        let state = if s.healthy { "healthy" } else { "degraded" };
        out.push_str(&format!(
            "\n{} {state} workers={} leader={leader}",
            s.store, s.workers
        ));
        if s.suspect > 0 {
            out.push_str(&format!(" suspect={}", s.suspect));
        }
    }
    if let Some(a) = audit_of(h) {
        out.push_str(&format!(
            "\naudit auth_failures={} permission_denied={} admin_actions={}",
            a.auth_failures, a.permission_denied, a.admin_actions
        ));
    }
    out
}

/// Why `reckon health` exits with "unavailable": no store has a worker, or a store
/// has no leader (it cannot take writes). `None` when every store has a leader, even
/// if some workers are suspect (that is "degraded", exit 0).
pub fn unavailable(h: &HealthReport) -> Option<String> {
    if h.stores.is_empty() {
        return Some("no store has a registered worker".to_string());
    }
    let leaderless: Vec<&str> = h
        .stores
        .iter()
        .filter(|s| s.leader.is_none())
        .map(|s| s.store.as_str())
        .collect();
    match leaderless.as_slice() {
        [] => None,
        [one] => Some(format!("store {one} has no leader")),
        many => Some(format!("stores {} have no leader", many.join(", "))),
    }
}

#[derive(Serialize)]
struct ClusterJson<'a> {
    store: &'a str,
    leader: Option<u64>,
    term: u64,
    nodes: Vec<NodeJson<'a>>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    node_id: u64,
    address: &'a str,
    role: &'static str,
    last_log_index: u64,
    applied_index: u64,
    leader_changes: u64,
    appended_events: u64,
}

#[derive(Serialize)]
struct LatencyJson {
    count: u64,
    mean: Option<u64>,
    p50: Option<u64>,
    p99: Option<u64>,
    p999: Option<u64>,
}

impl LatencyJson {
    fn of(h: &HistogramSnapshot) -> Self {
        LatencyJson {
            count: h.count(),
            mean: h.mean_us(),
            p50: h.quantile_us(0.5),
            p99: h.quantile_us(0.99),
            p999: h.quantile_us(0.999),
        }
    }
}

#[derive(Serialize)]
struct StatsJson<'a> {
    store: &'a str,
    node_id: u64,
    role: Option<&'static str>,
    events: u64,
    appends: u64,
    appended_events: u64,
    appended_bytes: u64,
    reads: u64,
    read_events: u64,
    errors: &'a BTreeMap<String, u64>,
    leader_changes: u64,
    subscriptions: u64,
    deliveries: u64,
    delivered_events: u64,
    max_subscription_lag: u64,
    append_latency_us: LatencyJson,
    read_latency_us: LatencyJson,
}

fn micros(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |us| us.to_string())
}

/// One store on one node: counters since the node started and latency percentiles
/// (microseconds, each the upper bound of its histogram bucket).
pub fn stats(s: &StoreStats, json: bool) -> String {
    if json {
        return to_line(&StatsJson {
            store: &s.store,
            node_id: s.node_id,
            role: s.role.map(|r| r.as_str()),
            events: s.events,
            appends: s.appends,
            appended_events: s.appended_events,
            appended_bytes: s.appended_bytes,
            reads: s.reads,
            read_events: s.read_events,
            errors: &s.errors,
            leader_changes: s.leader_changes,
            subscriptions: s.subscriptions,
            deliveries: s.deliveries,
            delivered_events: s.delivered_events,
            max_subscription_lag: s.max_subscription_lag,
            append_latency_us: LatencyJson::of(&s.append_latency),
            read_latency_us: LatencyJson::of(&s.read_latency),
        });
    }
    let errors = if s.errors.is_empty() {
        "0".to_string()
    } else {
        s.errors
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{} node {} {} events={} appends={} appended_events={} appended_bytes={} \
         append_p50_us={} append_p99_us={} reads={} read_events={} read_p50_us={} \
         read_p99_us={} errors={errors} leader_changes={} subscriptions={} deliveries={} \
         max_subscription_lag={}",
        s.store,
        s.node_id,
        s.role.map_or("unknown", |r| r.as_str()),
        s.events,
        s.appends,
        s.appended_events,
        s.appended_bytes,
        micros(s.append_latency.quantile_us(0.5)),
        micros(s.append_latency.quantile_us(0.99)),
        s.reads,
        s.read_events,
        micros(s.read_latency.quantile_us(0.5)),
        micros(s.read_latency.quantile_us(0.99)),
        s.leader_changes,
        s.subscriptions,
        s.deliveries,
        s.max_subscription_lag,
    )
}

/// One store's cluster status. Text: a header line, then one node a line.
pub fn cluster(s: &StoreStatus, json: bool) -> String {
    if json {
        return to_line(&ClusterJson {
            store: &s.store,
            leader: s.leader,
            term: s.term,
            nodes: s
                .nodes
                .iter()
                .map(|n| NodeJson {
                    node_id: n.node_id,
                    address: &n.address,
                    role: n.role.as_str(),
                    last_log_index: n.last_log_index,
                    applied_index: n.applied_index,
                    leader_changes: n.leader_changes,
                    appended_events: n.appended_events,
                })
                .collect(),
        });
    }
    let leader = s
        .leader
        .map_or_else(|| "none".to_string(), |l| l.to_string());
    let mut out = format!("{} leader={leader} term={}", s.store, s.term);
    for n in &s.nodes {
        out.push_str(&format!(
            "\n  node {} {} {} last_log_index={} applied_index={}{}",
            n.node_id,
            n.address,
            n.role.as_str(),
            n.last_log_index,
            n.applied_index,
            if n.healthy { "" } else { " unhealthy" }
        ));
    }
    out
}

/// What `certs` wrote: both paths.
pub fn certs_written(w: &crate::certs::Written, json: bool) -> String {
    if json {
        serde_json::json!({ "cert": w.cert, "key": w.key }).to_string()
    } else {
        format!("wrote {} and {}", w.cert.display(), w.key.display())
    }
}

#[derive(Serialize)]
struct BackupJson<'a> {
    store: &'a str,
    file: String,
    bytes: u64,
    next_position: u64,
    events: u64,
    last_log_term: u64,
    last_log_index: u64,
    created_us: u64,
    node_id: u64,
    body_sha256: &'a str,
}

/// A finished backup: what the file at `file` holds.
pub fn backup_done(info: &crate::backup::BackupInfo, file: &std::path::Path, json: bool) -> String {
    if json {
        to_line(&BackupJson {
            store: &info.store,
            file: file.display().to_string(),
            bytes: info.bytes,
            next_position: info.next_position,
            events: info.events,
            last_log_term: info.last_log_term,
            last_log_index: info.last_log_index,
            created_us: info.created_us,
            node_id: info.node_id,
            body_sha256: &info.body_sha256,
        })
    } else {
        format!(
            "backed up store {} to {}: {} bytes, {} events, every position below {} \
             (Raft entry {} of term {}, from node {})",
            info.store,
            file.display(),
            info.bytes,
            info.events,
            info.next_position,
            info.last_log_index,
            info.last_log_term,
            info.node_id
        )
    }
}

/// A backup's progress, as `backup` prints it on stderr.
pub fn backup_progress(store: &str, p: &crate::backup::BackupProgress) -> String {
    use crate::backup::{BackupPhase, BackupProgress};
    const MIB: f64 = 1024.0 * 1024.0;
    match p {
        BackupProgress::Preparing(BackupPhase::Copying) => {
            format!("backup {store}: the node is copying the store")
        }
        BackupProgress::Preparing(BackupPhase::Checksumming {
            done_bytes,
            total_bytes,
        }) => format!(
            "backup {store}: the node is checksumming its copy: {:.1} MiB of {:.1} MiB",
            *done_bytes as f64 / MIB,
            *total_bytes as f64 / MIB
        ),
        BackupProgress::Preparing(BackupPhase::Ready(_)) => {
            format!("backup {store}: the copy is ready")
        }
        BackupProgress::Downloading { done, total } => format!(
            "backup {store}: {:.1} MiB of {:.1} MiB ({}%)",
            *done as f64 / MIB,
            *total as f64 / MIB,
            (done * 100).checked_div(*total).unwrap_or(100)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NodeStatus, StoreHealth};
    use crate::types::Role;

    fn record(data: &[u8], content_type: ContentType, metadata: &[u8]) -> EventRecord {
        EventRecord {
            stream_id: "order-1".into(),
            version: 0,
            position: 17,
            event_id: Uuid::nil(),
            event_type: "placed".into(),
            data: data.to_vec(),
            metadata: metadata.to_vec(),
            content_type,
            tags: vec!["eu".into()],
            timestamp_us: 1_764_000_000_000_000,
        }
    }

    #[test]
    fn an_event_in_json_has_the_documented_shape() {
        let e = record(br#"{"total":5}"#, ContentType::Json, b"");
        assert_eq!(
            event(&e, true),
            r#"{"stream_id":"order-1","version":0,"position":17,"event_id":"00000000-0000-0000-0000-000000000000","event_type":"placed","data":{"total":5},"metadata":{},"tags":["eu"],"timestamp_us":1764000000000000}"#
        );
        assert_eq!(event(&e, false), r#"17 0 order-1 placed {"total":5}"#);
    }

    #[test]
    fn bytes_that_are_not_json_print_as_base64() {
        let e = record(&[0xff, 0x00], ContentType::Binary, b"\x01");
        let line = event(&e, true);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["data_base64"], "/wA=");
        assert_eq!(v["metadata_base64"], "AQ==");
        assert!(
            v.get("data").is_none() && v.get("metadata").is_none(),
            "{line}"
        );
        assert_eq!(event(&e, false), "17 0 order-1 placed base64:/wA=");
        // Binary content that happens to parse is still shown as bytes.
        let e = record(b"1", ContentType::Binary, br#"{"by":"me"}"#);
        let v: Value = serde_json::from_str(&event(&e, true)).unwrap();
        assert_eq!(v["data_base64"], "MQ==");
        assert_eq!(v["metadata"]["by"], "me");
    }

    #[test]
    fn version_and_exists() {
        assert_eq!(version(None, true), r#"{"version":-1}"#);
        assert_eq!(version(Some(4), true), r#"{"version":4}"#);
        assert_eq!(version(None, false), "-1");
        assert_eq!(exists(true, true), r#"{"exists":true}"#);
        assert_eq!(exists(false, false), "false");
        let r = AppendResult {
            version: 4,
            first_position: 10,
            last_position: 14,
        };
        assert_eq!(appended(&r, false), "4");
        let v: Value = serde_json::from_str(&appended(&r, true)).unwrap();
        assert_eq!(v["version"], 4);
    }

    #[test]
    fn health_shapes() {
        let mut h = HealthReport {
            stores: vec![StoreHealth {
                store: "default".into(),
                healthy: true,
                leader: Some(2),
                workers: 3,
                leaders: 1,
                followers: 2,
                learners: 0,
                suspect: 0,
            }],
            leases_expired: 0,
            audit: Default::default(),
        };
        assert_eq!(
            health(&h, true),
            r#"{"status":"healthy","stores":{"default":{"workers":3,"leader":2}}}"#
        );
        assert_eq!(
            health(&h, false),
            "healthy\ndefault healthy workers=3 leader=2"
        );
        assert_eq!(unavailable(&h), None);
        // A secured gater's audit counts, once there are any.
        let mut counted = h.clone();
        counted.audit.permission_denied = 2;
        assert_eq!(
            health(&counted, false),
            "healthy\ndefault healthy workers=3 leader=2\n\
             audit auth_failures=0 permission_denied=2 admin_actions=0"
        );
        let v: Value = serde_json::from_str(&health(&counted, true)).unwrap();
        assert_eq!(v["audit"]["permission_denied"], 2);
        // A suspect worker under a known leader: degraded, but writes go on.
        h.stores[0].healthy = false;
        h.stores[0].suspect = 1;
        assert_eq!(unavailable(&h), None);
        h.stores[0].leader = None;
        assert_eq!(
            health(&h, true),
            r#"{"status":"degraded","stores":{"default":{"workers":3,"leader":null}}}"#
        );
        assert_eq!(
            unavailable(&h).as_deref(),
            Some("store default has no leader")
        );
        let mut other = h.stores[0].clone();
        other.store = "audit".into();
        h.stores.push(other);
        assert_eq!(
            unavailable(&h).as_deref(),
            Some("stores default, audit have no leader")
        );
        h.stores.clear();
        assert_eq!(health(&h, true), r#"{"status":"degraded","stores":{}}"#);
        assert_eq!(
            unavailable(&h).as_deref(),
            Some("no store has a registered worker")
        );
    }

    #[test]
    fn cluster_shape() {
        let s = StoreStatus {
            store: "default".into(),
            leader: Some(2),
            term: 3,
            nodes: vec![NodeStatus {
                node_id: 1,
                address: "127.0.0.1:7601".into(),
                role: Role::Follower,
                term: 3,
                last_log_index: 120,
                applied_index: 120,
                last_heartbeat_ms: 5,
                leader_changes: 1,
                appended_events: 0,
                healthy: true,
            }],
        };
        assert_eq!(
            cluster(&s, true),
            r#"{"store":"default","leader":2,"term":3,"nodes":[{"node_id":1,"address":"127.0.0.1:7601","role":"follower","last_log_index":120,"applied_index":120,"leader_changes":1,"appended_events":0}]}"#
        );
        assert_eq!(
            cluster(&s, false),
            "default leader=2 term=3\n  node 1 127.0.0.1:7601 follower last_log_index=120 applied_index=120"
        );
    }
}
