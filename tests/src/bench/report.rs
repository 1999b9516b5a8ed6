//! The report: a markdown table for the README, the raw redb figures, bytes on disk
//! per event, the settings and command line, and the same as JSON for `--json`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::disk::{DiskReport, Parts, PerEvent};
use super::{Baseline, RunSample, Series, Via};

/// What `--json` writes in its `"tool"` field.
pub const TOOL: &str = "reckon-bench";
/// The layout of what `--json` writes now, in its `"format"` field. Format 2 added
/// `"tool"`, `"format"` and `"disk"`; a file without `"tool"` is format 1.
pub const FORMAT: u64 = 2;

/// How the bench was run, as the report states it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The command line, shell-quoted.
    pub command: String,
    /// Runs per row.
    pub runs: u32,
    /// Warm-up per run, seconds.
    pub warmup_secs: f64,
    /// Window per run, seconds.
    pub secs: f64,
    /// Events loaded before W4.
    pub w4_events: u64,
    /// Events in the log S1 catches up on.
    pub s1_events: u64,
    /// Appends per second in S2.
    pub s2_rate: u32,
    /// The single-node paths measured (`--via`).
    pub vias: Vec<Via>,
    /// `--cluster` was given.
    pub cluster: bool,
    /// `--secure` was given.
    pub secure: bool,
    /// `--kurrent` was given.
    pub kurrent: bool,
    /// `--quick` was given.
    pub quick: bool,
    /// The node binary.
    pub node_bin: String,
    /// The directory holding the nodes' and redb's files.
    pub dir: String,
    /// CPUs this process may use (client and server share them).
    pub cpus: usize,
}

/// Everything one bench invocation measured.
pub struct Report {
    /// How it was run.
    pub settings: Settings,
    /// The reckon rows, in report order.
    pub workloads: Vec<Series>,
    /// The raw redb rows.
    pub baselines: Vec<(Baseline, Series)>,
    /// Facts worth keeping next to the numbers (W4 load time, the event id index).
    pub notes: Vec<String>,
    /// Bytes on disk per event of W4's node, when W4 ran.
    pub disk: Option<DiskReport>,
    /// Backup and restore beside a raw copy, with `--backup`.
    pub backup: Option<super::backup::BackupReport>,
    /// Append latency during a scavenge beside idle, with `--scavenge`.
    pub scavenge: Option<super::scavenge::ScavengeReport>,
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(r: f64) -> String {
    thousands(r.round() as u64)
}

fn us(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "–".to_string()
    } else {
        format!("{} µs", thousands(h.value_at_quantile(q)))
    }
}

fn ratio(value: f64, base: f64) -> Option<f64> {
    (base > 0.0).then(|| value / base)
}

/// The figure the project targets for a row.
struct Target {
    /// Events/s at least.
    min_rate: Option<f64>,
    /// p99 below this, µs.
    max_p99_us: Option<u64>,
}

impl Target {
    /// The project's target for row `id` reached `via`: the single-node
    /// column for the node and the gater paths, the cluster column for the cluster.
    fn of(id: &str, via: Via) -> Option<Target> {
        let cluster = via == Via::Cluster;
        let rate = |single: f64, in_cluster: f64, p99: Option<u64>| {
            Some(Target {
                min_rate: Some(if cluster { in_cluster } else { single }),
                max_p99_us: p99,
            })
        };
        match id {
            "W1" => rate(3_000.0, 2_000.0, Some(if cluster { 5_000 } else { 1_300 })),
            "W2" => rate(60_000.0, 25_000.0, None),
            "W3/100" => rate(150_000.0, 75_000.0, None),
            "W3/1000" => rate(300_000.0, 150_000.0, None),
            "W4" => rate(2_000_000.0, 2_000_000.0, None),
            "S1" => rate(500_000.0, 500_000.0, None),
            id if id.starts_with("S2/") => Some(Target {
                min_rate: None,
                max_p99_us: Some(10_000),
            }),
            _ => None,
        }
    }

    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.min_rate {
            parts.push(format!("≥ {}/s", rate(r)));
        }
        if let Some(p) = self.max_p99_us {
            parts.push(format!("p99 < {} µs", thousands(p)));
        }
        parts.join(", ")
    }

    fn met(&self, s: &Series) -> bool {
        let lat = s.latency_us();
        self.min_rate.is_none_or(|r| s.median_rate() >= r)
            && self
                .max_p99_us
                .is_none_or(|p| !lat.is_empty() && lat.value_at_quantile(0.99) < p)
    }
}

/// The budget for the gater's hop on single-event appends: at least this share of the
/// node's events/s ...
const GATER_RATE_SHARE_MIN: f64 = 0.85;
/// ... and at most this much added to p50, µs.
const GATER_P50_ADDED_MAX_US: i64 = 100;

/// The gater's cost on one workload: its row next to the node's.
struct GaterCost<'a> {
    node: &'a Series,
    gater: &'a Series,
}

impl GaterCost<'_> {
    fn share(&self) -> Option<f64> {
        ratio(self.gater.median_rate(), self.node.median_rate())
    }

    fn p50_added_us(&self) -> Option<i64> {
        let (n, g) = (self.node.latency_us(), self.gater.latency_us());
        (!n.is_empty() && !g.is_empty())
            .then(|| g.value_at_quantile(0.5) as i64 - n.value_at_quantile(0.5) as i64)
    }

    /// Whether the gater's budget applies (single-event appends) and is kept.
    fn within_budget(&self) -> Option<bool> {
        matches!(self.node.id.as_str(), "W1" | "W2").then(|| {
            self.share().is_some_and(|r| r >= GATER_RATE_SHARE_MIN)
                && self
                    .p50_added_us()
                    .is_some_and(|d| d <= GATER_P50_ADDED_MAX_US)
        })
    }
}

/// The target for the cost of security on W2: the secure path keeps at least this
/// share of the plain path's events/s (issue 14: "within 15% of plain on W2").
pub const SECURE_RATE_SHARE_MIN: f64 = 0.85;

/// The cost of security on one workload: the secure row next to its plain
/// counterpart (the same standalone gater and node, clear text and open).
struct SecurityCost<'a> {
    plain: &'a Series,
    secure: &'a Series,
}

impl SecurityCost<'_> {
    fn share(&self) -> Option<f64> {
        ratio(self.secure.median_rate(), self.plain.median_rate())
    }

    /// Secure ÷ plain of each round (the two runs taken one after the other),
    /// ascending: how far the ratio moves between rounds on this machine.
    fn round_shares(&self) -> Vec<f64> {
        let mut shares: Vec<f64> = self
            .plain
            .runs
            .iter()
            .zip(&self.secure.runs)
            .filter_map(|(p, s)| ratio(s.rate(), p.rate()))
            .collect();
        shares.sort_by(f64::total_cmp);
        shares
    }

    /// The rounds' shares as the table shows them: `0.94× (0.70–1.14×)`.
    fn round_shares_text(&self) -> String {
        let shares = self.round_shares();
        match (shares.first(), shares.last()) {
            (Some(lo), Some(hi)) => format!(
                "{} ({}–{})",
                fmt_ratio(super::median(&shares)),
                fmt_ratio(*lo),
                fmt_ratio(*hi)
            ),
            _ => "–".to_string(),
        }
    }

    fn p50_added_us(&self) -> Option<i64> {
        let (p, s) = (self.plain.latency_us(), self.secure.latency_us());
        (!p.is_empty() && !s.is_empty())
            .then(|| s.value_at_quantile(0.5) as i64 - p.value_at_quantile(0.5) as i64)
    }

    /// Whether the target applies (W2) and is met.
    fn within_target(&self) -> Option<bool> {
        (self.plain.id == "W2").then(|| self.share().is_some_and(|r| r >= SECURE_RATE_SHARE_MIN))
    }
}

/// `+12 µs` or `−3 µs`.
fn signed_us(d: i64) -> String {
    format!(
        "{}{} µs",
        if d < 0 { "−" } else { "+" },
        thousands(d.unsigned_abs())
    )
}

/// A ratio as the tables show it: three significant figures or so.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

impl Report {
    fn baseline(&self, b: Baseline) -> Option<&Series> {
        self.baselines
            .iter()
            .find(|(kind, _)| *kind == b)
            .map(|(_, s)| s)
    }

    /// Every workload measured both straight to the node and through its gater.
    fn gater_costs(&self) -> Vec<GaterCost<'_>> {
        let row = |id: &str, via: Via| {
            self.workloads
                .iter()
                .find(|w| w.id == id && w.via == Some(via))
        };
        self.workloads
            .iter()
            .filter(|w| w.via == Some(Via::Node))
            .filter_map(|node| {
                Some(GaterCost {
                    node,
                    gater: row(&node.id, Via::Gater)?,
                })
            })
            .collect()
    }

    /// Every workload measured through the standalone gater both plain and secure.
    fn security_costs(&self) -> Vec<SecurityCost<'_>> {
        let row = |id: &str, via: Via| {
            self.workloads
                .iter()
                .find(|w| w.id == id && w.via == Some(via))
        };
        self.workloads
            .iter()
            .filter(|w| w.via == Some(Via::Standalone))
            .filter_map(|plain| {
                Some(SecurityCost {
                    plain,
                    secure: row(&plain.id, Via::Secure)?,
                })
            })
            .collect()
    }

    fn security_markdown(&self, out: &mut String) {
        let costs = self.security_costs();
        if costs.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "The cost of security, from the rows above: the same standalone `reckon-gater` in \
             front of the same single node, in clear text with the gater open (plain), and with \
             TLS on every link and a token the gater checks (secure); the target: on W2 at least \
             {SECURE_RATE_SHARE_MIN}× plain's events/s. \"per round\" divides the two runs \
             of each round, taken one after the other: the median and the spread show how \
             much of the ratio is the machine:"
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| workload | plain events/s | secure events/s | secure ÷ plain | per round | plain p50 | secure p50 | p50 added | plain p99 | secure p99 | target |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for c in &costs {
            let (pl, sl) = (c.plain.latency_us(), c.secure.latency_us());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.plain.id,
                rate(c.plain.median_rate()),
                rate(c.secure.median_rate()),
                c.share().map_or("–".to_string(), fmt_ratio),
                c.round_shares_text(),
                us(&pl, 0.5),
                us(&sl, 0.5),
                c.p50_added_us().map_or("–".to_string(), signed_us),
                us(&pl, 0.99),
                us(&sl, 0.99),
                match c.within_target() {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "–",
                }
            );
        }
    }

    /// The human report: the README table, the gater's cost, the raw redb figures,
    /// notes, settings and the command line.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| workload | via | events/s (median) | min–max | p50 | p99 | p99.9 | ratio to raw redb | target |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|---|---|");
        for w in &self.workloads {
            let lat = w.latency_us();
            let ratio_cell = match w.compare_to {
                Some(b) => match self
                    .baseline(b)
                    .and_then(|base| ratio(w.median_rate(), base.median_rate()))
                {
                    Some(r) => format!("{} {}", fmt_ratio(r), b.short()),
                    None => "–".to_string(),
                },
                None => "–".to_string(),
            };
            let target_cell = match w.via.and_then(|v| Target::of(&w.id, v)) {
                Some(t) if t.met(w) => format!("{}: met", t.text()),
                Some(t) => format!("{}: **missed**", t.text()),
                None => "–".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} |",
                w.label,
                w.via.map_or("–", Via::label),
                rate(w.median_rate()),
                rate(w.min_rate()),
                rate(w.max_rate()),
                us(&lat, 0.5),
                us(&lat, 0.99),
                us(&lat, 0.999),
                ratio_cell,
                target_cell
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Latency is per request (per page for W4, per `next_batch` for S1; for S2 from the \
             start of each append to its delivery, for every subscription), over the requests \
             of all runs together. S1's events/s run from `subscribe` to the last event (no \
             warm-up); S2's events/s are the appends acknowledged, the offered load. Targets \
             are the project's: the single-node column for the node and gater paths, the \
             cluster column for the cluster."
        );
        let costs = self.gater_costs();
        if !costs.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "The gater's cost, from the rows above (its budget: on single-event appends at \
                 least {GATER_RATE_SHARE_MIN}× the node's events/s and at most \
                 {GATER_P50_ADDED_MAX_US} µs more p50):"
            );
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| workload | node events/s | gater events/s | gater ÷ node | node p50 | gater p50 | p50 added | within budget |"
            );
            let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|---|");
            for c in &costs {
                let (nl, gl) = (c.node.latency_us(), c.gater.latency_us());
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.node.id,
                    rate(c.node.median_rate()),
                    rate(c.gater.median_rate()),
                    c.share().map_or("–".to_string(), fmt_ratio),
                    us(&nl, 0.5),
                    us(&gl, 0.5),
                    c.p50_added_us().map_or("–".to_string(), signed_us),
                    match c.within_budget() {
                        Some(true) => "kept",
                        Some(false) => "**exceeded**",
                        None => "–",
                    }
                );
            }
        }
        self.security_markdown(&mut out);
        if let Some(disk) = &self.disk {
            disk_markdown(&mut out, disk);
        }
        if let Some(backup) = &self.backup {
            backup.markdown(&mut out);
        }
        if let Some(scavenge) = &self.scavenge {
            scavenge.markdown(&mut out);
        }
        if !self.baselines.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Raw redb baseline, in this process on the same directory, same 200-byte values under u64 keys:"
            );
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| raw redb | events/s (median) | min–max | p50 | p99 | p99.9 | latency of |"
            );
            let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|---|");
            for (b, series) in &self.baselines {
                let lat = series.latency_us();
                let _ = writeln!(
                    out,
                    "| {} | {} | {}–{} | {} | {} | {} | {} |",
                    b.label(),
                    rate(series.median_rate()),
                    rate(series.min_rate()),
                    rate(series.max_rate()),
                    us(&lat, 0.5),
                    us(&lat, 0.99),
                    us(&lat, 0.999),
                    b.latency_of()
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let _ = writeln!(out);
        let mut logs = String::new();
        if self.workloads.iter().any(|w| w.id == "W4") {
            let _ = write!(logs, "W4 on {} events; ", thousands(s.w4_events));
        }
        if self.workloads.iter().any(|w| w.id == "S1") {
            let _ = write!(logs, "S1 on {} events; ", thousands(s.s1_events));
        }
        if self.workloads.iter().any(|w| w.id.starts_with("S2/")) {
            let _ = write!(
                logs,
                "S2 at {} single-event appends/s over {} streams; ",
                thousands(u64::from(s.s2_rate)),
                super::subs::S2_STREAMS
            );
        }
        let vias: Vec<&str> = s.vias.iter().map(|v| v.id()).collect();
        let _ = writeln!(
            out,
            "{} run(s) per row, median shown; {} s warm-up, then {} s measured; {logs}\
             single node via {}{}{}{}; {} CPU(s) shared by clients, nodes and gaters; node {}; \
             data under {}",
            s.runs,
            s.warmup_secs,
            s.secs,
            vias.join(" and "),
            if s.cluster {
                ", and a 3-node cluster through its gater"
            } else {
                ""
            },
            if s.kurrent {
                ", and W1/W2 through the same gater's KurrentDB gRPC front door"
            } else {
                ""
            },
            if s.secure {
                ", and W1/W2 through a standalone reckon-gater in front of one node, clear \
                 text and with TLS and a token"
            } else {
                ""
            },
            s.cpus,
            s.node_bin,
            s.dir
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "command: {}", s.command);
        out
    }

    /// The same results, machine-readable, marked as this tool's in the current
    /// format ([`FORMAT`]) so that `--compare` can read them back.
    pub fn json(&self) -> Value {
        let s = &self.settings;
        let workloads: Vec<Value> = self
            .workloads
            .iter()
            .map(|w| {
                let mut v = series_json(w);
                if let Some(via) = w.via {
                    v["via"] = json!(via.id());
                    if let Some(t) = Target::of(&w.id, via) {
                        v["target"] = json!({
                            "min_events_per_sec": t.min_rate,
                            "max_p99_us": t.max_p99_us,
                            "met": t.met(w),
                        });
                    }
                }
                if let Some(b) = w.compare_to {
                    v["baseline"] = json!(b.id());
                    v["ratio_to_baseline"] = json!(self
                        .baseline(b)
                        .and_then(|base| ratio(w.median_rate(), base.median_rate())));
                }
                v
            })
            .collect();
        let baselines: Vec<Value> = self
            .baselines
            .iter()
            .map(|(b, series)| {
                let mut v = series_json(series);
                v["latency_of"] = json!(b.latency_of());
                v
            })
            .collect();
        json!({
            "tool": TOOL,
            "format": FORMAT,
            "command": s.command,
            "settings": {
                "runs": s.runs,
                "warmup_secs": s.warmup_secs,
                "secs": s.secs,
                "w4_events": s.w4_events,
                "s1_events": s.s1_events,
                "s2_rate": s.s2_rate,
                "via": s.vias.iter().map(|v| v.id()).collect::<Vec<_>>(),
                "cluster": s.cluster,
                "secure": s.secure,
                "kurrent": s.kurrent,
                "quick": s.quick,
                "node_bin": s.node_bin,
                "dir": s.dir,
                "cpus": s.cpus,
                "payload_bytes": super::PAYLOAD_BYTES,
                "event_type": super::EVENT_TYPE,
            },
            "workloads": workloads,
            "gater_cost": self
                .gater_costs()
                .iter()
                .map(|c| json!({
                    "id": c.node.id,
                    "node_events_per_sec": c.node.median_rate(),
                    "gater_events_per_sec": c.gater.median_rate(),
                    "gater_share": c.share(),
                    "p50_added_us": c.p50_added_us(),
                    "within_issue3_budget": c.within_budget(),
                }))
                .collect::<Vec<_>>(),
            "security_cost": self
                .security_costs()
                .iter()
                .map(|c| json!({
                    "id": c.plain.id,
                    "plain_events_per_sec": c.plain.median_rate(),
                    "secure_events_per_sec": c.secure.median_rate(),
                    "secure_share": c.share(),
                    "secure_share_per_round": c.round_shares(),
                    "p50_added_us": c.p50_added_us(),
                    "within_issue14_target": c.within_target(),
                }))
                .collect::<Vec<_>>(),
            "baselines": baselines,
            "notes": self.notes,
            "disk": self.disk.as_ref().map(disk_json),
            "backup": self.backup.as_ref().map(super::backup::BackupReport::json),
            "scavenge": self.scavenge.as_ref().map(super::scavenge::ScavengeReport::json),
        })
    }
}

/// Bytes per event as the tables show them: whole bytes.
fn bytes_per_event(b: f64) -> String {
    format!("{} B", thousands(b.round() as u64))
}

/// The disk table: one row per look at the node's data directory.
fn disk_markdown(out: &mut String, disk: &DiskReport) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Disk per {}-byte event: the data directory of {}'s node after loading {} events, \
         in blocks allocated to its files (`st_blocks` × 512; redb grows a file ahead of its \
         contents and the unwritten tail takes no blocks), and the files' lengths for scale; \
         looked at right after the load, and again after the first run of reads on every \
         path (the node has no writes after its load):",
        disk.event_bytes,
        disk.of,
        thousands(disk.events)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| disk per {}-byte event | total | log (`{}`) | state (`{}`) | snapshots | total by file length |",
        disk.event_bytes,
        super::disk::LOG_FILE,
        super::disk::STATE_FILE
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
    for look in &disk.looks {
        let (Some(a), Some(l)) = (
            look.allocated.per(disk.events),
            look.apparent.per(disk.events),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            look.label,
            bytes_per_event(a.total),
            bytes_per_event(a.log),
            bytes_per_event(a.state),
            bytes_per_event(a.snapshots),
            bytes_per_event(l.total)
        );
    }
}

fn parts_json(p: &Parts) -> Value {
    json!({
        "total": p.total,
        "log": p.log,
        "state": p.state,
        "snapshots": p.snapshots,
        "other": p.other,
    })
}

fn per_event_json(p: Option<PerEvent>) -> Value {
    match p {
        Some(p) => json!({
            "total": p.total,
            "log": p.log,
            "state": p.state,
            "snapshots": p.snapshots,
            "other": p.other,
        }),
        None => Value::Null,
    }
}

/// The disk looks; `allocated_bytes_per_event` is the figure `--compare` reads.
fn disk_json(disk: &DiskReport) -> Value {
    json!({
        "of": disk.of,
        "events": disk.events,
        "event_bytes": disk.event_bytes,
        "allocated": "st_blocks × 512",
        "apparent": "file length",
        "looks": disk.looks.iter().map(|look| json!({
            "when": look.when,
            "label": look.label,
            "files": look.files,
            "allocated_bytes": parts_json(&look.allocated),
            "apparent_bytes": parts_json(&look.apparent),
            "allocated_bytes_per_event": per_event_json(look.allocated.per(disk.events)),
            "apparent_bytes_per_event": per_event_json(look.apparent.per(disk.events)),
        })).collect::<Vec<_>>(),
    })
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "requests": 0 });
    }
    json!({
        "requests": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn run_json(r: &RunSample) -> Value {
    json!({
        "events": r.events,
        "window_secs": r.window.as_secs_f64(),
        "events_per_sec": r.rate(),
        "latency": latency_json(&r.latency_us),
    })
}

fn series_json(s: &Series) -> Value {
    json!({
        "id": s.id,
        "label": s.label,
        "events_per_sec": {
            "median": s.median_rate(),
            "min": s.min_rate(),
            "max": s.max_rate(),
        },
        "latency": latency_json(&s.latency_us()),
        "runs": s.runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

/// Settings for a report nothing ran for, for the tests.
#[cfg(test)]
pub fn test_settings() -> Settings {
    Settings {
        command: "reckon-bench --quick".to_string(),
        runs: 1,
        warmup_secs: 0.5,
        secs: 2.0,
        w4_events: 200_000,
        s1_events: 200_000,
        s2_rate: 5_000,
        vias: vec![Via::Node, Via::Gater],
        cluster: false,
        secure: false,
        kurrent: false,
        quick: true,
        node_bin: "reckon-node".to_string(),
        dir: "target/bench-data".to_string(),
        cpus: 2,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_series, Baseline, Via};
    use super::{test_settings, thousands, Report};
    use serde_json::Value;

    /// A report of `workloads` measured against `baseline`, with nothing else.
    fn report_of(
        workloads: Vec<super::super::Series>,
        baseline: (Baseline, super::super::Series),
    ) -> Report {
        Report {
            settings: test_settings(),
            workloads,
            baselines: vec![baseline],
            notes: Vec::new(),
            disk: None,
            backup: None,
            scavenge: None,
        }
    }

    #[test]
    fn the_gater_cost_table_has_both_w3_rows() {
        let b = Some(Baseline::Batch);
        let report = report_of(
            vec![
                test_series("W3/100", Some(Via::Node), b, 70_000, 1_300),
                test_series("W3/100", Some(Via::Gater), b, 56_000, 1_600),
                test_series("W3/1000", Some(Via::Node), b, 160_000, 5_000),
                test_series("W3/1000", Some(Via::Gater), b, 128_000, 6_000),
            ],
            (
                Baseline::Batch,
                test_series("raw-1000", None, None, 500_000, 2_000),
            ),
        );
        let text = report.markdown();
        let cost = text
            .split("The gater's cost")
            .nth(1)
            .expect("a gater cost table");
        assert!(
            cost.contains("| W3/100 | 70,000 | 56,000 | 0.80× |"),
            "{cost}"
        );
        assert!(
            cost.contains("| W3/1000 | 160,000 | 128,000 | 0.80× |"),
            "{cost}"
        );
    }

    #[test]
    fn the_security_cost_table_divides_secure_by_plain_and_checks_w2() {
        let a = Some(Baseline::Single);
        let report = report_of(
            vec![
                test_series("W1", Some(Via::Gater), a, 3_000, 300),
                test_series("W1", Some(Via::Standalone), a, 2_000, 400),
                test_series("W1", Some(Via::Secure), a, 1_000, 500),
                test_series("W2", Some(Via::Standalone), a, 40_000, 1_000),
                test_series("W2", Some(Via::Secure), a, 36_000, 1_100),
            ],
            (
                Baseline::Single,
                test_series("raw-single", None, None, 5_000, 200),
            ),
        );
        let text = report.markdown();
        let cost = text
            .split("The cost of security")
            .nth(1)
            .expect("a security cost table");
        assert!(
            cost.contains(
                "| W1 | 2,000 | 1,000 | 0.50× | 0.50× (0.50×–0.50×) | 400 µs | 500 µs | +100 µs |"
            ),
            "{cost}"
        );
        assert!(cost.contains("| W1 |") && cost.contains("| – |"), "{cost}");
        assert!(
            cost.contains("| W2 | 40,000 | 36,000 | 0.90× |") && cost.contains("| met |"),
            "{cost}"
        );
        let json = report.json();
        let w2 = &json["security_cost"][1];
        assert_eq!(w2["id"], "W2");
        assert_eq!(w2["within_issue14_target"], true);
        assert_eq!(
            json["security_cost"][0]["within_issue14_target"],
            Value::Null
        );
    }

    #[test]
    fn thousands_groups_by_three() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), s);
        }
    }
}
