//! Metrics: the counters and latency histograms a node keeps per store, and the form
//! in which the gater serves them to the console and the CLI (`reckon stats`).
//!
//! A [`Histogram`] is lock-free: a fixed array of atomic buckets on a log scale with
//! four buckets per power of two (1 µs to about 70 s), so a percentile read from it is
//! the upper bound of its bucket, at most 19% above the true value. Its
//! [`HistogramSnapshot`] travels over the wire, merges with others (several nodes of a
//! store) and answers percentiles.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{Role, ScavengeStatus, StoreError};

/// Buckets per power of two.
const SUB_BUCKETS: usize = 4;
/// Powers of two covered: values up to 2^26 µs (about 67 s); above land in the last.
const OCTAVES: usize = 26;
/// Buckets of a histogram.
pub const BUCKETS: usize = SUB_BUCKETS * OCTAVES + 1;

/// The upper bound in microseconds of bucket `i` (the last is unbounded: `u64::MAX`).
pub fn bucket_upper_us(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return u64::MAX;
    }
    let octave = i / SUB_BUCKETS;
    let sub = i % SUB_BUCKETS;
    // Bucket i covers (2^(o + s/4) .. 2^(o + (s+1)/4)] µs, rounded up to whole µs.
    let exp = octave as f64 + (sub + 1) as f64 / SUB_BUCKETS as f64;
    2f64.powf(exp).ceil() as u64
}

/// The bucket a value of `us` microseconds falls into.
pub fn bucket_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    // Smallest i with upper(i) >= us; a short search from the octave's first bucket.
    let octave = (63 - us.leading_zeros()) as usize;
    let mut i = (octave.saturating_sub(1) * SUB_BUCKETS).min(BUCKETS - 1);
    while i + 1 < BUCKETS && bucket_upper_us(i) < us {
        i += 1;
    }
    i
}

/// A latency histogram that many tasks record into at once.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// What it holds now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment, as it travels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Observations per bucket ([`bucket_upper_us`] gives each bucket's bound); empty
    /// when nothing was recorded anywhere.
    pub buckets: Vec<u64>,
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds: the upper bound of the
    /// bucket it falls in (the largest finite bound for the overflow bucket); `None`
    /// with no observations.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_upper_us(i.min(BUCKETS - 2)));
            }
        }
        Some(bucket_upper_us(BUCKETS - 2))
    }

    /// Mean in microseconds; `None` with no observations.
    pub fn mean_us(&self) -> Option<u64> {
        let n = self.count();
        (n > 0).then(|| self.sum_us / n)
    }

    /// Adds another histogram's counts into this one.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Counts observed since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Cumulative counts at the given upper bounds (µs), as a Prometheus histogram
    /// wants them: for each bound, observations in buckets whose upper bound is at
    /// most it.
    pub fn cumulative_at(&self, bounds_us: &[u64]) -> Vec<u64> {
        bounds_us
            .iter()
            .map(|&b| {
                self.buckets
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| bucket_upper_us(*i) <= b)
                    .map(|(_, n)| n)
                    .sum()
            })
            .collect()
    }
}

/// Counters one node keeps for one store, since the node started.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Append requests acknowledged.
    pub appends: AtomicU64,
    /// Events in acknowledged appends.
    pub appended_events: AtomicU64,
    /// Bytes (data + metadata) in acknowledged appends.
    pub appended_bytes: AtomicU64,
    /// Read requests answered (streams, the global log, by type or tag, snapshots).
    pub reads: AtomicU64,
    /// Events returned by reads.
    pub read_events: AtomicU64,
    /// Requests that failed, by [`StoreError::kind`] (in [`StoreError::KINDS`] order).
    pub errors: [AtomicU64; StoreError::KINDS.len()],
    /// Leaders this node has seen elected or lost.
    pub leader_changes: AtomicU64,
    /// Subscription deliveries (polls that returned events).
    pub deliveries: AtomicU64,
    /// Events delivered to subscribers.
    pub delivered_events: AtomicU64,
    /// Append latency, from the request reaching the node to its acknowledgement.
    pub append_latency: Histogram,
    /// Read latency.
    pub read_latency: Histogram,
    /// Bytes of state file given back to the file system by compactions after
    /// scavenges.
    pub scavenge_reclaimed_bytes: AtomicU64,
}

impl StoreMetrics {
    /// Counts a failed request.
    pub fn error(&self, e: &StoreError) {
        self.errors[e.kind_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors by kind, only the kinds that occurred.
    pub fn errors_by_kind(&self) -> BTreeMap<String, u64> {
        StoreError::KINDS
            .iter()
            .zip(&self.errors)
            .map(|(k, n)| (k.to_string(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One store on one node, as `stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// The store.
    pub store: String,
    /// The node.
    pub node_id: u64,
    /// Its role in the store's group; `None` when unknown.
    pub role: Option<Role>,
    /// Events the store holds (its global log, soft-deleted included), on this node.
    pub events: u64,
    /// Append requests acknowledged since the node started.
    pub appends: u64,
    /// Events appended since the node started.
    pub appended_events: u64,
    /// Bytes appended since the node started.
    pub appended_bytes: u64,
    /// Read requests answered since the node started.
    pub reads: u64,
    /// Events read since the node started.
    pub read_events: u64,
    /// Failed requests by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Leader elections (and losses) this node has seen.
    pub leader_changes: u64,
    /// Subscriptions of the store.
    pub subscriptions: u64,
    /// Subscription deliveries made by this node.
    pub deliveries: u64,
    /// Events delivered by this node.
    pub delivered_events: u64,
    /// The largest lag (head minus checkpoint) of any subscription, in positions.
    pub max_subscription_lag: u64,
    /// Append latency.
    pub append_latency: HistogramSnapshot,
    /// Read latency.
    pub read_latency: HistogramSnapshot,
    /// The store's scavenge, the last or the one running, as this node has it;
    /// `None` when it could not say.
    pub scavenge: Option<ScavengeStatus>,
}

/// Bytes as a person reads them: `812 B`, `3.4 KiB`, `12.0 MiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl StoreStats {
    /// Errors in all.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(905_216), "884.0 KiB");
        assert_eq!(human_bytes(12 << 20), "12.0 MiB");
        assert_eq!(human_bytes(3 << 39), "1.5 TiB");
    }

    #[test]
    fn buckets_are_increasing_and_cover_their_values() {
        for i in 1..BUCKETS {
            assert!(bucket_upper_us(i) >= bucket_upper_us(i - 1), "bucket {i}");
        }
        for us in [
            0u64, 1, 2, 3, 5, 17, 100, 999, 1000, 1001, 65_536, 10_000_000,
        ] {
            let b = bucket_of(us);
            assert!(bucket_upper_us(b) >= us, "{us} in bucket {b}");
            if b > 0 {
                assert!(bucket_upper_us(b - 1) < us, "{us} belongs below {b}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile_us(0.5).unwrap();
        let p99 = s.quantile_us(0.99).unwrap();
        assert!((500..=600).contains(&p50), "p50 {p50}");
        assert!((990..=1200).contains(&p99), "p99 {p99}");
        assert_eq!(s.mean_us(), Some(500));
        assert_eq!(HistogramSnapshot::default().quantile_us(0.5), None);
    }

    #[test]
    fn merge_since_and_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        let before = h.snapshot();
        h.record(Duration::from_micros(3000));
        h.record(Duration::from_secs(1000));
        let after = h.snapshot();
        let delta = after.since(&before);
        assert_eq!(delta.count(), 2);
        let mut merged = before.clone();
        merged.merge(&delta);
        assert_eq!(merged, after);
        assert_eq!(after.cumulative_at(&[16, 4096, 1 << 26]), vec![1, 2, 2]);
    }
}
