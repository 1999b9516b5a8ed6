//! Properties of the subscription matcher, [`Matcher`]: for random events and random
//! selectors of each subscription type, `Matcher::matches` agrees with a plain
//! in-memory filter.
//!
//! The reference filter below is the selector syntax of `reckon_node::matcher`'s
//! module docs written as naively as possible: a recursive glob over characters, a
//! recursive path lookup, numbers compared as `f64` (exact for the small numbers drawn
//! here). It shares no code with the matcher, and it reads each selector in the
//! structured form it was drawn in, while the matcher reads the string that form is
//! rendered to, so a difference is a bug in one of parsing, rendering or matching.
//!
//! Draws are kept small (short stream ids over a few characters, a few types, tags
//! and JSON keys) so that events and selectors collide often and both outcomes of a
//! match are common.

use std::cmp::Ordering;

use proptest::prelude::*;
use proptest::test_runner::Config;
use reckon_gater::types::{ContentType, EventRecord, SubscriptionType};
use reckon_node::matcher::Matcher;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Cases per property; each case checks every event of its batch.
const CASES: u32 = 500;
/// Most events drawn per case.
const EVENTS_MAX: usize = 16;

/// Stream id characters: `[`, `{` and `\` must be literal in patterns; `é` is two
/// bytes but one character for `?`; `?` appears in ids so that a pattern's `?` can
/// match it.
const ID_CHARS: &[char] = &['a', 'b', '-', '1', '[', ']', '{', '\\', 'é', '?', '/'];
const TYPES: &[&str] = &["A", "B", "C", "Ab"];
const TAGS: &[&str] = &["x", "y", "z", "w"];
const KEYS: &[&str] = &["a", "b", "c"];
const STRINGS: &[&str] = &["", "a", "b", "ab", "B", "é"];

// ---------------------------------------------------------------------------------
// Events.

/// How an event's data is stored.
#[derive(Debug, Clone)]
enum Data {
    /// A JSON object (most events).
    Object(Map<String, Value>),
    /// JSON that is not an object.
    NotObject(Value),
    /// A JSON object's bytes, marked binary.
    Binary(Map<String, Value>),
    /// Bytes marked JSON that do not parse.
    Garbage,
}

fn stream_id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ID_CHARS), 1..6).prop_map(String::from_iter)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..=3).prop_map(Value::from),
        prop::sample::select(&[0.5, 1.0, 2.0, -1.5][..]).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_string)
}

/// A JSON value: mostly leaves, sometimes a small array, an object of leaves, or an
/// object of such objects (so that two-key paths find something).
fn value() -> impl Strategy<Value = Value> {
    let object_of = |inner: BoxedStrategy<Value>| {
        prop::collection::btree_map(key(), inner, 1..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    };
    prop_oneof![
        5 => leaf(),
        1 => prop::collection::vec(leaf(), 0..3).prop_map(Value::Array),
        2 => object_of(leaf().boxed()),
        1 => object_of(object_of(leaf().boxed()).boxed()),
    ]
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), value(), 1..4).prop_map(|m| m.into_iter().collect())
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        8 => object().prop_map(Data::Object),
        1 => value().prop_map(Data::NotObject),
        1 => object().prop_map(Data::Binary),
        1 => Just(Data::Garbage),
    ]
}

fn event() -> impl Strategy<Value = EventRecord> {
    (
        stream_id(),
        prop::sample::select(TYPES),
        data(),
        prop::collection::vec(prop::sample::select(TAGS), 0..3),
    )
        .prop_map(|(stream_id, event_type, data, tags)| {
            let (content_type, data) = match data {
                Data::Object(m) => (ContentType::Json, Value::Object(m).to_string().into_bytes()),
                Data::NotObject(v) => (ContentType::Json, v.to_string().into_bytes()),
                Data::Binary(m) => (
                    ContentType::Binary,
                    Value::Object(m).to_string().into_bytes(),
                ),
                Data::Garbage => (ContentType::Json, b"{\"a\": ".to_vec()),
            };
            EventRecord {
                stream_id,
                version: 0,
                position: 0,
                event_id: Uuid::nil(),
                event_type: event_type.to_string(),
                data,
                metadata: Vec::new(),
                content_type,
                tags: tags.into_iter().map(str::to_string).collect(),
                timestamp_us: 0,
            }
        })
}

fn events() -> impl Strategy<Value = Vec<EventRecord>> {
    prop::collection::vec(event(), 1..EVENTS_MAX)
}

/// Events, some of them on the given streams (so that selectors derived from a stream
/// id have events to match).
fn events_on(streams: Vec<String>) -> impl Strategy<Value = Vec<EventRecord>> {
    events().prop_map(move |mut events| {
        for (e, s) in events.iter_mut().zip(&streams) {
            e.stream_id = s.clone();
        }
        events
    })
}

// ---------------------------------------------------------------------------------
// The reference filter.

/// Whether the whole of `s` matches the glob `p`: `*` any run, `?` one character,
/// everything else itself.
fn glob(p: &[char], s: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('*', rest)) => glob(rest, s) || (!s.is_empty() && glob(p, &s[1..])),
        Some(('?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// The value at `path` in `v`, following object keys.
fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    match path.split_first() {
        None => Some(v),
        Some((k, rest)) => match v {
            Value::Object(m) => m.get(k).and_then(|x| get(x, rest)),
            _ => None,
        },
    }
}

/// Deep equality, numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && (0..x.len()).all(|i| same(&x[i], &y[i]))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.keys().all(|k| y.contains_key(k) && same(&x[k], &y[k]))
        }
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// An `event_payload` operator as drawn.
#[derive(Debug, Clone)]
enum Op {
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    Ne(Value),
    In(Vec<Value>),
    Exists(bool),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Gt(_) => "$gt",
            Op::Gte(_) => "$gte",
            Op::Lt(_) => "$lt",
            Op::Lte(_) => "$lte",
            Op::Ne(_) => "$ne",
            Op::In(_) => "$in",
            Op::Exists(_) => "$exists",
        }
    }

    fn arg(&self) -> Value {
        match self {
            Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) | Op::Ne(v) => v.clone(),
            Op::In(vs) => Value::Array(vs.clone()),
            Op::Exists(b) => Value::Bool(*b),
        }
    }

    fn holds(&self, found: Option<&Value>) -> bool {
        match self {
            Op::Gt(b) => found.and_then(|v| order(v, b)) == Some(Ordering::Greater),
            Op::Gte(b) => matches!(
                found.and_then(|v| order(v, b)),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt(b) => found.and_then(|v| order(v, b)) == Some(Ordering::Less),
            Op::Lte(b) => matches!(
                found.and_then(|v| order(v, b)),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::Ne(x) => match found {
                None => true,
                Some(v) => !same(v, x),
            },
            Op::In(xs) => match found {
                None => false,
                Some(v) => xs.iter().any(|x| same(v, x)),
            },
            Op::Exists(want) => found.is_some() == *want,
        }
    }
}

/// An `event_payload` condition as drawn.
#[derive(Debug, Clone)]
enum Cond {
    Equals(Value),
    /// Distinct operator names.
    Ops(Vec<Op>),
}

/// A selector as drawn, with its rendering for the matcher.
#[derive(Debug, Clone)]
enum Selector {
    AllStreams,
    Stream(String),
    Types(Vec<String>),
    Pattern(String),
    Payload(Vec<(Vec<String>, Cond)>),
    Tags { all: bool, tags: Vec<String> },
}

impl Selector {
    fn passes(&self, e: &EventRecord) -> bool {
        match self {
            Selector::AllStreams => true,
            Selector::Stream(s) => e.stream_id == *s,
            Selector::Types(ts) => ts.contains(&e.event_type),
            Selector::Pattern(p) => {
                let p: Vec<char> = p.chars().collect();
                let s: Vec<char> = e.stream_id.chars().collect();
                glob(&p, &s)
            }
            Selector::Payload(conds) => {
                if e.content_type != ContentType::Json {
                    return false;
                }
                let data: Value = match serde_json::from_slice(&e.data) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return false,
                };
                conds.iter().all(|(path, cond)| {
                    let found = get(&data, path);
                    match cond {
                        Cond::Equals(x) => found.is_some_and(|v| same(v, x)),
                        Cond::Ops(ops) => ops.iter().all(|op| op.holds(found)),
                    }
                })
            }
            Selector::Tags { all: true, tags } => tags.iter().all(|t| e.tags.contains(t)),
            Selector::Tags { all: false, tags } => tags.iter().any(|t| e.tags.contains(t)),
        }
    }
}

// ---------------------------------------------------------------------------------
// Selectors, drawn and rendered.

/// A selector as drawn, with the string the matcher parses.
type Rendered = (Selector, String);

/// A selector and the events to try it on.
type Case = (Rendered, Vec<EventRecord>);

/// How a comma-separated list is written.
#[derive(Debug, Clone, Copy)]
enum Spacing {
    Tight,
    /// `a, b`: whitespace around names is ignored.
    Spaced,
}

fn join(names: &[String], spacing: Spacing) -> String {
    match spacing {
        Spacing::Tight => names.join(","),
        Spacing::Spaced => names.join(" , "),
    }
}

fn stream_selector() -> impl Strategy<Value = Rendered> {
    prop_oneof![
        1 => Just((Selector::AllStreams, "$all".to_string())),
        4 => stream_id().prop_map(|s| (Selector::Stream(s.clone()), s)),
    ]
}

fn types_selector() -> impl Strategy<Value = Rendered> {
    (
        prop::collection::vec(prop::sample::select(TYPES), 1..4),
        prop_oneof![Just(Spacing::Tight), Just(Spacing::Spaced)],
    )
        .prop_map(|(ts, spacing)| {
            let ts: Vec<String> = ts.into_iter().map(str::to_string).collect();
            let rendered = join(&ts, spacing);
            (Selector::Types(ts), rendered)
        })
}

fn tags_selector() -> impl Strategy<Value = Rendered> {
    (
        prop::collection::vec(prop::sample::select(TAGS), 1..4),
        0..3u8,
        prop_oneof![Just(Spacing::Tight), Just(Spacing::Spaced)],
    )
        .prop_map(|(ts, prefix, spacing)| {
            let tags: Vec<String> = ts.into_iter().map(str::to_string).collect();
            let list = join(&tags, spacing);
            let (all, rendered) = match prefix {
                0 => (false, list),
                1 => (false, format!("any:{list}")),
                _ => (true, format!("all:{list}")),
            };
            (Selector::Tags { all, tags }, rendered)
        })
}

/// A random glob over the id characters, `*` and `?`.
fn random_pattern() -> impl Strategy<Value = String> {
    let mut chars = ID_CHARS.to_vec();
    chars.retain(|c| *c != '?');
    let token = prop_oneof![
        3 => prop::sample::select(chars),
        1 => Just('*'),
        1 => Just('?'),
    ];
    prop::collection::vec(token, 1..7).prop_map(String::from_iter)
}

/// A glob made from a stream id by turning some characters into `?` or `*` and
/// adding some `*`, so that it matches that id and ids like it.
fn derived_pattern(id: &str, edits: &[u8]) -> String {
    let mut p = String::new();
    for (c, edit) in id.chars().zip(edits.iter().chain(std::iter::repeat(&0))) {
        match edit {
            1 => p.push('?'),
            2 => p.push('*'),
            3 => {
                p.push('*');
                p.push(c);
            }
            4 => {
                p.push(c);
                p.push_str("**");
            }
            _ => p.push(c),
        }
    }
    p
}

fn pattern_case() -> impl Strategy<Value = Case> {
    prop_oneof![
        (random_pattern(), events())
            .prop_map(|(p, events)| ((Selector::Pattern(p.clone()), p), events)),
        (stream_id(), prop::collection::vec(0..6u8, 6)).prop_flat_map(|(id, edits)| {
            let p = derived_pattern(&id, &edits);
            (
                Just((Selector::Pattern(p.clone()), p)),
                events_on(vec![id, "a".to_string()]),
            )
        }),
    ]
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => prop::collection::vec(key(), 1..2),
        2 => prop::collection::vec(key(), 2..3),
        1 => prop::collection::vec(key(), 3..4),
    ]
}

fn bound() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i64..=3).prop_map(Value::from),
        prop::sample::select(&[0.5, 1.0, 2.0, -1.5][..]).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        bound().prop_map(Op::Gt),
        bound().prop_map(Op::Gte),
        bound().prop_map(Op::Lt),
        bound().prop_map(Op::Lte),
        value().prop_map(Op::Ne),
        prop::collection::vec(value(), 0..3).prop_map(Op::In),
        any::<bool>().prop_map(Op::Exists),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        1 => value().prop_map(Cond::Equals),
        3 => prop::collection::vec(op(), 1..3).prop_map(|ops| {
            let mut distinct: Vec<Op> = Vec::new();
            for op in ops {
                if !distinct.iter().any(|d| d.name() == op.name()) {
                    distinct.push(op);
                }
            }
            Cond::Ops(distinct)
        }),
    ]
}

/// The selector for these conditions, rendered as a JSON object.
fn payload_selector(conds: Vec<(Vec<String>, Cond)>) -> Rendered {
    // One condition per path: a JSON object cannot hold a key twice.
    let mut distinct: Vec<(Vec<String>, Cond)> = Vec::new();
    for (path, cond) in conds {
        if !distinct.iter().any(|(p, _)| *p == path) {
            distinct.push((path, cond));
        }
    }
    let mut rendered = Map::new();
    for (path, cond) in &distinct {
        let condition = match cond {
            Cond::Equals(v) => v.clone(),
            Cond::Ops(ops) => Value::Object(
                ops.iter()
                    .map(|op| (op.name().to_string(), op.arg()))
                    .collect(),
            ),
        };
        rendered.insert(path.join("."), condition);
    }
    (
        Selector::Payload(distinct),
        Value::Object(rendered).to_string(),
    )
}

/// Every path in an event's data (when it is a JSON object) with its value.
fn paths_in(e: &EventRecord) -> Vec<(Vec<String>, Value)> {
    fn walk(prefix: &[String], v: &Value, out: &mut Vec<(Vec<String>, Value)>) {
        if let Value::Object(m) = v {
            for (k, x) in m {
                let mut path = prefix.to_vec();
                path.push(k.clone());
                out.push((path.clone(), x.clone()));
                walk(&path, x, out);
            }
        }
    }
    let mut out = Vec::new();
    if e.content_type == ContentType::Json {
        if let Ok(v) = serde_json::from_slice::<Value>(&e.data) {
            walk(&[], &v, &mut out);
        }
    }
    out
}

/// A condition built from a value the data holds, so that it often holds; with
/// `twin`, numbers are written the other way (`2` as `2.0` and back), which must not
/// change equality.
fn derived_cond(v: Value, how: u8, twin: bool) -> Cond {
    let v = match (&v, twin) {
        (Value::Number(n), true) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i as f64),
            (None, Some(f)) if f.fract() == 0.0 => Value::from(f as i64),
            _ => v,
        },
        _ => v,
    };
    let orders = v.is_number() || v.is_string();
    match how {
        1 if orders => Cond::Ops(vec![Op::Gte(v)]),
        2 if orders => Cond::Ops(vec![Op::Lte(v)]),
        3 => Cond::Ops(vec![Op::In(vec![Value::from("nope"), v])]),
        4 => Cond::Ops(vec![Op::Ne(v)]),
        5 => Cond::Ops(vec![Op::Exists(true)]),
        _ => Cond::Equals(v),
    }
}

/// A payload selector and events: either drawn independently, or with some
/// conditions derived from the first event's data and some drawn.
fn payload_case() -> impl Strategy<Value = Case> {
    prop_oneof![
        (prop::collection::vec((path(), cond()), 1..3), events())
            .prop_map(|(conds, events)| (payload_selector(conds), events)),
        events()
            .prop_flat_map(|events| {
                let pairs = events.first().map(paths_in).unwrap_or_default();
                let derived = if pairs.is_empty() {
                    Just(Vec::new()).boxed()
                } else {
                    prop::collection::vec((0..pairs.len(), 0..6u8, any::<bool>()), 1..3)
                        .prop_map(move |picks| {
                            picks
                                .into_iter()
                                .map(|(i, how, twin)| {
                                    let (path, v) = pairs[i].clone();
                                    (path, derived_cond(v, how, twin))
                                })
                                .collect::<Vec<_>>()
                        })
                        .boxed()
                };
                (
                    Just(events),
                    derived,
                    prop::collection::vec((path(), cond()), 0..2),
                )
            })
            .prop_filter_map("no condition", |(events, mut conds, drawn)| {
                conds.extend(drawn);
                (!conds.is_empty()).then(|| (payload_selector(conds), events))
            }),
    ]
}

// ---------------------------------------------------------------------------------
// The properties.

/// Parses the rendered selector and checks the matcher against the reference on every
/// event, and that `stream_hint` and `is_all` never contradict `matches`.
fn agree(
    kind: SubscriptionType,
    (selector, rendered): &Rendered,
    events: &[EventRecord],
) -> Result<(), TestCaseError> {
    let matcher = Matcher::parse(kind, rendered)
        .map_err(|e| TestCaseError::fail(format!("{kind} {rendered:?} did not parse: {e}")))?;
    for e in events {
        let got = matcher.matches(e);
        prop_assert_eq!(
            got,
            selector.passes(e),
            "{} {} on stream {:?} type {:?} tags {:?} {:?} data {}",
            kind,
            rendered,
            e.stream_id,
            e.event_type,
            e.tags,
            e.content_type,
            String::from_utf8_lossy(&e.data)
        );
        if let Some(stream) = matcher.stream_hint() {
            prop_assert!(
                !got || e.stream_id == stream,
                "hint {stream} for {rendered}"
            );
        }
        if matcher.is_all() {
            prop_assert!(got, "{rendered} claims every event");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    #[test]
    fn stream_selectors_agree(
        (selector, events) in stream_selector()
            .prop_flat_map(|s| {
                let on = match &s.0 {
                    Selector::Stream(id) => vec![id.clone()],
                    _ => Vec::new(),
                };
                (Just(s), events_on(on))
            })
    ) {
        agree(SubscriptionType::Stream, &selector, &events)?;
    }

    #[test]
    fn event_type_selectors_agree(selector in types_selector(), events in events()) {
        agree(SubscriptionType::EventType, &selector, &events)?;
    }

    #[test]
    fn event_pattern_selectors_agree((selector, events) in pattern_case()) {
        agree(SubscriptionType::EventPattern, &selector, &events)?;
    }

    #[test]
    fn event_payload_selectors_agree((selector, events) in payload_case()) {
        agree(SubscriptionType::EventPayload, &selector, &events)?;
    }

    #[test]
    fn tags_selectors_agree(selector in tags_selector(), events in events()) {
        agree(SubscriptionType::Tags, &selector, &events)?;
    }
}

/// The draws are only useful if both outcomes are common: check that, over a fixed
/// number of draws per type, matches and non-matches each make up a fair share.
#[test]
fn draws_give_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut count = |kind: SubscriptionType, case: &dyn Fn(&mut TestRunner) -> Case| {
        let (mut hits, mut total) = (0usize, 0usize);
        for _ in 0..200 {
            let ((selector, _), events) = case(&mut runner);
            total += events.len();
            hits += events.iter().filter(|e| selector.passes(e)).count();
        }
        let share = hits as f64 / total as f64;
        assert!(
            (0.05..=0.95).contains(&share),
            "{kind}: {hits} of {total} events match; the draws are lopsided"
        );
    };
    fn draw<T: std::fmt::Debug>(runner: &mut TestRunner, s: impl Strategy<Value = T>) -> T {
        s.new_tree(runner).expect("draw").current()
    }
    count(SubscriptionType::Stream, &|r| {
        (draw(r, stream_selector()), draw(r, events()))
    });
    count(SubscriptionType::EventType, &|r| {
        (draw(r, types_selector()), draw(r, events()))
    });
    count(SubscriptionType::EventPattern, &|r| draw(r, pattern_case()));
    count(SubscriptionType::EventPayload, &|r| draw(r, payload_case()));
    count(SubscriptionType::Tags, &|r| {
        (draw(r, tags_selector()), draw(r, events()))
    });
}
