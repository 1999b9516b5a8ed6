//! The history of a fault test: every client operation with when it was invoked and
//! when it completed, what it asked and what came back, and what a subscription
//! consumer received and acknowledged. [`super::checker`] judges it.
//!
//! Times are ticks of one process-wide counter, taken when a call is about to start
//! and when its answer is in: operation A precedes B in real time exactly when A's
//! completion tick is below B's invocation tick. Wall-clock offsets are kept too,
//! for the reader of a report.
//!
//! An outcome is `Ok` with the value, `Failed` with an error that says nothing was
//! done (`WrongExpectedVersion`, `InvalidInput`, ...), or `Unknown` (a timeout, an
//! unreachable gater, a retryable refusal after which the gater may have tried
//! another worker): the operation may or may not have taken effect.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reckon_gater::types::{AppendResult, EventRecord, ExpectedVersion, StoreError};
use reckon_gater::ClientError;
use uuid::Uuid;

/// A point on the history's clock.
pub type Tick = u64;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// An append of events with these ids, in this order.
    Append {
        /// The stream.
        stream: String,
        /// The expectation sent.
        expected: ExpectedVersion,
        /// The events' ids.
        ids: Vec<Uuid>,
    },
    /// A linearizable read of a stream's last event.
    ReadHead {
        /// The stream.
        stream: String,
    },
}

impl Call {
    /// The stream the call is about.
    pub fn stream(&self) -> &str {
        match self {
            Call::Append { stream, .. } | Call::ReadHead { stream } => stream,
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The append was acknowledged with this result.
    Appended(AppendResult),
    /// The read saw this last event (version, id); `None`: no such stream.
    Head(Option<(u64, Uuid)>),
    /// A definite refusal: nothing was done.
    Failed {
        /// The error's kind (`WrongExpectedVersion`, ...).
        kind: String,
        /// Its message.
        message: String,
    },
    /// No definite answer: the operation may or may not have taken effect.
    Unknown {
        /// Why (a timeout, a transport fault, a retryable refusal).
        message: String,
    },
}

impl Outcome {
    /// Whether the answer is definite (the caller knows what happened).
    pub fn is_definite(&self) -> bool {
        !matches!(self, Outcome::Unknown { .. })
    }
}

/// Whether an error a store gave proves that nothing was done. Retryable refusals
/// are not proof (the gater may have tried another worker first, and an earlier try
/// may have landed), nor is an internal fault.
pub fn store_error_is_definite(e: &StoreError) -> bool {
    !e.is_retryable() && !matches!(e, StoreError::Internal { .. })
}

/// The outcome a failed call stands for.
pub fn outcome_of(e: &ClientError) -> Outcome {
    match e.store_error() {
        Some(s) if store_error_is_definite(s) => Outcome::Failed {
            kind: s.kind().to_string(),
            message: s.to_string(),
        },
        _ => Outcome::Unknown {
            message: e.to_string(),
        },
    }
}

/// One operation as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Who made it (`writer-2`, `contender-0`, ...).
    pub process: String,
    /// What was asked.
    pub call: Call,
    /// When it was invoked.
    pub invoke: Tick,
    /// When its answer came.
    pub complete: Tick,
    /// When it was invoked, since the history began.
    pub invoked_at: Duration,
    /// When its answer came, since the history began.
    pub completed_at: Duration,
    /// What came back.
    pub outcome: Outcome,
}

fn ids_text(ids: &[Uuid]) -> String {
    const SHOWN: usize = 3;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if ids.len() > SHOWN {
        s.push_str(&format!(",+{} more", ids.len() - SHOWN));
    }
    s
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} t{}..t{} {:.3}s..{:.3}s] ",
            self.process,
            self.invoke,
            self.complete,
            self.invoked_at.as_secs_f64(),
            self.completed_at.as_secs_f64()
        )?;
        match &self.call {
            Call::Append {
                stream,
                expected,
                ids,
            } => write!(
                f,
                "append {stream} expected {expected:?} ids [{}]",
                ids_text(ids)
            )?,
            Call::ReadHead { stream } => write!(f, "read head of {stream}")?,
        }
        match &self.outcome {
            Outcome::Appended(r) => write!(
                f,
                " -> ok version {} positions {}..={}",
                r.version, r.first_position, r.last_position
            ),
            Outcome::Head(None) => write!(f, " -> no stream"),
            Outcome::Head(Some((v, id))) => write!(f, " -> version {v} id {id}"),
            Outcome::Failed { message, .. } => write!(f, " -> failed: {message}"),
            Outcome::Unknown { message } => write!(f, " -> unknown: {message}"),
        }
    }
}

/// A call that has been invoked and not yet recorded.
#[derive(Debug, Clone, Copy)]
pub struct Invocation {
    tick: Tick,
    at: Duration,
}

/// The recorder: shared by every task of a test (behind an `Arc`).
#[derive(Debug)]
pub struct History {
    started: Instant,
    clock: AtomicU64,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History {
            started: Instant::now(),
            clock: AtomicU64::new(0),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// The next tick.
    pub fn tick(&self) -> Tick {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Marks a call as invoked now; pass the answer to [`record`](Self::record).
    pub fn invoke(&self) -> Invocation {
        Invocation {
            tick: self.tick(),
            at: self.started.elapsed(),
        }
    }

    /// Records a call invoked at `invocation` whose answer is in now.
    pub fn record(&self, invocation: Invocation, process: &str, call: Call, outcome: Outcome) {
        let op = Op {
            process: process.to_string(),
            call,
            invoke: invocation.tick,
            complete: self.tick(),
            invoked_at: invocation.at,
            completed_at: self.started.elapsed(),
            outcome,
        };
        self.ops.lock().expect("history").push(op);
    }

    /// Every operation recorded so far, in order of completion.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history").clone()
    }

    /// How long since the history began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Which events a subscription selects, as the checker needs to know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every event of the store (`$all`), from the beginning.
    All,
    /// The events of one stream, from the beginning.
    Stream(String),
}

impl Selection {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &EventRecord) -> bool {
        match self {
            Selection::All => true,
            Selection::Stream(s) => &e.stream_id == s,
        }
    }
}

/// How an acknowledgement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The checkpoint moved (or already stood there).
    Ok,
    /// A definite refusal: the checkpoint did not move.
    Failed,
    /// No answer: the checkpoint may or may not have moved.
    Unknown,
}

/// A step of a subscription consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubStep {
    /// The consumer (re-)attached without a position: delivery starts after the
    /// subscription's checkpoint. The first step of every log is one.
    Attach,
    /// An event was received.
    Delivered {
        /// Its position.
        position: u64,
        /// Its stream.
        stream: String,
        /// Its version.
        version: u64,
        /// Its id.
        event_id: Uuid,
    },
    /// An acknowledgement up to `position` was sent.
    Ack {
        /// The position acknowledged.
        position: u64,
        /// How it ended.
        outcome: AckOutcome,
    },
}

/// Everything one consumer of one subscription did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionLog {
    /// The subscription's name (for reports).
    pub name: String,
    /// What it selects.
    pub selection: Selection,
    /// The steps.
    pub steps: Vec<SubStep>,
}

impl SubscriptionLog {
    /// A log that starts with an attachment.
    pub fn new(name: &str, selection: Selection) -> SubscriptionLog {
        SubscriptionLog {
            name: name.to_string(),
            selection,
            steps: vec![SubStep::Attach],
        }
    }

    /// Records a re-attachment.
    pub fn attach(&mut self) {
        self.steps.push(SubStep::Attach);
    }

    /// Records a received event.
    pub fn delivered(&mut self, e: &EventRecord) {
        self.steps.push(SubStep::Delivered {
            position: e.position,
            stream: e.stream_id.clone(),
            version: e.version,
            event_id: e.event_id,
        });
    }

    /// Records an acknowledgement.
    pub fn ack(&mut self, position: u64, outcome: AckOutcome) {
        self.steps.push(SubStep::Ack { position, outcome });
    }

    /// The highest position received.
    pub fn max_delivered(&self) -> Option<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                SubStep::Delivered { position, .. } => Some(*position),
                _ => None,
            })
            .max()
    }

    /// How many events were received (repeats included).
    pub fn deliveries(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, SubStep::Delivered { .. }))
            .count()
    }
}
