//! Telemetry events: what the node and the gater report as they work, under the seed's
//! names, delivered to handlers an embedding program attaches.
//!
//! Each event has a dotted name (`reckon_db.stream.write.stop`) and a few named fields
//! (`store`, `stream`, `event_count`, `new_version`, `duration_us`, ...). Code that
//! does the work calls [`emit`]; every attached handler whose prefix matches the name
//! receives it, synchronously, on the emitting task. Handlers must be quick and must
//! not block: copy what you need and hand it off.
//!
//! The binaries attach [`attach_default_handler`], which turns every event into a
//! `tracing` event with target `reckon_db`: per-request events (`stream.write.*`,
//! `stream.read.*`, `subscription.delivered`, `subscription.checkpoint`) at debug,
//! failures at warn, the rest at info.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use reckon_gater::telemetry::{self, Event, Value};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! telemetry::attach("doc-example", &["reckon_db.stream.write"], move |e: &Event<'_>| {
//!     sink.lock().unwrap().push(e.to_owned_event());
//! })
//! .unwrap();
//! telemetry::emit(&Event::new(
//!     telemetry::STREAM_WRITE_STOP,
//!     &[("store", Value::from("default")), ("new_version", Value::U64(3))],
//! ));
//! assert!(telemetry::detach("doc-example"));
//! let seen = seen.lock().unwrap();
//! assert_eq!(seen[0].name, "reckon_db.stream.write.stop");
//! assert_eq!(seen[0].get("new_version"), Some(&Value::U64(3)));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

/// A write to a stream begins: `store`, `stream`, `event_count`.
pub const STREAM_WRITE_START: &str = "reckon_db.stream.write.start";
/// A write was acknowledged: `store`, `stream`, `event_count`, `new_version`,
/// `duration_us`.
pub const STREAM_WRITE_STOP: &str = "reckon_db.stream.write.stop";
/// A write failed: `store`, `stream`, `event_count`, `error` (the kind), `reason`,
/// `duration_us`.
pub const STREAM_WRITE_ERROR: &str = "reckon_db.stream.write.error";
/// A read begins: `store`, `stream` (`$all`, `$types` and `$tags` for the global
/// reads), `from`, `count`.
pub const STREAM_READ_START: &str = "reckon_db.stream.read.start";
/// A read answered: `store`, `stream`, `event_count`, `duration_us`.
pub const STREAM_READ_STOP: &str = "reckon_db.stream.read.stop";
/// A read failed: `store`, `stream`, `error`, `reason`, `duration_us`.
pub const STREAM_READ_ERROR: &str = "reckon_db.stream.read.error";
/// A subscription was created: `store`, `key`, `kind`, `selector`, `name`.
pub const SUBSCRIPTION_CREATED: &str = "reckon_db.subscription.created";
/// A subscription was removed: `store`, `key`.
pub const SUBSCRIPTION_DELETED: &str = "reckon_db.subscription.deleted";
/// Events were delivered to a consumer: `store`, `key`, `consumer`, `event_count`,
/// `lag`.
pub const SUBSCRIPTION_DELIVERED: &str = "reckon_db.subscription.delivered";
/// A consumer acknowledged: `store`, `key`, `consumer`, `checkpoint`, `lag`.
pub const SUBSCRIPTION_CHECKPOINT: &str = "reckon_db.subscription.checkpoint";
/// A stream snapshot was saved: `store`, `stream`, `version`, `size_bytes`,
/// `duration_us`.
pub const SNAPSHOT_CREATED: &str = "reckon_db.snapshot.created";
/// A stream snapshot was loaded: `store`, `stream`, `version`, `size_bytes`,
/// `duration_us`.
pub const SNAPSHOT_READ: &str = "reckon_db.snapshot.read";
/// A node came up (`node_id`, `address`), or, seen from a node (`node_id`), a peer
/// became reachable again (`peer`, `address`).
pub const CLUSTER_NODE_UP: &str = "reckon_db.cluster.node.up";
/// A node is going down (`node_id`), or a peer became unreachable (`node_id`,
/// `peer`, `address`, `reason`).
pub const CLUSTER_NODE_DOWN: &str = "reckon_db.cluster.node.down";
/// A store's group has a new leader, as one node sees it: `store`, `node_id`,
/// `leader`, `previous_leader` (0 when none), `term`.
pub const CLUSTER_LEADER_ELECTED: &str = "reckon_db.cluster.leader.elected";
/// A node no longer knows a leader for a store: `store`, `node_id`,
/// `previous_leader`, `term`.
pub const CLUSTER_LEADER_LOST: &str = "reckon_db.cluster.leader.lost";
/// A store group's members changed: `store`, `node_id`, `voters`, `learners`.
pub const CLUSTER_MEMBERSHIP_CHANGED: &str = "reckon_db.cluster.membership.changed";
/// A store opened on a node: `store`, `node_id`.
pub const STORE_STARTED: &str = "reckon_db.store.started";
/// A store stopped on a node: `store`, `node_id`.
pub const STORE_STOPPED: &str = "reckon_db.store.stopped";
/// A node compacted a store's state file after a scavenge: `store`, `node_id`,
/// `generation`, `file_bytes_before`, `file_bytes_after`, `removed_events`.
pub const SCAVENGE_COMPACTED: &str = "reckon_db.scavenge.compacted";
/// A node began an online backup of a store: `store`, `node_id`, `backup`,
/// `last_log_index` (the entry it is taken at).
pub const BACKUP_STARTED: &str = "reckon_db.backup.started";
/// A backup's copy is made and can be read: `store`, `node_id`, `backup`,
/// `size_bytes`, `duration_us`.
pub const BACKUP_READY: &str = "reckon_db.backup.ready";
/// A node let a backup go: `store`, `node_id`, `backup`, `reason` (`ended`,
/// `expired`: idle too long, or `failed` with `error`).
pub const BACKUP_ENDED: &str = "reckon_db.backup.ended";
/// A gater registered a worker: `store`, `node_id`, `address`.
pub const GATER_WORKER_REGISTERED: &str = "reckon_db.gater.worker.registered";
/// A gater dropped a worker: `store`, `node_id`, `reason` (`deregistered` or
/// `lease_expired`).
pub const GATER_WORKER_UNREGISTERED: &str = "reckon_db.gater.worker.unregistered";
/// A gater retries a routed request elsewhere or later: `store`, `node_id`,
/// `attempt`, `error`.
pub const GATER_REQUEST_RETRY: &str = "reckon_db.gater.request.retry";
/// A gater gave up on a routed request: `store`, `attempts`, `error`.
pub const GATER_REQUEST_RETRIES_EXHAUSTED: &str = "reckon_db.gater.request.retries_exhausted";

/// A gater refused a caller it could not authenticate (a token not accepted, or a
/// call before authenticating): `principal` (`-`: none), `store` (`-`: none),
/// `action`, `reason`. Never the token.
pub const GATER_AUTH_FAILED: &str = "reckon_db.gater.auth.failed";
/// A gater refused a call for lack of a role: `principal`, `store`, `action`, `needs`.
pub const GATER_ACCESS_DENIED: &str = "reckon_db.gater.access.denied";
/// A gater let an admin operation through: `principal`, `store`, `action`, `outcome`
/// (`ok` or the error kind).
pub const GATER_ADMIN_ACTION: &str = "reckon_db.gater.admin.action";

/// Every event name this crate and the node emit.
pub const ALL_EVENTS: &[&str] = &[
    STREAM_WRITE_START,
    STREAM_WRITE_STOP,
    STREAM_WRITE_ERROR,
    STREAM_READ_START,
    STREAM_READ_STOP,
    STREAM_READ_ERROR,
    SUBSCRIPTION_CREATED,
    SUBSCRIPTION_DELETED,
    SUBSCRIPTION_DELIVERED,
    SUBSCRIPTION_CHECKPOINT,
    SNAPSHOT_CREATED,
    SNAPSHOT_READ,
    CLUSTER_NODE_UP,
    CLUSTER_NODE_DOWN,
    CLUSTER_LEADER_ELECTED,
    CLUSTER_LEADER_LOST,
    CLUSTER_MEMBERSHIP_CHANGED,
    STORE_STARTED,
    STORE_STOPPED,
    SCAVENGE_COMPACTED,
    BACKUP_STARTED,
    BACKUP_READY,
    BACKUP_ENDED,
    GATER_WORKER_REGISTERED,
    GATER_WORKER_UNREGISTERED,
    GATER_REQUEST_RETRY,
    GATER_REQUEST_RETRIES_EXHAUSTED,
    GATER_AUTH_FAILED,
    GATER_ACCESS_DENIED,
    GATER_ADMIN_ACTION,
];

/// The most handlers attached at once.
pub const MAX_HANDLERS: usize = 64;

/// The value of one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A count, id, version, position or duration.
    U64(u64),
    /// A signed number.
    I64(i64),
    /// A flag.
    Bool(bool),
    /// A name, id or message.
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    /// The same value, owning its string.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::U64(v) => Value::U64(v),
            Value::I64(v) => Value::I64(v),
            Value::Bool(v) => Value::Bool(v),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        }
    }

    /// The number, when the value is an unsigned one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) if s.is_empty() || s.contains([' ', '"', '=']) => write!(f, "{s:?}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// One telemetry event, borrowed from the code that emits it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Its dotted name, one of the constants of this module.
    pub name: &'static str,
    /// Its fields, in a fixed order per event.
    pub fields: &'a [(&'static str, Value<'a>)],
}

impl<'a> Event<'a> {
    /// An event with these fields.
    pub fn new(name: &'static str, fields: &'a [(&'static str, Value<'a>)]) -> Self {
        Event { name, fields }
    }

    /// The field named `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A copy that owns its fields, to keep or send elsewhere.
    pub fn to_owned_event(&self) -> OwnedEvent {
        OwnedEvent {
            name: self.name,
            fields: self
                .fields
                .iter()
                .map(|(k, v)| (*k, v.clone().into_owned()))
                .collect(),
        }
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        for (k, v) in self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// An [`Event`] that owns its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedEvent {
    /// Its dotted name.
    pub name: &'static str,
    /// Its fields.
    pub fields: Vec<(&'static str, Value<'static>)>,
}

impl OwnedEvent {
    /// The field named `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'static>> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Why a handler could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A handler with this id is attached already; detach it first.
    #[error("a telemetry handler with id {0:?} is attached already")]
    AlreadyAttached(String),
    /// [`MAX_HANDLERS`] are attached.
    #[error("{MAX_HANDLERS} telemetry handlers are attached already")]
    TooMany,
}

type HandlerFn = dyn Fn(&Event<'_>) + Send + Sync;

#[derive(Clone)]
struct Handler {
    id: String,
    prefixes: Vec<String>,
    call: Arc<HandlerFn>,
}

impl Handler {
    fn wants(&self, name: &str) -> bool {
        self.prefixes.is_empty()
            || self.prefixes.iter().any(|p| {
                name == p
                    || (name.starts_with(p.as_str())
                        && (p.ends_with('.') || name.as_bytes().get(p.len()) == Some(&b'.')))
            })
    }
}

/// Attached handlers, replaced whole on attach and detach. Emitters take a snapshot
/// (an `Arc` clone, no allocation) and call handlers without holding the lock, so a
/// handler may itself attach or detach.
static HANDLERS: LazyLock<RwLock<Arc<Vec<Handler>>>> = LazyLock::new(Default::default);
/// Whether any handler is attached: emitting with none costs one atomic load.
static ANY: AtomicBool = AtomicBool::new(false);

/// Attaches `handler` under `id` for events whose name is one of `prefixes` or starts
/// with one followed by a dot (`"reckon_db.stream"` takes every stream event); an
/// empty `prefixes` takes every event.
pub fn attach(
    id: impl Into<String>,
    prefixes: &[&str],
    handler: impl Fn(&Event<'_>) + Send + Sync + 'static,
) -> Result<(), AttachError> {
    let id = id.into();
    let mut handlers = HANDLERS.write().unwrap_or_else(|p| p.into_inner());
    if handlers.iter().any(|h| h.id == id) {
        return Err(AttachError::AlreadyAttached(id));
    }
    if handlers.len() >= MAX_HANDLERS {
        return Err(AttachError::TooMany);
    }
    let mut next = Vec::clone(&handlers);
    next.push(Handler {
        id,
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        call: Arc::new(handler),
    });
    *handlers = Arc::new(next);
    ANY.store(true, Ordering::Release);
    Ok(())
}

/// Detaches the handler attached under `id`; `false` when there was none.
pub fn detach(id: &str) -> bool {
    let mut handlers = HANDLERS.write().unwrap_or_else(|p| p.into_inner());
    let next: Vec<Handler> = handlers.iter().filter(|h| h.id != id).cloned().collect();
    let found = next.len() != handlers.len();
    ANY.store(!next.is_empty(), Ordering::Release);
    *handlers = Arc::new(next);
    found
}

/// Whether any handler is attached. Emitters may skip building an event when not.
pub fn enabled() -> bool {
    ANY.load(Ordering::Acquire)
}

/// Delivers `event` to every attached handler that wants it. A handler that panics
/// is detached (and the panic logged), as the seed's telemetry does: one faulty
/// handler must not fail the request that emitted the event, nor every later one.
pub fn emit(event: &Event<'_>) {
    if !enabled() {
        return;
    }
    let handlers = Arc::clone(&HANDLERS.read().unwrap_or_else(|p| p.into_inner()));
    for h in handlers.iter().filter(|h| h.wants(event.name)) {
        let call = std::panic::AssertUnwindSafe(|| (h.call)(event));
        if std::panic::catch_unwind(call).is_err() {
            detach(&h.id);
            tracing::error!(
                target: "reckon_db",
                handler = %h.id,
                event = event.name,
                "telemetry handler panicked and was detached"
            );
        }
    }
}

/// Builds and emits an event: `emit!(NAME, "field" => value, ...)`, where a value is
/// anything [`Value`] converts from. Nothing is built when no handler is attached.
#[macro_export]
macro_rules! emit {
    ($name:expr $(, $key:literal => $value:expr)* $(,)?) => {
        if $crate::telemetry::enabled() {
            $crate::telemetry::emit(&$crate::telemetry::Event::new(
                $name,
                &[$(($key, $crate::telemetry::Value::from($value))),*],
            ));
        }
    };
}

/// The id [`attach_default_handler`] attaches under.
pub const DEFAULT_HANDLER_ID: &str = "reckon_db.default_log";

/// Attaches the handler that logs every event as a `tracing` event with target
/// `reckon_db` (a second call is a no-op).
pub fn attach_default_handler() {
    let _ = attach(DEFAULT_HANDLER_ID, &[], log_event);
}

fn is_per_request(name: &str) -> bool {
    name.starts_with("reckon_db.stream.")
        || name == SUBSCRIPTION_DELIVERED
        || name == SUBSCRIPTION_CHECKPOINT
        || name == GATER_REQUEST_RETRY
}

/// The default handler: one `tracing` line per event, `name key=value ...`.
pub fn log_event(event: &Event<'_>) {
    if event.name.ends_with(".error")
        || event.name == GATER_REQUEST_RETRIES_EXHAUSTED
        || event.name == GATER_AUTH_FAILED
        || event.name == GATER_ACCESS_DENIED
        || event.name == CLUSTER_LEADER_LOST
        || (event.name == CLUSTER_NODE_DOWN && event.get("peer").is_some())
    {
        if tracing::enabled!(target: "reckon_db", tracing::Level::WARN) {
            tracing::warn!(target: "reckon_db", "{event}");
        }
    } else if is_per_request(event.name) {
        if tracing::enabled!(target: "reckon_db", tracing::Level::DEBUG) {
            tracing::debug!(target: "reckon_db", "{event}");
        }
    } else if tracing::enabled!(target: "reckon_db", tracing::Level::INFO) {
        tracing::info!(target: "reckon_db", "{event}");
    }
}

impl From<u64> for Value<'_> {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::U64(v.into())
    }
}

impl From<usize> for Value<'_> {
    fn from(v: usize) -> Self {
        Value::U64(v as u64)
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Str(Cow::Borrowed(v.as_str()))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Str(Cow::Owned(v))
    }
}

impl From<std::time::Duration> for Value<'_> {
    fn from(d: std::time::Duration) -> Self {
        Value::U64(d.as_micros().min(u64::MAX as u128) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn prefixes_match_whole_segments() {
        let h = Handler {
            id: "t".into(),
            prefixes: vec!["reckon_db.stream".into()],
            call: Arc::new(|_| {}),
        };
        assert!(h.wants(STREAM_WRITE_STOP));
        assert!(h.wants("reckon_db.stream"));
        assert!(!h.wants("reckon_db.streamer.x"));
        assert!(!h.wants(SNAPSHOT_READ));
    }

    #[test]
    fn attach_detach_and_duplicate_ids() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        attach("unit-dup", &[SNAPSHOT_CREATED], move |e: &Event<'_>| {
            sink.lock().unwrap().push(e.to_string())
        })
        .unwrap();
        assert_eq!(
            attach("unit-dup", &[], |_: &Event<'_>| {}),
            Err(AttachError::AlreadyAttached("unit-dup".into()))
        );
        emit!(SNAPSHOT_CREATED, "store" => "s 1", "version" => 4u64);
        emit!(SNAPSHOT_READ, "store" => "s");
        assert!(detach("unit-dup"));
        assert!(!detach("unit-dup"));
        emit!(SNAPSHOT_CREATED, "store" => "after");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![r#"reckon_db.snapshot.created store="s 1" version=4"#.to_string()]
        );
    }

    #[test]
    fn a_panicking_handler_is_detached_and_the_others_still_run() {
        let seen = Arc::new(Mutex::new(0u32));
        let sink = seen.clone();
        attach("unit-panics", &[STORE_STOPPED], |_: &Event<'_>| {
            panic!("a faulty handler")
        })
        .unwrap();
        attach("unit-counts", &[STORE_STOPPED], move |_: &Event<'_>| {
            *sink.lock().unwrap() += 1
        })
        .unwrap();
        emit!(STORE_STOPPED, "store" => "s");
        emit!(STORE_STOPPED, "store" => "s");
        assert!(!detach("unit-panics"), "detached at its first panic");
        assert!(detach("unit-counts"));
        assert_eq!(*seen.lock().unwrap(), 2);
    }

    #[test]
    fn every_name_is_under_reckon_db() {
        for n in ALL_EVENTS {
            assert!(n.starts_with("reckon_db."), "{n}");
        }
    }
}
