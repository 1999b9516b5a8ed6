//! Folding events into state with `$sum` and `$overwrite`.
//!
//! The aggregator turns a sequence of events into one JSON object, the way a
//! projection or a read model would: each event's data is a JSON object, and its
//! keys are merged, one by one, into the state (a JSON object). How a key is
//! merged depends on the value the event carries for it:
//!
//! - `{"$sum": n}` (an object whose only key is `$sum` and whose operand is a
//!   number) adds `n` to the key's current number and keeps the result tagged as
//!   `{"$sum": total}`. The current number is the key's value with any tag
//!   unwrapped (so a `$sum` after a plain number, or after a numeric
//!   `$overwrite`, adds to it); it is 0 when the key is absent or not a number.
//! - `{"$overwrite": v}` (an object whose only key is `$overwrite`) replaces the
//!   key's value and keeps it tagged as `{"$overwrite": v}`.
//! - Any other value (including an object that merely contains `$sum` next to
//!   other keys, or a `$sum` whose operand is not a number) replaces the key's
//!   value as is, untagged.
//!
//! The merge is shallow: only the top-level keys of an event are interpreted; a
//! nested object is a plain value that replaces what was there. Events whose data
//! is not a JSON object are ignored. Tags stay in the state so that a state can be
//! saved (as a snapshot) and folded further; [`finalize`] removes them for a
//! reader.
//!
//! Numbers are added as `i64` when both sides are integers that fit an `i64` and
//! the sum does not overflow, and as `f64` otherwise. A sum that is not finite as
//! an `f64` cannot be represented in JSON; such an increment is ignored and the
//! previous total is kept.
//!
//! This module is a pure library: it depends on `serde_json` only and does no I/O.
//!
//! # Example
//!
//! ```
//! use reckon_gater::aggregate::{aggregate, finalize, foldl};
//! use serde_json::json;
//!
//! let events = vec![
//!     json!({"name": "Alice", "balance": {"$sum": 100}}),
//!     json!({"balance": {"$sum": -30}, "status": {"$overwrite": "active"}}),
//!     json!("not an object: ignored"),
//! ];
//!
//! // The folded state keeps its tags...
//! let state = foldl(&events);
//! assert_eq!(
//!     state,
//!     json!({"name": "Alice", "balance": {"$sum": 70}, "status": {"$overwrite": "active"}})
//! );
//!
//! // ...and finalize unwraps them for a reader.
//! assert_eq!(
//!     finalize(state),
//!     json!({"name": "Alice", "balance": 70, "status": "active"})
//! );
//!
//! // Starting from a snapshot instead of an empty state:
//! let snapshot = json!({"name": "Alice", "balance": 1000});
//! let more = vec![json!({"balance": {"$sum": 5}})];
//! assert_eq!(
//!     aggregate(&more, Some(&snapshot), json!({}), true),
//!     json!({"name": "Alice", "balance": 1005})
//! );
//! ```

use serde_json::{Map, Number, Value};

use crate::types::EventRecord;

/// The tag that makes a value an increment of the key's running total.
const SUM: &str = "$sum";

/// The tag that makes a value an explicit, tagged replacement.
const OVERWRITE: &str = "$overwrite";

/// Folds `events` into an empty object, oldest first.
///
/// `events` is in stream order (the oldest event at index 0), and each event is
/// applied after the ones before it, so for plain values the newest event wins.
/// Events that are not JSON objects are ignored. The result is always a JSON
/// object and keeps its `$sum` / `$overwrite` tags; see [`finalize`].
///
/// ```
/// use reckon_gater::aggregate::foldl;
/// use serde_json::json;
///
/// let state = foldl(&[json!({"n": 1}), json!({"n": 2})]);
/// assert_eq!(state, json!({"n": 2}));
/// assert_eq!(foldl(&[]), json!({}));
/// ```
#[must_use]
pub fn foldl(events: &[Value]) -> Value {
    fold_into(Value::Object(Map::new()), events)
}

/// Folds `events` into an empty object, newest first.
///
/// The same fold as [`foldl`], but the slice is walked from its end to its start:
/// the event at index 0 is applied last, so for plain values it is the one that
/// wins. `$sum` increments give the same total in either order (up to `f64`
/// rounding). Events that are not JSON objects are ignored. The result is always
/// a JSON object and keeps its tags.
///
/// ```
/// use reckon_gater::aggregate::foldr;
/// use serde_json::json;
///
/// let state = foldr(&[json!({"n": 1}), json!({"n": 2})]);
/// assert_eq!(state, json!({"n": 1}));
/// ```
#[must_use]
pub fn foldr(events: &[Value]) -> Value {
    fold_into(Value::Object(Map::new()), events.iter().rev())
}

/// Folds `events`, in iteration order, into `state`: the core of every fold here.
///
/// Each event that is a JSON object has its top-level keys merged into the state
/// by the rules of the [module documentation](self) (`$sum` adds, `$overwrite`
/// replaces tagged, anything else replaces untagged). Events that are not JSON
/// objects are ignored. If `state` is not a JSON object it is discarded and the
/// fold starts from an empty object, so the result is always a JSON object. The
/// tags are kept; see [`finalize`].
///
/// ```
/// use reckon_gater::aggregate::fold_into;
/// use serde_json::json;
///
/// let state = json!({"count": {"$sum": 2}, "name": "x"});
/// let events = [json!({"count": {"$sum": 3}}), json!(42)];
/// assert_eq!(
///     fold_into(state, &events),
///     json!({"count": {"$sum": 5}, "name": "x"})
/// );
/// ```
#[must_use]
pub fn fold_into<'a>(state: Value, events: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut map = match state {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for event in events {
        apply_event(&mut map, event);
    }
    Value::Object(map)
}

/// Removes the `$sum` and `$overwrite` tags from the top level of `state`.
///
/// Every top-level value of the form `{"$sum": n}` (with a numeric `n`) becomes
/// `n` and every `{"$overwrite": v}` becomes `v`; other values (including objects
/// with more keys than the tag, or a `$sum` of a non-number, which the fold treats
/// as plain values too) are left as they are, and nested values are not inspected. A `state` that is not a JSON object is returned
/// unchanged.
///
/// ```
/// use reckon_gater::aggregate::finalize;
/// use serde_json::json;
///
/// let state = json!({"a": {"$sum": 5}, "b": {"$overwrite": [1, 2]}, "c": true});
/// assert_eq!(finalize(state), json!({"a": 5, "b": [1, 2], "c": true}));
/// ```
#[must_use]
pub fn finalize(state: Value) -> Value {
    match state {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, untag(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Aggregates `events` on top of a starting state, optionally finalizing.
///
/// The starting state is `snapshot` when one is given and it is a JSON object (a
/// snapshot's data replaces `initial_state`), and `initial_state` otherwise (a
/// snapshot that is not a JSON object is ignored). The events, oldest first, are
/// then folded into it as by [`fold_into`] (a non-object starting state counts as
/// an empty object, and non-object events are ignored). When `finalize` is true
/// the tags are removed as by [`finalize()`]; otherwise they are kept, so the
/// result can serve as a later snapshot.
///
/// ```
/// use reckon_gater::aggregate::aggregate;
/// use serde_json::json;
///
/// let events = [json!({"balance": {"$sum": 100}}), json!({"balance": {"$sum": -50}})];
/// let snapshot = json!({"name": "Bob", "balance": 500});
/// assert_eq!(
///     aggregate(&events, Some(&snapshot), json!({}), true),
///     json!({"name": "Bob", "balance": 550})
/// );
/// assert_eq!(
///     aggregate(&events, None, json!({}), false),
///     json!({"balance": {"$sum": 50}})
/// );
/// ```
#[must_use]
pub fn aggregate(
    events: &[Value],
    snapshot: Option<&Value>,
    initial_state: Value,
    finalize: bool,
) -> Value {
    let start = starting_state(snapshot, initial_state);
    finish(fold_into(start, events), finalize)
}

/// Parses an event's data bytes as JSON, keeping only a JSON object.
///
/// Returns `Some` with the parsed value when `data` is valid JSON whose top level
/// is an object, and `None` when it is not JSON (including empty or binary data)
/// or is JSON of another kind (array, string, number, boolean, null). Use it to
/// feed the `data` of [`EventRecord`]s to the folds.
///
/// ```
/// use reckon_gater::aggregate::decode_event_data;
/// use serde_json::json;
///
/// assert_eq!(decode_event_data(br#"{"a": 1}"#), Some(json!({"a": 1})));
/// assert_eq!(decode_event_data(b"[1, 2]"), None);
/// assert_eq!(decode_event_data(b"\xff\x00"), None);
/// ```
#[must_use]
pub fn decode_event_data(data: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(data) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// [`aggregate`] over stored event records, decoding each record's data.
///
/// Each record's `data` is decoded with [`decode_event_data`]; records whose data
/// is not a JSON object are skipped (their `content_type` is not consulted).
/// `records` are taken oldest first, and `snapshot`, `initial_state` and
/// `finalize` mean what they mean for [`aggregate`].
///
/// ```
/// use reckon_gater::aggregate::aggregate_records;
/// use reckon_gater::types::{ContentType, EventRecord};
/// use serde_json::json;
///
/// let record = |version: u64, data: &[u8]| EventRecord {
///     stream_id: "account-1".into(),
///     version,
///     position: version,
///     event_id: Default::default(),
///     event_type: "Deposited".into(),
///     data: data.to_vec(),
///     metadata: Vec::new(),
///     content_type: ContentType::Json,
///     tags: Vec::new(),
///     timestamp_us: 0,
/// };
/// let records = [
///     record(0, br#"{"balance": {"$sum": 10}}"#),
///     record(1, b"not json"),
///     record(2, br#"{"balance": {"$sum": 5}}"#),
/// ];
/// assert_eq!(
///     aggregate_records(&records, None, json!({}), true),
///     json!({"balance": 15})
/// );
/// ```
#[must_use]
pub fn aggregate_records(
    records: &[EventRecord],
    snapshot: Option<&Value>,
    initial_state: Value,
    finalize: bool,
) -> Value {
    let start = starting_state(snapshot, initial_state);
    let events: Vec<Value> = records
        .iter()
        .filter_map(|record| decode_event_data(&record.data))
        .collect();
    finish(fold_into(start, &events), finalize)
}

/// The state a fold starts from: an object snapshot wins over `initial_state`.
fn starting_state(snapshot: Option<&Value>, initial_state: Value) -> Value {
    match snapshot {
        Some(snapshot @ Value::Object(_)) => snapshot.clone(),
        _ => initial_state,
    }
}

/// Finalizes `state` when asked to.
fn finish(state: Value, do_finalize: bool) -> Value {
    if do_finalize {
        finalize(state)
    } else {
        state
    }
}

/// Merges one event into the state; a non-object event changes nothing.
fn apply_event(state: &mut Map<String, Value>, event: &Value) {
    let Value::Object(fields) = event else {
        return;
    };
    for (key, value) in fields {
        if let Some(increment) = sum_operand(value) {
            let current = state.get(key).and_then(current_number);
            let total = match current {
                Some(current) => match add_numbers(current, increment) {
                    Some(total) => total,
                    // Not representable: keep the previous total (re-tagged).
                    None => current.clone(),
                },
                None => increment.clone(),
            };
            state.insert(key.clone(), tagged(SUM, Value::Number(total)));
        } else {
            // `$overwrite` values are stored as they came, tag included, and so
            // are plain values: in both cases the event's value replaces.
            state.insert(key.clone(), value.clone());
        }
    }
}

/// The operand of `{"$sum": n}` when `value` is exactly that with a numeric `n`.
fn sum_operand(value: &Value) -> Option<&Number> {
    match value {
        Value::Object(map) if tag_of(map) == Some(SUM) => match map.get(SUM) {
            Some(Value::Number(n)) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

/// The tag of a tagged value: `$sum` for `{"$sum": n}` with a numeric `n`,
/// `$overwrite` for `{"$overwrite": v}` with any `v`; `None` for anything else.
fn tag_of(map: &Map<String, Value>) -> Option<&'static str> {
    if map.len() != 1 {
        return None;
    }
    if matches!(map.get(SUM), Some(Value::Number(_))) {
        Some(SUM)
    } else if map.contains_key(OVERWRITE) {
        Some(OVERWRITE)
    } else {
        None
    }
}

/// The number a stored value stands for, with any tag unwrapped.
fn current_number(value: &Value) -> Option<&Number> {
    let inner = match value {
        Value::Object(map) => tag_of(map).and_then(|tag| map.get(tag))?,
        other => other,
    };
    match inner {
        Value::Number(n) => Some(n),
        _ => None,
    }
}

/// `a + b`: as `i64` when both are `i64` and it does not overflow, else as `f64`.
///
/// `None` when the `f64` sum is not finite (JSON has no infinity).
fn add_numbers(a: &Number, b: &Number) -> Option<Number> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(sum) = x.checked_add(y) {
            return Some(Number::from(sum));
        }
    }
    let x = a.as_f64()?;
    let y = b.as_f64()?;
    Number::from_f64(x + y)
}

/// `{tag: operand}`.
fn tagged(tag: &str, operand: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(tag.to_owned(), operand);
    Value::Object(map)
}

/// The operand of a `$sum` / `$overwrite` tagged value, or the value itself.
fn untag(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        if let Some(operand) = tag_of(map).and_then(|tag| map.remove(tag)) {
            return operand;
        }
    }
    value
}
