//! The checker: judges a recorded [history](super::history) against the final state
//! of the store and of every replica, and lists every anomaly with what is needed to
//! debug it. Pure code: no I/O, unit-tested on small hand-made histories, one per
//! anomaly, so that each check is shown to fail when it should.
//!
//! What it checks:
//! - the global log: positions gapless from 0, no event id stored twice, each
//!   stream's versions dense from 0;
//! - every acknowledged append is in the log where it was acknowledged (stream,
//!   version, position, id), nothing of it lost;
//! - two appends with the same exact expected version (or `NoStream`) on one stream
//!   never both succeed (a retry of the same ids is one append);
//! - a linearizable read sees at least every append acknowledged before it began,
//!   and what it saw is in the final log;
//! - a subscription consumer receives its selection in position order with no gap,
//!   and repeats only what follows its last acknowledgement;
//! - every replica holds the same log as the reference.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};

use reckon_gater::types::{EventRecord, ExpectedVersion};
use uuid::Uuid;

use super::history::{AckOutcome, Call, Op, Outcome, SubStep, SubscriptionLog};

/// Where an event stands.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{} @{}", self.stream, self.version, self.position)
    }
}

fn place(e: &EventRecord) -> Place {
    Place {
        stream: e.stream_id.clone(),
        version: e.version,
        position: e.position,
    }
}

/// A replica's log as read from its node, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The node (for reports).
    pub node: String,
    /// Its whole local log, by position.
    pub log: Result<Vec<EventRecord>, String>,
}

/// Something that must never happen, with what is needed to debug it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Anomaly {
    /// The global log skips or repeats positions.
    PositionGap {
        /// The position expected at this point of the log.
        expected: u64,
        /// The position found.
        found: u64,
    },
    /// One event id is stored more than once.
    DuplicateEventId {
        /// The id.
        event_id: Uuid,
        /// Every place it stands.
        places: Vec<Place>,
    },
    /// A stream's versions skip or repeat.
    VersionGap {
        /// The stream.
        stream: String,
        /// The position of the event with the unexpected version.
        position: u64,
        /// The version expected.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// An acknowledged append's events are not in the log.
    LostAppend {
        /// The append.
        op: String,
        /// The ids not found anywhere.
        missing: Vec<Uuid>,
    },
    /// An acknowledged append's event is in the log, but not where it was
    /// acknowledged.
    MisplacedAppend {
        /// The append.
        op: String,
        /// The event.
        event_id: Uuid,
        /// Where the acknowledgement put it.
        acknowledged: Place,
        /// Where it is.
        stored: Vec<Place>,
    },
    /// An acknowledgement that cannot describe the events sent (wrong count).
    InconsistentAck {
        /// The append.
        op: String,
    },
    /// Two different appends with the same exact expectation on one stream both
    /// succeeded.
    DoubleSuccess {
        /// The stream.
        stream: String,
        /// The expectation both were sent with.
        expected: ExpectedVersion,
        /// One acknowledged append per distinct set of ids.
        ops: Vec<String>,
    },
    /// A linearizable read missed an append acknowledged before the read began.
    StaleRead {
        /// The read.
        read: String,
        /// The version it saw (`None`: no stream).
        saw: Option<u64>,
        /// The acknowledged append it should have seen.
        append: String,
        /// That append's version.
        version: u64,
    },
    /// A read saw an event that the final log does not hold at that version.
    ReadNotInLog {
        /// The read.
        read: String,
        /// What the final log holds at that stream and version.
        stored: Option<Uuid>,
    },
    /// A subscription delivered an event that the final log does not hold at that
    /// position.
    SubscriptionWrongEvent {
        /// The subscription.
        name: String,
        /// The position delivered.
        position: u64,
        /// The id delivered.
        delivered: Uuid,
        /// What the log holds there.
        stored: Option<Uuid>,
    },
    /// A subscription skipped events of its selection.
    SubscriptionGap {
        /// The subscription.
        name: String,
        /// The last position delivered in this attachment, or the checkpoint it
        /// (re-)attached after.
        after: Option<u64>,
        /// The position that should have come next.
        expected: Option<u64>,
        /// The position that came.
        delivered: u64,
    },
    /// Within one attachment, a subscription went back or repeated an event.
    SubscriptionOutOfOrder {
        /// The subscription.
        name: String,
        /// The last position delivered.
        after: u64,
        /// The position that came next.
        delivered: u64,
    },
    /// After re-attaching, a subscription repeated events at or before its last
    /// acknowledgement.
    SubscriptionEarlyRedelivery {
        /// The subscription.
        name: String,
        /// The last acknowledged position.
        acknowledged: u64,
        /// The first position delivered after re-attaching.
        delivered: u64,
    },
    /// The consumer never received the end of its selection.
    SubscriptionIncomplete {
        /// The subscription.
        name: String,
        /// The highest position it received.
        delivered_up_to: Option<u64>,
        /// The last position of its selection.
        last: u64,
    },
    /// A replica's log differs from the reference.
    ReplicaDiverges {
        /// The node.
        node: String,
        /// Its number of events.
        len: usize,
        /// The reference's number of events.
        reference_len: usize,
        /// The first position where they differ.
        first_difference: u64,
        /// What differs there.
        detail: String,
    },
    /// A replica's log could not be read.
    ReplicaUnreadable {
        /// The node.
        node: String,
        /// Why.
        error: String,
    },
}

impl Anomaly {
    /// The anomaly's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::PositionGap { .. } => "position-gap",
            Anomaly::DuplicateEventId { .. } => "duplicate-event-id",
            Anomaly::VersionGap { .. } => "version-gap",
            Anomaly::LostAppend { .. } => "lost-append",
            Anomaly::MisplacedAppend { .. } => "misplaced-append",
            Anomaly::InconsistentAck { .. } => "inconsistent-ack",
            Anomaly::DoubleSuccess { .. } => "double-success",
            Anomaly::StaleRead { .. } => "stale-read",
            Anomaly::ReadNotInLog { .. } => "read-not-in-log",
            Anomaly::SubscriptionWrongEvent { .. } => "subscription-wrong-event",
            Anomaly::SubscriptionGap { .. } => "subscription-gap",
            Anomaly::SubscriptionOutOfOrder { .. } => "subscription-out-of-order",
            Anomaly::SubscriptionEarlyRedelivery { .. } => "subscription-early-redelivery",
            Anomaly::SubscriptionIncomplete { .. } => "subscription-incomplete",
            Anomaly::ReplicaDiverges { .. } => "replica-diverges",
            Anomaly::ReplicaUnreadable { .. } => "replica-unreadable",
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind())?;
        match self {
            Anomaly::PositionGap { expected, found } => {
                write!(f, "the global log has position {found} where {expected} belongs")
            }
            Anomaly::DuplicateEventId { event_id, places } => write!(
                f,
                "event {event_id} is stored {} times: {}",
                places.len(),
                places
                    .iter()
                    .map(Place::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Anomaly::VersionGap {
                stream,
                position,
                expected,
                found,
            } => write!(
                f,
                "stream {stream} has version {found} at position {position} where {expected} belongs"
            ),
            Anomaly::LostAppend { op, missing } => write!(
                f,
                "{op}: {} acknowledged event(s) are not in the log: {}",
                missing.len(),
                ids_list(missing)
            ),
            Anomaly::MisplacedAppend {
                op,
                event_id,
                acknowledged,
                stored,
            } => write!(
                f,
                "{op}: event {event_id} was acknowledged at {acknowledged} but stands at {}",
                stored
                    .iter()
                    .map(Place::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Anomaly::InconsistentAck { op } => {
                write!(f, "{op}: the result does not fit the events sent")
            }
            Anomaly::DoubleSuccess {
                stream,
                expected,
                ops,
            } => write!(
                f,
                "{} different appends to {stream} expecting {expected:?} all succeeded: {}",
                ops.len(),
                ops.join(" | ")
            ),
            Anomaly::StaleRead {
                read,
                saw,
                append,
                version,
            } => write!(
                f,
                "{read} saw version {} but {append} had acknowledged version {version} before it began",
                opt(*saw)
            ),
            Anomaly::ReadNotInLog { read, stored } => write!(
                f,
                "{read} but the final log holds {} there",
                stored.map_or_else(|| "nothing".to_string(), |s| s.to_string())
            ),
            Anomaly::SubscriptionWrongEvent {
                name,
                position,
                delivered,
                stored,
            } => write!(
                f,
                "subscription {name} delivered {delivered} at position {position}, where the log holds {}",
                stored.map_or_else(|| "nothing".to_string(), |s| s.to_string())
            ),
            Anomaly::SubscriptionGap {
                name,
                after,
                expected,
                delivered,
            } => write!(
                f,
                "subscription {name} delivered position {delivered} after {}; position {} should have come first",
                opt(*after),
                opt(*expected)
            ),
            Anomaly::SubscriptionOutOfOrder {
                name,
                after,
                delivered,
            } => write!(
                f,
                "subscription {name} delivered position {delivered} after {after} in the same attachment"
            ),
            Anomaly::SubscriptionEarlyRedelivery {
                name,
                acknowledged,
                delivered,
            } => write!(
                f,
                "subscription {name} re-attached and delivered position {delivered}, at or before its acknowledged {acknowledged}"
            ),
            Anomaly::SubscriptionIncomplete {
                name,
                delivered_up_to,
                last,
            } => write!(
                f,
                "subscription {name} received up to position {} of its selection's last {last}",
                opt(*delivered_up_to)
            ),
            Anomaly::ReplicaDiverges {
                node,
                len,
                reference_len,
                first_difference,
                detail,
            } => write!(
                f,
                "node {node} holds {len} events, the reference {reference_len}; first difference at position {first_difference}: {detail}"
            ),
            Anomaly::ReplicaUnreadable { node, error } => {
                write!(f, "node {node}'s log could not be read: {error}")
            }
        }
    }
}

fn ids_list(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// What the checker looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Appends acknowledged.
    pub appends_ok: usize,
    /// Appends refused definitely.
    pub appends_failed: usize,
    /// Appends with no definite answer.
    pub appends_unknown: usize,
    /// Reads answered.
    pub reads_ok: usize,
    /// Reads that failed or got no answer.
    pub reads_failed: usize,
    /// Events in the final log.
    pub events: usize,
    /// Events delivered to subscription consumers (repeats included).
    pub deliveries: usize,
    /// Replicas compared.
    pub replicas: usize,
}

impl Stats {
    /// Every operation checked.
    pub fn operations(&self) -> usize {
        self.appends_ok
            + self.appends_failed
            + self.appends_unknown
            + self.reads_ok
            + self.reads_failed
    }
}

/// The checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every anomaly found.
    pub anomalies: Vec<Anomaly>,
    /// What was looked at.
    pub stats: Stats,
}

impl Report {
    /// Anomalies by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for a in &self.anomalies {
            *counts.entry(a.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The report as text: the counts, then up to `per_kind` anomalies of each kind.
    pub fn render(&self, per_kind: usize) -> String {
        let s = &self.stats;
        let mut out = format!(
            "checked {} operations ({} appends ok, {} refused, {} unknown; {} reads ok, {} failed), \
             {} events in the log, {} deliveries, {} replicas\n",
            s.operations(),
            s.appends_ok,
            s.appends_failed,
            s.appends_unknown,
            s.reads_ok,
            s.reads_failed,
            s.events,
            s.deliveries,
            s.replicas
        );
        let counts = self.counts();
        if counts.is_empty() {
            out.push_str("anomalies: none\n");
            return out;
        }
        out.push_str(&format!("anomalies: {}\n", self.anomalies.len()));
        for (kind, n) in &counts {
            out.push_str(&format!("  {kind}: {n}\n"));
            for a in self
                .anomalies
                .iter()
                .filter(|a| a.kind() == *kind)
                .take(per_kind)
            {
                out.push_str(&format!("    {a}\n"));
            }
            if *n > per_kind {
                out.push_str(&format!("    ... {} more\n", n - per_kind));
            }
        }
        out
    }
}

/// A digest of a log: equal logs have equal digests (within one process).
pub fn digest(log: &[EventRecord]) -> (usize, u64) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for e in log {
        (
            e.position,
            &e.stream_id,
            e.version,
            e.event_id,
            &e.event_type,
            &e.data,
            &e.metadata,
            &e.tags,
        )
            .hash(&mut h);
    }
    (log.len(), h.finish())
}

/// The first difference between two logs: the position and what differs.
pub fn first_difference(log: &[EventRecord], reference: &[EventRecord]) -> Option<(u64, String)> {
    for (i, (a, b)) in log.iter().zip(reference).enumerate() {
        if a != b {
            return Some((
                i as u64,
                format!(
                    "{} {} (type {}) vs {} {} (type {})",
                    place(a),
                    a.event_id,
                    a.event_type,
                    place(b),
                    b.event_id,
                    b.event_type
                ),
            ));
        }
    }
    match log.len().cmp(&reference.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some((log.len() as u64, "the replica ends here".into())),
        std::cmp::Ordering::Greater => {
            Some((reference.len() as u64, "the reference ends here".into()))
        }
    }
}

/// Checks `ops` and `subscriptions` against `final_log` (the store's whole global
/// log, read after healing) and every replica against `final_log`.
pub fn check(
    ops: &[Op],
    subscriptions: &[SubscriptionLog],
    final_log: &[EventRecord],
    replicas: &[Replica],
) -> Report {
    let mut report = Report::default();
    report.stats.events = final_log.len();
    let index = Index::new(final_log);
    check_log(final_log, &mut report.anomalies);
    check_appends(ops, &index, &mut report);
    check_exact_expectations(ops, &mut report.anomalies);
    check_reads(ops, &index, &mut report);
    for sub in subscriptions {
        report.stats.deliveries += sub.deliveries();
        check_subscription(sub, final_log, &index, &mut report.anomalies);
    }
    for r in replicas {
        report.stats.replicas += 1;
        match &r.log {
            Err(e) => report.anomalies.push(Anomaly::ReplicaUnreadable {
                node: r.node.clone(),
                error: e.clone(),
            }),
            Ok(log) => {
                if let Some((at, detail)) = first_difference(log, final_log) {
                    report.anomalies.push(Anomaly::ReplicaDiverges {
                        node: r.node.clone(),
                        len: log.len(),
                        reference_len: final_log.len(),
                        first_difference: at,
                        detail,
                    });
                }
            }
        }
    }
    report
}

/// Lookups into the final log.
struct Index<'a> {
    by_position: HashMap<u64, &'a EventRecord>,
    by_id: HashMap<Uuid, Vec<&'a EventRecord>>,
    by_version: HashMap<(&'a str, u64), &'a EventRecord>,
}

impl<'a> Index<'a> {
    fn new(log: &'a [EventRecord]) -> Self {
        let mut ix = Index {
            by_position: HashMap::new(),
            by_id: HashMap::new(),
            by_version: HashMap::new(),
        };
        for e in log {
            ix.by_position.entry(e.position).or_insert(e);
            ix.by_id.entry(e.event_id).or_default().push(e);
            ix.by_version
                .entry((e.stream_id.as_str(), e.version))
                .or_insert(e);
        }
        ix
    }
}

fn check_log(log: &[EventRecord], out: &mut Vec<Anomaly>) {
    let mut expected = 0u64;
    for e in log {
        if e.position != expected {
            out.push(Anomaly::PositionGap {
                expected,
                found: e.position,
            });
        }
        expected = e.position + 1;
    }
    let mut by_id: BTreeMap<Uuid, Vec<Place>> = BTreeMap::new();
    for e in log {
        by_id.entry(e.event_id).or_default().push(place(e));
    }
    for (event_id, places) in by_id {
        if places.len() > 1 {
            out.push(Anomaly::DuplicateEventId { event_id, places });
        }
    }
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in log {
        let want = next.entry(e.stream_id.as_str()).or_insert(0);
        if e.version != *want {
            out.push(Anomaly::VersionGap {
                stream: e.stream_id.clone(),
                position: e.position,
                expected: *want,
                found: e.version,
            });
        }
        *want = e.version + 1;
    }
}

fn check_appends(ops: &[Op], index: &Index<'_>, report: &mut Report) {
    for op in ops {
        let Call::Append { stream, ids, .. } = &op.call else {
            continue;
        };
        let r = match &op.outcome {
            Outcome::Appended(r) => *r,
            Outcome::Failed { .. } => {
                report.stats.appends_failed += 1;
                continue;
            }
            _ => {
                report.stats.appends_unknown += 1;
                continue;
            }
        };
        report.stats.appends_ok += 1;
        let n = ids.len() as u64;
        let fits = n > 0
            && r.last_position.checked_sub(r.first_position) == Some(n - 1)
            && r.version + 1 >= n;
        if !fits {
            report
                .anomalies
                .push(Anomaly::InconsistentAck { op: op.to_string() });
            continue;
        }
        let mut missing = Vec::new();
        for (k, id) in ids.iter().enumerate() {
            let want = Place {
                stream: stream.clone(),
                version: r.version + 1 - n + k as u64,
                position: r.first_position + k as u64,
            };
            match index.by_id.get(id) {
                None => missing.push(*id),
                Some(stored) => {
                    if !stored.iter().any(|e| place(e) == want) {
                        report.anomalies.push(Anomaly::MisplacedAppend {
                            op: op.to_string(),
                            event_id: *id,
                            acknowledged: want,
                            stored: stored.iter().map(|e| place(e)).collect(),
                        });
                    }
                }
            }
        }
        if !missing.is_empty() {
            report.anomalies.push(Anomaly::LostAppend {
                op: op.to_string(),
                missing,
            });
        }
    }
}

/// The appends that won one (stream, expectation): one op per distinct id list.
type Winners<'a> = Vec<(&'a [Uuid], &'a Op)>;

fn check_exact_expectations(ops: &[Op], out: &mut Vec<Anomaly>) {
    let mut wins: BTreeMap<(&str, i64), Winners<'_>> = BTreeMap::new();
    for op in ops {
        let Call::Append {
            stream,
            expected,
            ids,
        } = &op.call
        else {
            continue;
        };
        if !matches!(op.outcome, Outcome::Appended(_)) {
            continue;
        }
        if !matches!(
            expected,
            ExpectedVersion::Exact(_) | ExpectedVersion::NoStream
        ) {
            continue;
        }
        let entry = wins
            .entry((stream.as_str(), expected.as_i64()))
            .or_default();
        if !entry.iter().any(|(known, _)| *known == ids.as_slice()) {
            entry.push((ids.as_slice(), op));
        }
    }
    for ((stream, expected), winners) in wins {
        if winners.len() > 1 {
            out.push(Anomaly::DoubleSuccess {
                stream: stream.to_string(),
                expected: ExpectedVersion::from_i64(expected).unwrap_or_default(),
                ops: winners.iter().map(|(_, op)| op.to_string()).collect(),
            });
        }
    }
}

fn check_reads(ops: &[Op], index: &Index<'_>, report: &mut Report) {
    // Per stream: acknowledged appends by completion tick, with the highest
    // version acknowledged so far (and by which op).
    let mut acked: HashMap<&str, Vec<(u64, u64, &Op)>> = HashMap::new();
    for op in ops {
        if let (Call::Append { stream, .. }, Outcome::Appended(r)) = (&op.call, &op.outcome) {
            acked
                .entry(stream.as_str())
                .or_default()
                .push((op.complete, r.version, op));
        }
    }
    let mut prefix_max: HashMap<&str, Vec<(u64, u64, &Op)>> = HashMap::new();
    for (stream, mut list) in acked {
        list.sort_by_key(|(complete, _, _)| *complete);
        let mut best: Option<(u64, &Op)> = None;
        let mut out = Vec::with_capacity(list.len());
        for (complete, version, op) in list {
            if best.is_none_or(|(v, _)| version > v) {
                best = Some((version, op));
            }
            let (v, by) = best.expect("just set");
            out.push((complete, v, by));
        }
        prefix_max.insert(stream, out);
    }
    for op in ops {
        let Call::ReadHead { stream } = &op.call else {
            continue;
        };
        let Outcome::Head(head) = &op.outcome else {
            report.stats.reads_failed += 1;
            continue;
        };
        report.stats.reads_ok += 1;
        if let Some(list) = prefix_max.get(stream.as_str()) {
            let before = list.partition_point(|(complete, _, _)| *complete < op.invoke);
            if before > 0 {
                let (_, must_see, by) = list[before - 1];
                let saw = head.map(|(v, _)| v);
                if saw.is_none_or(|v| v < must_see) {
                    report.anomalies.push(Anomaly::StaleRead {
                        read: op.to_string(),
                        saw,
                        append: by.to_string(),
                        version: must_see,
                    });
                }
            }
        }
        if let Some((version, id)) = head {
            let stored = index
                .by_version
                .get(&(stream.as_str(), *version))
                .map(|e| e.event_id);
            if stored != Some(*id) {
                report.anomalies.push(Anomaly::ReadNotInLog {
                    read: op.to_string(),
                    stored,
                });
            }
        }
    }
}

fn check_subscription(
    sub: &SubscriptionLog,
    log: &[EventRecord],
    index: &Index<'_>,
    out: &mut Vec<Anomaly>,
) {
    let selected: Vec<u64> = log
        .iter()
        .filter(|e| sub.selection.matches(e))
        .map(|e| e.position)
        .collect();
    // The first selected position after `after` (from the start when `None`).
    let next_after = |after: Option<u64>| -> Option<u64> {
        let i = match after {
            None => 0,
            Some(a) => selected.partition_point(|p| *p <= a),
        };
        selected.get(i).copied()
    };
    let name = &sub.name;
    let mut fresh = false;
    let mut prev: Option<u64> = None;
    let mut acked: Option<u64> = None;
    let mut maybe_acked: Vec<u64> = Vec::new();
    for step in &sub.steps {
        match step {
            SubStep::Attach => {
                fresh = true;
                prev = None;
            }
            SubStep::Ack { position, outcome } => match outcome {
                AckOutcome::Ok => {
                    acked = acked.max(Some(*position));
                    maybe_acked.retain(|p| Some(*p) > acked);
                }
                AckOutcome::Unknown => maybe_acked.push(*position),
                AckOutcome::Failed => {}
            },
            SubStep::Delivered {
                position, event_id, ..
            } => {
                let stored = index.by_position.get(position).map(|e| e.event_id);
                if stored != Some(*event_id) {
                    out.push(Anomaly::SubscriptionWrongEvent {
                        name: name.clone(),
                        position: *position,
                        delivered: *event_id,
                        stored,
                    });
                }
                if fresh {
                    // The checkpoint is the last acknowledged position, or a later
                    // one whose acknowledgement got no answer.
                    let allowed: Vec<Option<u64>> = std::iter::once(acked)
                        .chain(maybe_acked.iter().map(|p| Some(*p)))
                        .map(next_after)
                        .collect();
                    if !allowed.contains(&Some(*position)) {
                        match acked {
                            Some(a) if *position <= a => {
                                out.push(Anomaly::SubscriptionEarlyRedelivery {
                                    name: name.clone(),
                                    acknowledged: a,
                                    delivered: *position,
                                })
                            }
                            _ => out.push(Anomaly::SubscriptionGap {
                                name: name.clone(),
                                after: acked,
                                expected: next_after(acked),
                                delivered: *position,
                            }),
                        }
                    }
                    fresh = false;
                } else if let Some(p) = prev {
                    let expected = next_after(Some(p));
                    if *position <= p {
                        out.push(Anomaly::SubscriptionOutOfOrder {
                            name: name.clone(),
                            after: p,
                            delivered: *position,
                        });
                    } else if expected != Some(*position) {
                        out.push(Anomaly::SubscriptionGap {
                            name: name.clone(),
                            after: Some(p),
                            expected,
                            delivered: *position,
                        });
                    }
                }
                prev = Some(*position);
            }
        }
    }
    if let Some(last) = selected.last() {
        let up_to = sub.max_delivered();
        if up_to.is_none_or(|u| u < *last) {
            out.push(Anomaly::SubscriptionIncomplete {
                name: name.clone(),
                delivered_up_to: up_to,
                last: *last,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reckon_gater::types::{AppendResult, ContentType};

    use super::*;
    use crate::faults::history::{Selection, SubscriptionLog};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ev(position: u64, stream: &str, version: u64, n: u128) -> EventRecord {
        EventRecord {
            stream_id: stream.to_string(),
            version,
            position,
            event_id: id(n),
            event_type: "t".to_string(),
            data: b"{}".to_vec(),
            metadata: Vec::new(),
            content_type: ContentType::Json,
            tags: Vec::new(),
            timestamp_us: 0,
        }
    }

    fn op(process: &str, invoke: u64, complete: u64, call: Call, outcome: Outcome) -> Op {
        Op {
            process: process.to_string(),
            call,
            invoke,
            complete,
            invoked_at: Duration::from_millis(invoke),
            completed_at: Duration::from_millis(complete),
            outcome,
        }
    }

    fn append(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> Call {
        Call::Append {
            stream: stream.to_string(),
            expected,
            ids: ids.iter().map(|n| id(*n)).collect(),
        }
    }

    fn ok(version: u64, first: u64, last: u64) -> Outcome {
        Outcome::Appended(AppendResult {
            version,
            first_position: first,
            last_position: last,
        })
    }

    fn wrong_version() -> Outcome {
        Outcome::Failed {
            kind: "WrongExpectedVersion".into(),
            message: "WrongExpectedVersion: expected 0, current 1".into(),
        }
    }

    fn unknown() -> Outcome {
        Outcome::Unknown {
            message: "Timeout".into(),
        }
    }

    fn head(stream: &str) -> Call {
        Call::ReadHead {
            stream: stream.to_string(),
        }
    }

    /// A clean history: appends to two streams, a contended exact expectation (one
    /// winner, one refusal, one retry of the winner), reads, a subscription that
    /// re-attaches after an ack, and two equal replicas.
    fn clean() -> (Vec<Op>, Vec<SubscriptionLog>, Vec<EventRecord>) {
        let log = vec![
            ev(0, "a", 0, 1),
            ev(1, "a", 1, 2),
            ev(2, "b", 0, 3),
            ev(3, "a", 2, 4),
            ev(4, "b", 1, 5),
        ];
        let ops = vec![
            op(
                "w",
                0,
                1,
                append("a", ExpectedVersion::Any, &[1, 2]),
                ok(1, 0, 1),
            ),
            op(
                "c1",
                2,
                5,
                append("b", ExpectedVersion::NoStream, &[3]),
                unknown(),
            ),
            op(
                "c1",
                6,
                7,
                append("b", ExpectedVersion::NoStream, &[3]),
                ok(0, 2, 2),
            ),
            op(
                "c2",
                3,
                8,
                append("b", ExpectedVersion::NoStream, &[9]),
                wrong_version(),
            ),
            op("r", 9, 10, head("a"), Outcome::Head(Some((1, id(2))))),
            op(
                "w",
                11,
                12,
                append("a", ExpectedVersion::Any, &[4]),
                ok(2, 3, 3),
            ),
            // Concurrent with the append of 4: may see either.
            op("r", 11, 13, head("a"), Outcome::Head(Some((1, id(2))))),
            op(
                "c2",
                14,
                15,
                append("b", ExpectedVersion::Exact(0), &[5]),
                ok(1, 4, 4),
            ),
            op("r", 16, 17, head("b"), Outcome::Head(Some((1, id(5))))),
            op("r", 16, 17, head("nothing"), Outcome::Head(None)),
            op("r", 18, 19, head("a"), unknown()),
        ];
        let mut sub = SubscriptionLog::new("all", Selection::All);
        sub.delivered(&log[0]);
        sub.delivered(&log[1]);
        sub.ack(1, AckOutcome::Ok);
        sub.delivered(&log[2]);
        sub.attach();
        sub.delivered(&log[2]);
        sub.delivered(&log[3]);
        sub.ack(3, AckOutcome::Unknown);
        sub.attach();
        // The unknown ack took effect: delivery resumes after 3.
        sub.delivered(&log[4]);
        (ops, vec![sub], log)
    }

    fn replicas(log: &[EventRecord]) -> Vec<Replica> {
        (1..=3)
            .map(|n| Replica {
                node: n.to_string(),
                log: Ok(log.to_vec()),
            })
            .collect()
    }

    fn kinds(report: &Report) -> Vec<&'static str> {
        let mut k: Vec<_> = report.anomalies.iter().map(Anomaly::kind).collect();
        k.dedup();
        k
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let (ops, subs, log) = clean();
        let report = check(&ops, &subs, &log, &replicas(&log));
        assert!(report.is_clean(), "{}", report.render(10));
        assert_eq!(report.stats.appends_ok, 4);
        assert_eq!(report.stats.appends_failed, 1);
        assert_eq!(report.stats.appends_unknown, 1);
        assert_eq!(report.stats.reads_ok, 4);
        assert_eq!(report.stats.reads_failed, 1);
        assert_eq!(report.stats.deliveries, 6);
        assert_eq!(report.stats.replicas, 3);
    }

    #[test]
    fn a_gap_in_positions_is_found() {
        let (ops, _, mut log) = clean();
        log.remove(2);
        let report = check(&[], &[], &log, &[]);
        // Stream b now starts at version 1, too.
        assert_eq!(kinds(&report), vec!["position-gap", "version-gap"]);
        assert_eq!(
            report.anomalies[0],
            Anomaly::PositionGap {
                expected: 2,
                found: 3
            }
        );
        // The acknowledged append that stood there is lost too.
        let report = check(&ops, &[], &log, &[]);
        assert!(kinds(&report).contains(&"lost-append"), "{report:?}");
    }

    #[test]
    fn an_id_stored_twice_is_found() {
        let (_, _, mut log) = clean();
        log.push(ev(5, "a", 3, 2));
        let report = check(&[], &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["duplicate-event-id"]);
        let text = report.render(5);
        assert!(
            text.contains("a v1 @1") && text.contains("a v3 @5"),
            "{text}"
        );
    }

    #[test]
    fn a_gap_in_versions_is_found() {
        let (_, _, mut log) = clean();
        log.push(ev(5, "b", 3, 6));
        let report = check(&[], &[], &log, &[]);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::VersionGap {
                stream: "b".into(),
                position: 5,
                expected: 2,
                found: 3
            }]
        );
    }

    #[test]
    fn a_lost_acknowledged_append_is_found() {
        let (mut ops, _, log) = clean();
        ops.push(op(
            "w",
            20,
            21,
            append("a", ExpectedVersion::Any, &[77]),
            ok(3, 5, 5),
        ));
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["lost-append"], "{report:?}");
    }

    #[test]
    fn an_append_stored_elsewhere_than_acknowledged_is_found() {
        let (mut ops, _, log) = clean();
        // Acknowledged as a's version 3 at position 5; it stands at a v2 @3.
        ops.push(op(
            "w",
            20,
            21,
            append("a", ExpectedVersion::Any, &[4]),
            ok(3, 5, 5),
        ));
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["misplaced-append"], "{report:?}");
    }

    #[test]
    fn an_acknowledgement_of_the_wrong_size_is_found() {
        let ops = vec![op(
            "w",
            0,
            1,
            append("a", ExpectedVersion::Any, &[1, 2]),
            ok(1, 0, 0),
        )];
        let (_, _, log) = clean();
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["inconsistent-ack"]);
    }

    #[test]
    fn two_winners_of_one_exact_expectation_are_found() {
        let (mut ops, _, log) = clean();
        // Another append expecting b at 0 also succeeded (whatever the log says).
        ops.push(op(
            "c3",
            14,
            16,
            append("b", ExpectedVersion::Exact(0), &[5, 6]),
            ok(2, 5, 6),
        ));
        let report = check(&ops, &[], &log, &[]);
        let doubles: Vec<_> = report
            .anomalies
            .iter()
            .filter(|a| a.kind() == "double-success")
            .collect();
        assert_eq!(doubles.len(), 1, "{report:?}");
        // A retry of the same ids answered alike is one append, not two.
        let (ops, _, log) = clean();
        assert!(check(&ops, &[], &log, &[]).is_clean());
    }

    #[test]
    fn a_read_missing_an_earlier_acknowledged_append_is_found() {
        let (mut ops, _, log) = clean();
        // Invoked after the append of a v2 completed (tick 12), saw v1.
        ops.push(op("r", 13, 14, head("a"), Outcome::Head(Some((1, id(2))))));
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["stale-read"], "{report:?}");
        // Seeing no stream at all is stale too.
        let (mut ops, _, log) = clean();
        ops.push(op("r", 13, 14, head("a"), Outcome::Head(None)));
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["stale-read"], "{report:?}");
    }

    #[test]
    fn a_read_of_an_event_the_log_does_not_hold_is_found() {
        let (mut ops, _, log) = clean();
        ops.push(op("r", 20, 21, head("a"), Outcome::Head(Some((2, id(99))))));
        let report = check(&ops, &[], &log, &[]);
        assert_eq!(kinds(&report), vec!["read-not-in-log"], "{report:?}");
    }

    #[test]
    fn a_subscription_that_skips_an_event_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        for e in [&log[0], &log[1], &log[3], &log[4]] {
            sub.delivered(e);
        }
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::SubscriptionGap {
                name: "s".into(),
                after: Some(1),
                expected: Some(2),
                delivered: 3
            }]
        );
    }

    #[test]
    fn a_subscription_that_restarts_past_its_checkpoint_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        sub.delivered(&log[0]);
        sub.delivered(&log[1]);
        sub.ack(0, AckOutcome::Ok);
        sub.attach();
        // The checkpoint is 0: position 1 must come again, not 2.
        for e in &log[2..] {
            sub.delivered(e);
        }
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(kinds(&report), vec!["subscription-gap"], "{report:?}");
    }

    #[test]
    fn a_subscription_out_of_order_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        for e in [
            &log[0], &log[1], &log[2], &log[1], &log[2], &log[3], &log[4],
        ] {
            sub.delivered(e);
        }
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(
            kinds(&report),
            vec!["subscription-out-of-order"],
            "{report:?}"
        );
    }

    #[test]
    fn a_redelivery_before_the_last_ack_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        sub.delivered(&log[0]);
        sub.delivered(&log[1]);
        sub.delivered(&log[2]);
        sub.ack(2, AckOutcome::Ok);
        sub.attach();
        for e in &log[1..] {
            sub.delivered(e);
        }
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(
            report.anomalies,
            vec![Anomaly::SubscriptionEarlyRedelivery {
                name: "s".into(),
                acknowledged: 2,
                delivered: 1
            }]
        );
    }

    #[test]
    fn a_subscription_that_never_reaches_the_end_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        sub.delivered(&log[0]);
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(kinds(&report), vec!["subscription-incomplete"]);
    }

    #[test]
    fn a_subscription_of_one_stream_skips_the_others() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::Stream("b".into()));
        sub.delivered(&log[2]);
        sub.delivered(&log[4]);
        assert!(check(&[], &[sub], &log, &[]).is_clean());
        let mut sub = SubscriptionLog::new("s", Selection::Stream("b".into()));
        sub.delivered(&log[4]);
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(kinds(&report), vec!["subscription-gap"]);
    }

    #[test]
    fn a_subscription_delivering_the_wrong_event_is_found() {
        let (_, _, log) = clean();
        let mut sub = SubscriptionLog::new("s", Selection::All);
        for e in &log {
            let mut e = e.clone();
            if e.position == 3 {
                e.event_id = id(42);
            }
            sub.delivered(&e);
        }
        let report = check(&[], &[sub], &log, &[]);
        assert_eq!(kinds(&report), vec!["subscription-wrong-event"]);
    }

    #[test]
    fn a_diverging_or_unreadable_replica_is_found() {
        let (_, _, log) = clean();
        let mut reps = replicas(&log);
        reps[1].log.as_mut().expect("ok").truncate(3);
        reps[2].log = Err("connection refused".into());
        let report = check(&[], &[], &log, &reps);
        assert_eq!(
            kinds(&report),
            vec!["replica-diverges", "replica-unreadable"]
        );
        let mut reps = replicas(&log);
        reps[0].log.as_mut().expect("ok")[4].data = b"{\"x\":1}".to_vec();
        let report = check(&[], &[], &log, &reps);
        assert!(
            matches!(
                report.anomalies.as_slice(),
                [Anomaly::ReplicaDiverges {
                    first_difference: 4,
                    ..
                }]
            ),
            "{report:?}"
        );
    }

    #[test]
    fn digests_tell_logs_apart() {
        let (_, _, log) = clean();
        assert_eq!(digest(&log), digest(&log.clone()));
        let mut other = log.clone();
        other[0].event_id = id(1000);
        assert_ne!(digest(&log), digest(&other));
        assert_ne!(digest(&log), digest(&log[..4]));
    }
}
