//! The subscription matcher: which events a subscription selects.
//!
//! A subscription is a [`SubscriptionType`] and a selector string. [`Matcher::parse`]
//! reads the selector once, at subscribe time, and rejects one it cannot read with
//! [`StoreError::InvalidInput`] on the field `selector`, saying what is wrong and what
//! is accepted. [`Matcher::matches`] then decides event by event. Like
//! [`crate::domain`], this module is pure: no I/O, no openraft, redb or tarpc;
//! delivery calls it, never the other way round.
//!
//! # Selectors
//!
//! **`stream`**: one stream id (1..=256 bytes, no control characters, not blank),
//! matched exactly, or `$all` for every event in the store.
//!
//! ```text
//! order-42        the events of stream order-42
//! $all            every event
//! ```
//!
//! **`event_type`**: one event type, or several separated by commas; an event matches
//! when its type is any of them. Whitespace around each type is ignored, so a type
//! cannot start or end with a space, nor contain a comma.
//!
//! ```text
//! OrderPlaced                 events of type OrderPlaced
//! OrderPlaced,OrderShipped    events of either type
//! ```
//!
//! **`event_pattern`**: a glob on the stream id, matched against the whole id. `*` is
//! any run of characters, including none; `?` is exactly one character (a Unicode
//! scalar value, not a byte). Nothing else is special: `[`, `]`, `{`, `}`, `\` and `/`
//! stand for themselves. A pattern without `*` or `?` is an exact stream id.
//!
//! ```text
//! order-*     order-1, order-2, order-          not user-1
//! *-42        x-42, order-42                    not x-420
//! user-?      user-1, user-é                    not user-10, user-
//! ```
//!
//! **`event_payload`**: a JSON object of conditions on the event's data; every
//! condition must hold. Each key is a path into the data, dots separating nested
//! object keys (`customer.country`); a path does not index into arrays, and a key
//! that itself contains a dot cannot be addressed. Each value is either
//!
//! - a plain JSON value: the data at the path must be equal to it (deep equality for
//!   objects and arrays; numbers are equal by value, so `2` equals `2.0`); or
//! - an object of operators, all of which must hold:
//!   - `$gt`, `$gte`, `$lt`, `$lte` with a number or a string: numbers compare as
//!     numbers, strings lexicographically (by code point); any other pairing, such as
//!     a string in the data against a number bound, or an absent path, never matches;
//!   - `$ne` with any value: not equal. **An absent path counts as not equal**, so
//!     `{"status": {"$ne": "closed"}}` also selects events without a `status`;
//!   - `$in` with an array: equal to any element (an empty array matches nothing);
//!   - `$exists` with `true` or `false`: whether the path is present (a present
//!     `null` exists).
//!
//! An object whose keys all start with `$` is an operator object; one whose keys
//! mix `$` and plain keys is rejected; one with no `$` key is a plain value. Events
//! whose content type is not JSON, or whose data is not a JSON object, never match.
//!
//! ```text
//! {"amount": {"$gt": 100}}                         data.amount > 100
//! {"customer.country": "NL", "total": {"$gte": 10, "$lt": 50}}
//! {"status": {"$in": ["open", "pending"]}}
//! {"refund": {"$exists": false}}
//! {"address": {"city": "Utrecht", "zip": "3511"}}  deep equality with that object
//! ```
//!
//! **`tags`**: a comma-separated list of tags, optionally prefixed `any:` (the
//! default: the event carries at least one of them) or `all:` (it carries every one).
//! Events without tags never match. Whitespace around each tag is ignored; to select
//! a tag that itself starts with `any:` or `all:`, write the prefix explicitly
//! (`any:all:x` selects the tag `all:x`).
//!
//! ```text
//! vip,priority        any of vip, priority
//! any:vip,priority    the same
//! all:vip,priority    both
//! ```

use std::cmp::Ordering;

use reckon_gater::types::{ContentType, EventRecord, StoreError, SubscriptionType, TagMatch};
use serde_json::{Map, Number, Value};

use crate::domain::{self, Limits};

/// The `stream` selector that selects every event in the store.
pub const ALL_STREAMS: &str = "$all";

/// Longest selector of any type, in bytes: the one limit on selectors, checked here.
pub const SELECTOR_BYTES_MAX: usize = 4096;

/// Longest `event_pattern` glob, in bytes. Stream ids are at most 256 bytes, so a
/// longer pattern could only be a mistake, and the bound keeps a match cheap.
pub const PATTERN_BYTES_MAX: usize = 1024;

/// Most event types or tags in one `event_type` or `tags` selector.
pub const SELECTOR_ITEMS_MAX: usize = 256;

/// The field every parse error names.
const FIELD: &str = "selector";

/// The operators an `event_payload` condition accepts, as error messages list them.
const PAYLOAD_OPERATORS: &str = "$gt, $gte, $lt, $lte, $ne, $in, $exists";

/// A parsed subscription selector: which events a subscription selects.
///
/// Build one with [`Matcher::parse`]; the variants are public so delivery can
/// pattern-match on them (to pick a secondary index, say), but a matcher built by
/// hand skips the selector's validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// `stream` with `$all`: every event.
    All,
    /// `stream` with a stream id: the events of that stream.
    Stream(String),
    /// `event_type`: events whose type is one of these (deduplicated, in selector
    /// order).
    EventTypes(Vec<String>),
    /// `event_pattern`: events whose stream id matches the glob.
    StreamPattern(StreamGlob),
    /// `event_payload`: JSON events whose data satisfies every condition.
    Payload(PayloadQuery),
    /// `tags`: events carrying any, or all, of the tags.
    Tags {
        /// Whether one tag is enough or every tag is needed.
        mode: TagMatch,
        /// The tags (deduplicated, in selector order, never empty).
        tags: Vec<String>,
    },
}

impl Matcher {
    /// Parses `selector` as a selector of type `kind` (syntax in the [module
    /// docs](self)).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] with field `selector` when the selector is empty,
    /// longer than [`SELECTOR_BYTES_MAX`], or not valid for `kind`; the reason says
    /// what is wrong and what is accepted.
    pub fn parse(kind: SubscriptionType, selector: &str) -> Result<Matcher, StoreError> {
        if selector.trim().is_empty() {
            return Err(invalid(format!(
                "the {kind} selector is empty; expected {}",
                accepted(kind)
            )));
        }
        if selector.len() > SELECTOR_BYTES_MAX {
            return Err(invalid(format!(
                "the {kind} selector is {} bytes; the limit is {SELECTOR_BYTES_MAX}",
                selector.len()
            )));
        }
        let limits = Limits::default();
        match kind {
            SubscriptionType::Stream if selector == ALL_STREAMS => Ok(Matcher::All),
            SubscriptionType::Stream => {
                domain::validate_stream_id(&limits, selector).map_err(|e| match e {
                    StoreError::InvalidInput { reason, .. } => invalid(format!(
                        "{reason}; expected {}",
                        accepted(SubscriptionType::Stream)
                    )),
                    other => other,
                })?;
                Ok(Matcher::Stream(selector.to_string()))
            }
            SubscriptionType::EventType => {
                let types = parse_list(selector, "event type", limits.event_type_bytes_max)?;
                Ok(Matcher::EventTypes(types))
            }
            SubscriptionType::EventPattern => {
                Ok(Matcher::StreamPattern(StreamGlob::parse(selector)?))
            }
            SubscriptionType::EventPayload => Ok(Matcher::Payload(PayloadQuery::parse(selector)?)),
            SubscriptionType::Tags => {
                let (mode, list) = if let Some(rest) = selector.strip_prefix("all:") {
                    (TagMatch::All, rest)
                } else if let Some(rest) = selector.strip_prefix("any:") {
                    (TagMatch::Any, rest)
                } else {
                    (TagMatch::Any, selector)
                };
                let tags = parse_list(list, "tag", limits.tag_bytes_max)?;
                Ok(Matcher::Tags { mode, tags })
            }
        }
    }

    /// Whether the subscription selects `e`.
    ///
    /// An `event_payload` matcher parses the event's data once per call; every other
    /// kind looks only at the record's fields.
    pub fn matches(&self, e: &EventRecord) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Stream(stream_id) => e.stream_id == *stream_id,
            Matcher::EventTypes(types) => types.contains(&e.event_type),
            Matcher::StreamPattern(glob) => glob.matches(&e.stream_id),
            Matcher::Payload(query) => query.matches_event(e.content_type, &e.data),
            Matcher::Tags { mode, tags } => match mode {
                TagMatch::Any => tags.iter().any(|t| e.tags.contains(t)),
                TagMatch::All => tags.iter().all(|t| e.tags.contains(t)),
            },
        }
    }

    /// The one stream every matching event belongs to, when there is one: a `stream`
    /// subscription other than `$all`, or an `event_pattern` without `*` or `?`.
    /// Delivery can then read that stream instead of scanning the global log.
    pub fn stream_hint(&self) -> Option<&str> {
        match self {
            Matcher::Stream(stream_id) => Some(stream_id),
            Matcher::StreamPattern(glob) => glob.literal(),
            _ => None,
        }
    }

    /// Whether every event matches: `$all`, or the pattern `*`. Delivery can then skip
    /// calling [`matches`](Self::matches).
    pub fn is_all(&self) -> bool {
        match self {
            Matcher::All => true,
            Matcher::StreamPattern(glob) => glob.matches_everything(),
            _ => false,
        }
    }
}

/// A compiled `event_pattern` glob over stream ids (syntax in the [module
/// docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGlob {
    pattern: String,
    /// Never two [`GlobToken::AnyRun`] in a row: `**` means the same as `*`.
    tokens: Vec<GlobToken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    /// This character, exactly.
    Literal(char),
    /// `?`: one character.
    AnyChar,
    /// `*`: any run of characters, including none.
    AnyRun,
}

impl StreamGlob {
    fn parse(pattern: &str) -> Result<StreamGlob, StoreError> {
        if pattern.len() > PATTERN_BYTES_MAX {
            return Err(invalid(format!(
                "the event_pattern is {} bytes; the limit is {PATTERN_BYTES_MAX}",
                pattern.len()
            )));
        }
        if pattern.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the event_pattern {pattern:?} contains control characters; expected {}",
                accepted(SubscriptionType::EventPattern)
            )));
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let token = match c {
                '*' => GlobToken::AnyRun,
                '?' => GlobToken::AnyChar,
                c => GlobToken::Literal(c),
            };
            if !(token == GlobToken::AnyRun && tokens.last() == Some(&GlobToken::AnyRun)) {
                tokens.push(token);
            }
        }
        Ok(StreamGlob {
            pattern: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `stream_id` matches the pattern.
    ///
    /// Runs in O(len(pattern) * len(stream_id)) at worst, linear for the usual
    /// patterns with one `*`.
    pub fn matches(&self, stream_id: &str) -> bool {
        let tokens = &self.tokens;
        let (mut t, mut i) = (0, 0);
        // After a mismatch, backtrack to the last `*` seen: the token after it, and
        // the byte offset in `stream_id` up to which that `*` has absorbed. Only the
        // last `*` needs revisiting: any match an earlier one could find by absorbing
        // more, the last one finds too.
        let mut backtrack: Option<(usize, usize)> = None;
        while let Some(c) = stream_id[i..].chars().next() {
            match tokens.get(t) {
                Some(GlobToken::AnyRun) => {
                    t += 1;
                    backtrack = Some((t, i));
                    continue;
                }
                Some(GlobToken::AnyChar) => {
                    t += 1;
                    i += c.len_utf8();
                    continue;
                }
                Some(GlobToken::Literal(l)) if *l == c => {
                    t += 1;
                    i += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            let Some((after_star, absorbed)) = backtrack else {
                return false;
            };
            let Some(skipped) = stream_id[absorbed..].chars().next() else {
                return false;
            };
            let absorbed = absorbed + skipped.len_utf8();
            backtrack = Some((after_star, absorbed));
            t = after_star;
            i = absorbed;
        }
        tokens[t..].iter().all(|token| *token == GlobToken::AnyRun)
    }

    /// The stream id itself when the pattern has no wildcard.
    fn literal(&self) -> Option<&str> {
        let wild = self
            .tokens
            .iter()
            .any(|t| matches!(t, GlobToken::AnyRun | GlobToken::AnyChar));
        (!wild).then_some(self.pattern.as_str())
    }

    fn matches_everything(&self) -> bool {
        self.tokens == [GlobToken::AnyRun]
    }
}

/// A compiled `event_payload` query: conditions on paths into an event's JSON data,
/// all of which must hold (syntax in the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadQuery {
    /// Never empty.
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    /// The path's object keys, outermost first; never empty, no key empty.
    path: Vec<String>,
    /// Never empty; all must hold.
    tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    /// A plain value: present and equal.
    Equals(Value),
    /// `$ne`: absent, or present and not equal.
    NotEquals(Value),
    /// `$gt`, `$gte`, `$lt`, `$lte`: present and ordered against the bound.
    Compare(Comparison, Bound),
    /// `$in`: present and equal to one of the values.
    In(Vec<Value>),
    /// `$exists`: present (`true`) or absent (`false`).
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    /// Whether `data` ordered against the bound as `order` satisfies the comparison.
    fn holds(self, order: Ordering) -> bool {
        match self {
            Comparison::Gt => order == Ordering::Greater,
            Comparison::Gte => order != Ordering::Less,
            Comparison::Lt => order == Ordering::Less,
            Comparison::Lte => order != Ordering::Greater,
        }
    }
}

/// What an ordering operator compares against: only numbers and strings order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Number(Number),
    String(String),
}

impl PayloadQuery {
    fn parse(selector: &str) -> Result<PayloadQuery, StoreError> {
        const EXAMPLE: &str = r#"{"amount": {"$gt": 100}}"#;
        let value: Value = serde_json::from_str(selector).map_err(|e| {
            invalid(format!(
                "the event_payload selector is not valid JSON ({e}); expected a JSON \
                 object of path: condition, such as {EXAMPLE}"
            ))
        })?;
        let Value::Object(object) = value else {
            return Err(invalid(format!(
                "the event_payload selector is {}, not a JSON object; expected an object \
                 of path: condition, such as {EXAMPLE}",
                type_name(&value)
            )));
        };
        if object.is_empty() {
            return Err(invalid(format!(
                "the event_payload selector has no conditions; expected at least one \
                 path: condition, such as {EXAMPLE} (to select every event, subscribe to \
                 the stream $all)"
            )));
        }
        let conditions = object
            .into_iter()
            .map(|(key, condition)| Condition::parse(&key, condition))
            .collect::<Result<_, _>>()?;
        Ok(PayloadQuery { conditions })
    }

    /// Whether an event with this content type and data satisfies every condition.
    fn matches_event(&self, content_type: ContentType, data: &[u8]) -> bool {
        if content_type != ContentType::Json {
            return false;
        }
        // Skip the parse for data that cannot be an object.
        if data.trim_ascii_start().first() != Some(&b'{') {
            return false;
        }
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(object)) => self.matches_object(&object),
            _ => false,
        }
    }

    fn matches_object(&self, data: &Map<String, Value>) -> bool {
        self.conditions.iter().all(|c| {
            let found = lookup(data, &c.path);
            c.tests.iter().all(|t| t.holds(found))
        })
    }
}

impl Condition {
    fn parse(key: &str, condition: Value) -> Result<Condition, StoreError> {
        if key.starts_with('$') {
            return Err(invalid(format!(
                "{key:?} is not a path: top-level operators are not supported; each key \
                 is a dotted path into the event data, such as customer.country"
            )));
        }
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "the path {key:?} has an empty key; separate nested keys with single dots, \
                 as in customer.country"
            )));
        }
        let tests = match condition {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                if let Some(plain) = ops.keys().find(|k| !k.starts_with('$')) {
                    return Err(invalid(format!(
                        "the condition on {key:?} mixes operators with the plain key \
                         {plain:?}; use either an object of operators ({PAYLOAD_OPERATORS}) \
                         or a plain value to compare for equality"
                    )));
                }
                ops.into_iter()
                    .map(|(op, arg)| Test::parse(key, &op, arg))
                    .collect::<Result<_, _>>()?
            }
            plain => vec![Test::Equals(plain)],
        };
        Ok(Condition { path, tests })
    }
}

impl Test {
    fn parse(key: &str, op: &str, arg: Value) -> Result<Test, StoreError> {
        let comparison = match op {
            "$gt" => Comparison::Gt,
            "$gte" => Comparison::Gte,
            "$lt" => Comparison::Lt,
            "$lte" => Comparison::Lte,
            "$ne" => return Ok(Test::NotEquals(arg)),
            "$in" => {
                return match arg {
                    Value::Array(values) => Ok(Test::In(values)),
                    other => Err(invalid(format!(
                        "$in on {key:?} takes an array of values, got {}",
                        type_name(&other)
                    ))),
                }
            }
            "$exists" => {
                return match arg {
                    Value::Bool(present) => Ok(Test::Exists(present)),
                    other => Err(invalid(format!(
                        "$exists on {key:?} takes true or false, got {}",
                        type_name(&other)
                    ))),
                }
            }
            unknown => {
                return Err(invalid(format!(
                    "unknown operator {unknown:?} on {key:?}; accepted: {PAYLOAD_OPERATORS}"
                )))
            }
        };
        let bound = match arg {
            Value::Number(n) => Bound::Number(n),
            Value::String(s) => Bound::String(s),
            other => {
                return Err(invalid(format!(
                    "{op} on {key:?} takes a number or a string, got {}",
                    type_name(&other)
                )))
            }
        };
        Ok(Test::Compare(comparison, bound))
    }

    /// Whether the test holds for the value found at the path (`None`: absent).
    fn holds(&self, found: Option<&Value>) -> bool {
        match self {
            Test::Equals(want) => found.is_some_and(|v| json_eq(v, want)),
            Test::NotEquals(unwanted) => !found.is_some_and(|v| json_eq(v, unwanted)),
            Test::Compare(comparison, bound) => found
                .and_then(|v| compare(v, bound))
                .is_some_and(|order| comparison.holds(order)),
            Test::In(values) => found.is_some_and(|v| values.iter().any(|w| json_eq(v, w))),
            Test::Exists(present) => found.is_some() == *present,
        }
    }
}

/// The value at `path` inside `data`, following object keys only.
fn lookup<'a>(data: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = data.get(first)?;
    for key in rest {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// Deep equality, with numbers equal by value (`2 == 2.0`), which serde_json's own
/// `==` does not give.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// How `value` orders against `bound`; `None` when they do not order (mixed types).
fn compare(value: &Value, bound: &Bound) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(x), Bound::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Bound::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// Numeric order, exact for integers, by `f64` when a float is involved.
fn cmp_numbers(x: &Number, y: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return Some(x.cmp(&y));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

/// A comma-separated list of names (event types or tags): trimmed, non-empty,
/// at most `bytes_max` each, no control characters, deduplicated in order.
fn parse_list(list: &str, what: &str, bytes_max: usize) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = Vec::new();
    for (i, name) in list.split(',').enumerate() {
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid(format!(
                "{what} {} of {list:?} is empty; expected names separated by single \
                 commas, such as a,b",
                i + 1
            )));
        }
        if name.len() > bytes_max {
            return Err(invalid(format!(
                "{what} {} is {} bytes; the limit is {bytes_max}",
                i + 1,
                name.len()
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "{what} {name:?} contains control characters"
            )));
        }
        if names.len() == SELECTOR_ITEMS_MAX {
            return Err(invalid(format!(
                "more than {SELECTOR_ITEMS_MAX} {what}s in one selector"
            )));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// What a selector of `kind` looks like, for error messages.
fn accepted(kind: SubscriptionType) -> &'static str {
    match kind {
        SubscriptionType::Stream => {
            "a stream id (1..=256 bytes, no control characters) or $all for every event"
        }
        SubscriptionType::EventType => "an event type, or several separated by commas (a,b)",
        SubscriptionType::EventPattern => {
            "a glob on the stream id where * is any run of characters and ? one character \
             (order-*, *-42)"
        }
        SubscriptionType::EventPayload => {
            r#"a JSON object of path: condition, such as {"amount": {"$gt": 100}}"#
        }
        SubscriptionType::Tags => "tags separated by commas, optionally prefixed any: or all:",
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(reason: String) -> StoreError {
    StoreError::invalid(FIELD, reason)
}

#[cfg(test)]
mod tests;
