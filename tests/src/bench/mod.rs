//! The parts of `reckon-bench`: what a run measures ([`Window`], [`Tally`],
//! [`RunSample`], [`Series`]), the raw redb baseline ([`raw`]), the nodes and
//! connections every workload stands on ([`process`]), the workloads against a real
//! node or through a gater ([`workloads`]), a 3-node cluster ([`cluster`]), the
//! subscription workloads ([`subs`]), a node behind a standalone gater in clear text
//! or with TLS and a token ([`secure`]), bytes on disk per event ([`disk`]), backup
//! and restore beside a raw copy ([`backup`]), append latency during a scavenge
//! ([`scavenge`]), the report
//! ([`report`]) and its comparison with a saved one ([`compare`]).
//!
//! Nothing here knows how the results are printed except `report` and `compare`,
//! and nothing but `process`, `workloads`, `cluster`, `secure`, `subs`, `backup` and
//! `scavenge` talks to a process.

pub mod backup;
pub mod cluster;
pub mod compare;
pub mod disk;
pub mod process;
pub mod raw;
pub mod report;
pub mod scavenge;
pub mod secure;
pub mod subs;
pub mod workloads;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reckon_gater::types::{ContentType, NewEvent};

/// Bytes of JSON data in every event, as the workloads fix it.
pub const PAYLOAD_BYTES: usize = 200;
/// The type of every event.
pub const EVENT_TYPE: &str = "bench";
/// Highest latency the histograms hold, in microseconds; longer requests count as this.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant figures the latency histograms keep.
const LATENCY_SIGFIG: u8 = 3;

/// The 200-byte JSON document every event carries: `{"pad":"xxx…"}`.
///
/// Panics if the constant and the padding disagree (a bug in this file).
pub fn payload() -> Vec<u8> {
    const HEAD: &str = r#"{"pad":""#;
    const TAIL: &str = r#""}"#;
    let pad = "x".repeat(PAYLOAD_BYTES - HEAD.len() - TAIL.len());
    let doc = format!("{HEAD}{pad}{TAIL}");
    assert_eq!(
        doc.len(),
        PAYLOAD_BYTES,
        "payload is {} bytes, not {PAYLOAD_BYTES}",
        doc.len()
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&doc).is_ok(),
        "payload is not JSON: {doc}"
    );
    doc.into_bytes()
}

/// Digits of the send stamp in [`stamped_payload`].
const STAMP_DIGITS: usize = 20;
/// What a stamped payload starts with, before the stamp's digits.
const STAMP_HEAD: &str = r#"{"t":""#;

/// A 200-byte JSON document that carries `t_us` (microseconds since the run's own
/// epoch, an `Instant` in this process) at a fixed offset, for S2's delivery latency:
/// `{"t":"00000000000000001234","pad":"xx…"}`.
pub fn stamped_payload(t_us: u64) -> Vec<u8> {
    let head = format!(r#"{STAMP_HEAD}{t_us:0STAMP_DIGITS$}","pad":""#);
    const TAIL: &str = r#""}"#;
    let pad = "x".repeat(PAYLOAD_BYTES - head.len() - TAIL.len());
    format!("{head}{pad}{TAIL}").into_bytes()
}

/// The stamp of a [`stamped_payload`]; `None` for any other data.
pub fn stamp_of(data: &[u8]) -> Option<u64> {
    let digits = data.get(STAMP_HEAD.len()..STAMP_HEAD.len() + STAMP_DIGITS)?;
    if !data.starts_with(STAMP_HEAD.as_bytes()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The bench event with `data`.
pub fn event_with(data: Vec<u8>) -> NewEvent {
    NewEvent {
        event_id: None,
        event_type: EVENT_TYPE.to_string(),
        data,
        metadata: Vec::new(),
        content_type: ContentType::Json,
        tags: Vec::new(),
    }
}

/// `n` copies of the bench event (`bench`, 200 bytes of JSON, no metadata, no tags,
/// id left to the node), built once per writer and cloned into each request.
pub fn events(n: usize) -> Vec<NewEvent> {
    let data = payload();
    (0..n).map(|_| event_with(data.clone())).collect()
}

/// An empty latency histogram (1 µs to [`LATENCY_MAX_US`]).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// How long a run warms up and then measures.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Run but not counted.
    pub warmup: Duration,
    /// Counted.
    pub window: Duration,
}

/// The instants of one run: warm-up from when it begins, then `[start, end)` counted.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When counting starts.
    pub start: Instant,
    /// When counting stops and the run issues no more requests.
    pub end: Instant,
    /// `end - start`.
    pub len: Duration,
}

impl Window {
    /// A window whose warm-up starts now.
    pub fn begin(timing: Timing) -> Window {
        let start = Instant::now() + timing.warmup;
        Window {
            start,
            end: start + timing.window,
            len: timing.window,
        }
    }

    /// Whether a request that completed at `done` counts.
    pub fn counts(&self, done: Instant) -> bool {
        done >= self.start && done < self.end
    }

    /// Whether the run is over at `now`: no request may start any more.
    pub fn over(&self, now: Instant) -> bool {
        now >= self.end
    }
}

/// What one client saw in one run: events completed inside the window and the
/// latency of each request that completed inside it.
pub struct Tally {
    events: u64,
    latency_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            events: 0,
            latency_us: histogram(),
        }
    }
}

impl Tally {
    /// Counts a request of `events` events issued at `started` and answered at `done`,
    /// if it completed inside the window.
    pub fn record(&mut self, window: &Window, started: Instant, done: Instant, events: u64) {
        if window.counts(done) {
            self.events += events;
            let us = done.saturating_duration_since(started).as_micros();
            self.latency_us
                .saturating_record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
        }
    }

    /// Adds another client's tally of the same run.
    pub fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.events += other.events;
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| anyhow::anyhow!("merging latency histograms: {e:?}"))
    }

    /// The run's sample, over `window`.
    pub fn finish(self, window: &Window) -> RunSample {
        RunSample {
            events: self.events,
            window: window.len,
            latency_us: self.latency_us,
        }
    }
}

/// One measured run.
pub struct RunSample {
    /// Events completed inside the window (written, committed or read).
    pub events: u64,
    /// The window's length.
    pub window: Duration,
    /// Latency of each request (or commit, or scanned chunk) completed in the window, µs.
    pub latency_us: Histogram<u64>,
}

impl RunSample {
    /// Events per second over the window.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }
}

/// The benchmark workloads this bench runs, as `--only` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workload {
    /// 1 writer, sequential single-event appends.
    #[value(name = "W1")]
    W1,
    /// 64 concurrent writers, each one single-event append at a time.
    #[value(name = "W2")]
    W2,
    /// 1 writer, batches of 100 events per append, and of 1000.
    #[value(name = "W3")]
    W3,
    /// Read the whole global log forward in pages of 1000.
    #[value(name = "W4")]
    W4,
    /// Catch-up: a subscription to `$all` from the beginning of a loaded log.
    #[value(name = "S1")]
    S1,
    /// Live: append-to-delivery latency at a paced append rate, 1 and 10 subscriptions.
    #[value(name = "S2")]
    S2,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 6] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::S1,
        Workload::S2,
    ];

    /// The raw redb figure this workload is divided by, if any.
    pub fn baseline(self) -> Option<Baseline> {
        match self {
            Workload::W1 | Workload::W2 => Some(Baseline::Single),
            Workload::W3 => Some(Baseline::Batch),
            Workload::W4 | Workload::S1 => Some(Baseline::Scan),
            Workload::S2 => None,
        }
    }
}

/// How a workload's clients reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// Straight to one `reckon-node --dev` over its worker service.
    Node,
    /// Through the gater that one `reckon-node --dev` embeds, with the client library.
    Gater,
    /// Through a standalone gater in front of a 3-node cluster, with the client library.
    Cluster,
    /// Through a standalone gater in front of one node, clear text, the gater open:
    /// the plain side of the cost of security (`--secure`).
    Standalone,
    /// The same with TLS on every link (client to gater, gater to node, node to gater)
    /// and a token the gater checks (`--secure`).
    Secure,
    /// Through the KurrentDB gRPC front door of the gater one `reckon-node --dev`
    /// embeds, as a KurrentDB client appends (`--kurrent`): beside [`Via::Gater`].
    Kurrent,
}

impl Via {
    /// Every path, in report order.
    pub const ALL: [Via; 6] = [
        Via::Node,
        Via::Gater,
        Via::Kurrent,
        Via::Cluster,
        Via::Standalone,
        Via::Secure,
    ];

    /// Short id for JSON and progress lines.
    pub fn id(self) -> &'static str {
        match self {
            Via::Node => "node",
            Via::Gater => "gater",
            Via::Cluster => "cluster",
            Via::Standalone => "gater-plain",
            Via::Secure => "gater-secure",
            Via::Kurrent => "kurrent",
        }
    }

    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Via::Node => "node, direct",
            Via::Gater => "gater → node",
            Via::Cluster => "gater → 3-node cluster",
            Via::Standalone => "reckon-gater → node, clear text",
            Via::Secure => "reckon-gater → node, TLS + token",
            Via::Kurrent => "KurrentDB gRPC → gater → node",
        }
    }
}

/// The raw redb figures: the disk's ceiling as one process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Baseline {
    /// (a) one event per `Durability::Immediate` commit, sequential.
    Single,
    /// (b) 1000 events per `Durability::Immediate` commit, sequential.
    Batch,
    /// (c) a warm sequential scan of the table.
    Scan,
}

impl Baseline {
    /// Every baseline, in report order.
    pub const ALL: [Baseline; 3] = [Baseline::Single, Baseline::Batch, Baseline::Scan];

    /// Short id for JSON and progress lines.
    pub fn id(self) -> &'static str {
        match self {
            Baseline::Single => "raw-single",
            Baseline::Batch => "raw-1000",
            Baseline::Scan => "raw-scan",
        }
    }

    /// What it measures, for the table.
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Single => "(a) 1 event per Immediate commit, sequential",
            Baseline::Batch => "(b) 1000 events per Immediate commit, sequential",
            Baseline::Scan => "(c) warm sequential scan of the table",
        }
    }

    /// How the ratio column names it.
    pub fn short(self) -> &'static str {
        match self {
            Baseline::Single => "(a) raw 1-event commits",
            Baseline::Batch => "(b) raw 1000-event commits",
            Baseline::Scan => "(c) raw scan",
        }
    }

    /// What one latency sample is.
    pub fn latency_of(self) -> &'static str {
        match self {
            Baseline::Single | Baseline::Batch => "commit",
            Baseline::Scan => "1000 rows",
        }
    }
}

/// The median of `v`, in any order.
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    median(&v)
}

/// The median of ascending `sorted` values (mean of the middle two for an even
/// count); 0 for none.
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The runs of one row of the report.
pub struct Series {
    /// Short id: `W1`, `W3/1000`, `S2/10`, `raw-single`, ...
    pub id: String,
    /// What the row measures, for the table.
    pub label: String,
    /// How its clients reached the store; `None` for a baseline row.
    pub via: Option<Via>,
    /// The baseline this row is compared with; `None` for a baseline row.
    pub compare_to: Option<Baseline>,
    /// One sample per run, in run order.
    pub runs: Vec<RunSample>,
}

impl Series {
    /// The runs' events/s, sorted ascending.
    fn sorted_rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self.runs.iter().map(RunSample::rate).collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    /// Median events/s over the runs (mean of the middle two for an even count);
    /// 0 with no runs.
    pub fn median_rate(&self) -> f64 {
        median(&self.sorted_rates())
    }

    /// Lowest events/s of a run.
    pub fn min_rate(&self) -> f64 {
        self.sorted_rates().first().copied().unwrap_or(0.0)
    }

    /// Highest events/s of a run.
    pub fn max_rate(&self) -> f64 {
        self.sorted_rates().last().copied().unwrap_or(0.0)
    }

    /// The latencies of every run's requests together.
    pub fn latency_us(&self) -> Histogram<u64> {
        let mut all = histogram();
        for run in &self.runs {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&run.latency_us);
        }
        all
    }
}

/// A row of one run of `events_per_sec` with every request taking `latency_us`, for
/// the tests of the report and the comparison.
#[cfg(test)]
pub fn test_series(
    id: &str,
    via: Option<Via>,
    compare_to: Option<Baseline>,
    events_per_sec: u64,
    latency_us: u64,
) -> Series {
    let mut h = histogram();
    h.saturating_record(latency_us);
    Series {
        id: id.to_string(),
        label: format!("{id} label"),
        via,
        compare_to,
        runs: vec![RunSample {
            events: events_per_sec,
            window: Duration::from_secs(1),
            latency_us: h,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::{payload, stamp_of, stamped_payload, PAYLOAD_BYTES};

    #[test]
    fn stamped_payloads_are_200_bytes_of_json_and_give_their_stamp_back() {
        for t in [0, 1, 999_999, u64::MAX] {
            let data = stamped_payload(t);
            assert_eq!(data.len(), PAYLOAD_BYTES);
            assert!(serde_json::from_slice::<serde_json::Value>(&data).is_ok());
            assert_eq!(stamp_of(&data), Some(t));
        }
        assert_eq!(stamp_of(&payload()), None);
        assert_eq!(stamp_of(b""), None);
    }
}
