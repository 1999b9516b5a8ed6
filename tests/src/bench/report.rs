//! The report: a markdown table for the README, the raw redb figures, the settings
//! and command line, and the same as JSON for `--json`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::{Baseline, RunSample, Series};

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
    /// Facts worth keeping next to the numbers (W4 load time, bytes on disk).
    pub notes: Vec<String>,
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

fn fmt_ratio(r: f64) -> String {
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

    /// The human report: the README table, the raw redb figures, notes, settings and
    /// the command line.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| workload | events/s (median) | min–max | p50 | p99 | p99.9 | ratio to raw redb |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|---|");
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
            let _ = writeln!(
                out,
                "| {} | {} | {}–{} | {} | {} | {} | {} |",
                w.label,
                rate(w.median_rate()),
                rate(w.min_rate()),
                rate(w.max_rate()),
                us(&lat, 0.5),
                us(&lat, 0.99),
                us(&lat, 0.999),
                ratio_cell
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Latency is per request (per page for W4), over the requests of all runs together."
        );
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
        let w4 = if self.workloads.iter().any(|w| w.id == "W4") {
            format!("W4 on {} events; ", thousands(s.w4_events))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} run(s) per row, median shown; {} s warm-up, then {} s measured; {w4}\
             {} CPU(s) shared by client and node; node {}; data under {}",
            s.runs, s.warmup_secs, s.secs, s.cpus, s.node_bin, s.dir
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "command: {}", s.command);
        out
    }

    /// The same results, machine-readable.
    pub fn json(&self) -> Value {
        let s = &self.settings;
        let workloads: Vec<Value> = self
            .workloads
            .iter()
            .map(|w| {
                let mut v = series_json(w);
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
            "command": s.command,
            "settings": {
                "runs": s.runs,
                "warmup_secs": s.warmup_secs,
                "secs": s.secs,
                "w4_events": s.w4_events,
                "quick": s.quick,
                "node_bin": s.node_bin,
                "dir": s.dir,
                "cpus": s.cpus,
                "payload_bytes": super::PAYLOAD_BYTES,
                "event_type": super::EVENT_TYPE,
            },
            "workloads": workloads,
            "baselines": baselines,
            "notes": self.notes,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::thousands;

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
