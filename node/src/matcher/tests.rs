//! The matcher's tests: the selector rules row by row, invalid selectors and their
//! reasons.

use super::*;
use serde_json::json;
use uuid::Uuid;

use SubscriptionType::{EventPattern, EventPayload, EventType, Stream, Tags};

fn event(stream_id: &str, event_type: &str, data: Value, tags: &[&str]) -> EventRecord {
    EventRecord {
        stream_id: stream_id.to_string(),
        version: 0,
        position: 0,
        event_id: Uuid::nil(),
        event_type: event_type.to_string(),
        data: serde_json::to_vec(&data).unwrap(),
        metadata: Vec::new(),
        content_type: ContentType::Json,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        timestamp_us: 0,
    }
}

fn on_stream(stream_id: &str) -> EventRecord {
    event(stream_id, "T", json!({}), &[])
}

fn of_type(event_type: &str) -> EventRecord {
    event("s-1", event_type, json!({}), &[])
}

fn with_data(data: Value) -> EventRecord {
    event("s-1", "T", data, &[])
}

fn with_tags(tags: &[&str]) -> EventRecord {
    event("s-1", "T", json!({}), tags)
}

fn parse(kind: SubscriptionType, selector: &str) -> Matcher {
    Matcher::parse(kind, selector)
        .unwrap_or_else(|e| panic!("{kind} selector {selector:?} should parse: {e}"))
}

fn check(rows: &[(SubscriptionType, &str, EventRecord, bool)]) {
    for (kind, selector, e, want) in rows {
        assert_eq!(
            parse(*kind, selector).matches(e),
            *want,
            "{kind} {selector} against stream {:?} type {:?} data {} tags {:?}",
            e.stream_id,
            e.event_type,
            String::from_utf8_lossy(&e.data),
            e.tags,
        );
    }
}

#[test]
fn acceptance_rows() {
    let amount = r#"{"amount": {"$gt": 100}}"#;
    check(&[
        // event_type T: only events of type T.
        (EventType, "T", of_type("T"), true),
        (EventType, "T", of_type("U"), false),
        (EventType, "T", of_type("t"), false),
        // event_pattern order-*: order-1 and order-2, not user-1.
        (EventPattern, "order-*", on_stream("order-1"), true),
        (EventPattern, "order-*", on_stream("order-2"), true),
        (EventPattern, "order-*", on_stream("user-1"), false),
        // event_payload {"amount": {"$gt": 100}}: only data.amount > 100.
        (
            EventPayload,
            amount,
            with_data(json!({"amount": 101})),
            true,
        ),
        (
            EventPayload,
            amount,
            with_data(json!({"amount": 100.5})),
            true,
        ),
        (
            EventPayload,
            amount,
            with_data(json!({"amount": 100})),
            false,
        ),
        (EventPayload, amount, with_data(json!({"amount": 7})), false),
        (
            EventPayload,
            amount,
            with_data(json!({"amount": "150"})),
            false,
        ),
        (
            EventPayload,
            amount,
            with_data(json!({"total": 150})),
            false,
        ),
        // $all: every event.
        (Stream, "$all", on_stream("order-1"), true),
        (Stream, "$all", of_type("anything"), true),
        (Stream, "$all", with_tags(&["x"]), true),
        // subscribe stream S: that stream only.
        (Stream, "S", on_stream("S"), true),
        (Stream, "S", on_stream("S2"), false),
        (Stream, "S", on_stream("s"), false),
    ]);
    assert!(parse(Stream, "$all").is_all());
    assert_eq!(parse(Stream, "$all").stream_hint(), None);
    assert_eq!(parse(Stream, "S").stream_hint(), Some("S"));
    assert!(!parse(Stream, "S").is_all());
}

#[test]
fn event_type_lists() {
    check(&[
        (EventType, "A,B", of_type("A"), true),
        (EventType, "A,B", of_type("B"), true),
        (EventType, "A,B", of_type("C"), false),
        (EventType, " A , B ", of_type("B"), true),
        (EventType, "A,A", of_type("A"), true),
    ]);
    assert_eq!(
        parse(EventType, "A, B,A"),
        Matcher::EventTypes(vec!["A".into(), "B".into()])
    );
}

#[test]
fn event_pattern_globs() {
    check(&[
        (EventPattern, "*-42", on_stream("x-42"), true),
        (EventPattern, "*-42", on_stream("-42"), true),
        (EventPattern, "*-42", on_stream("x-420"), false),
        (EventPattern, "order-*", on_stream("order-"), true),
        (EventPattern, "order-*", on_stream("xorder-1"), false),
        (EventPattern, "user-?", on_stream("user-1"), true),
        (EventPattern, "user-?", on_stream("user-é"), true),
        (EventPattern, "user-?", on_stream("user-10"), false),
        (EventPattern, "user-?", on_stream("user-"), false),
        (EventPattern, "*", on_stream("anything/at all"), true),
        (EventPattern, "**", on_stream("a/b"), true),
        (EventPattern, "a**b", on_stream("ab"), true),
        (EventPattern, "a/**/b", on_stream("a/b"), false),
        (EventPattern, "a/**/b", on_stream("a//b"), true),
        (EventPattern, "*a*a", on_stream("aaa"), true),
        (EventPattern, "*a*a", on_stream("aab"), false),
        (EventPattern, "?*?", on_stream("ab"), true),
        (EventPattern, "?*?", on_stream("a"), false),
        // Nothing but * and ? is special.
        (EventPattern, "[ab]-1", on_stream("[ab]-1"), true),
        (EventPattern, "[ab]-1", on_stream("a-1"), false),
        (EventPattern, "{a,b}-*", on_stream("{a,b}-1"), true),
        (EventPattern, "{a,b}-*", on_stream("a-1"), false),
        (EventPattern, r"a\*", on_stream(r"a\xyz"), true),
        (EventPattern, r"a\*", on_stream("a*"), false),
        (EventPattern, "[!a]", on_stream("[!a]"), true),
        (EventPattern, "[!a]", on_stream("b"), false),
        (EventPattern, "order-1", on_stream("order-1"), true),
        (EventPattern, "order-1", on_stream("order-10"), false),
    ]);
    assert_eq!(
        parse(EventPattern, "order-1").stream_hint(),
        Some("order-1")
    );
    assert_eq!(parse(EventPattern, "order-?").stream_hint(), None);
    assert_eq!(parse(EventPattern, "order-*").stream_hint(), None);
    assert!(parse(EventPattern, "*").is_all());
    assert!(parse(EventPattern, "***").is_all());
    assert!(!parse(EventPattern, "*?").is_all());
}

#[test]
fn payload_operators() {
    let d = with_data;
    check(&[
        // Plain equality.
        (EventPayload, r#"{"a": 1}"#, d(json!({"a": 1})), true),
        (EventPayload, r#"{"a": 1}"#, d(json!({"a": 1.0})), true),
        (EventPayload, r#"{"a": 1}"#, d(json!({"a": "1"})), false),
        (EventPayload, r#"{"a": 1}"#, d(json!({"b": 1})), false),
        (EventPayload, r#"{"a": null}"#, d(json!({"a": null})), true),
        (EventPayload, r#"{"a": null}"#, d(json!({})), false),
        (
            EventPayload,
            r#"{"a": [1, "x"]}"#,
            d(json!({"a": [1, "x"]})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": [1, "x"]}"#,
            d(json!({"a": ["x", 1]})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"b": 1}}"#,
            d(json!({"a": {"b": 1.0}})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"b": 1}}"#,
            d(json!({"a": {"b": 1, "c": 2}})),
            false,
        ),
        (EventPayload, r#"{"a": {}}"#, d(json!({"a": {}})), true),
        // $gt, $gte, $lt, $lte on numbers.
        (
            EventPayload,
            r#"{"n": {"$gte": 5}}"#,
            d(json!({"n": 5})),
            true,
        ),
        (
            EventPayload,
            r#"{"n": {"$gte": 5}}"#,
            d(json!({"n": 4.99})),
            false,
        ),
        (
            EventPayload,
            r#"{"n": {"$lt": 5}}"#,
            d(json!({"n": -1})),
            true,
        ),
        (
            EventPayload,
            r#"{"n": {"$lt": 5}}"#,
            d(json!({"n": 5})),
            false,
        ),
        (
            EventPayload,
            r#"{"n": {"$lte": 5}}"#,
            d(json!({"n": 5.0})),
            true,
        ),
        (
            EventPayload,
            r#"{"n": {"$lte": 5}}"#,
            d(json!({"n": 6})),
            false,
        ),
        (
            EventPayload,
            r#"{"n": {"$gt": -1}}"#,
            d(json!({"n": 0})),
            true,
        ),
        (
            EventPayload,
            r#"{"n": {"$gt": 9223372036854775807}}"#,
            d(json!({"n": 18446744073709551615u64})),
            true,
        ),
        // Several operators on one path: all must hold.
        (
            EventPayload,
            r#"{"n": {"$gt": 1, "$lt": 3}}"#,
            d(json!({"n": 2})),
            true,
        ),
        (
            EventPayload,
            r#"{"n": {"$gt": 1, "$lt": 3}}"#,
            d(json!({"n": 3})),
            false,
        ),
        // Strings compare lexicographically; mixed types never match.
        (
            EventPayload,
            r#"{"s": {"$gt": "b"}}"#,
            d(json!({"s": "ba"})),
            true,
        ),
        (
            EventPayload,
            r#"{"s": {"$gt": "b"}}"#,
            d(json!({"s": "B"})),
            false,
        ),
        (
            EventPayload,
            r#"{"s": {"$lte": "b"}}"#,
            d(json!({"s": "a"})),
            true,
        ),
        (
            EventPayload,
            r#"{"s": {"$gt": "b"}}"#,
            d(json!({"s": 5})),
            false,
        ),
        (
            EventPayload,
            r#"{"s": {"$lt": 5}}"#,
            d(json!({"s": "1"})),
            false,
        ),
        (
            EventPayload,
            r#"{"s": {"$lt": 5}}"#,
            d(json!({"s": null})),
            false,
        ),
        (EventPayload, r#"{"s": {"$lt": 5}}"#, d(json!({})), false),
        // $ne: an absent path counts as not equal.
        (
            EventPayload,
            r#"{"a": {"$ne": 1}}"#,
            d(json!({"a": 2})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"$ne": 1}}"#,
            d(json!({"a": 1.0})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"$ne": 1}}"#,
            d(json!({"a": "1"})),
            true,
        ),
        (EventPayload, r#"{"a": {"$ne": 1}}"#, d(json!({})), true),
        (
            EventPayload,
            r#"{"a": {"$ne": [1]}}"#,
            d(json!({"a": [1]})),
            false,
        ),
        // $in: equal to any element.
        (
            EventPayload,
            r#"{"a": {"$in": [1, "x"]}}"#,
            d(json!({"a": "x"})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"$in": [1, "x"]}}"#,
            d(json!({"a": 1.0})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"$in": [1, "x"]}}"#,
            d(json!({"a": 2})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"$in": [1, "x"]}}"#,
            d(json!({})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"$in": []}}"#,
            d(json!({"a": 1})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"$in": [{"b": 1}]}}"#,
            d(json!({"a": {"b": 1}})),
            true,
        ),
        // $exists.
        (
            EventPayload,
            r#"{"a": {"$exists": true}}"#,
            d(json!({"a": null})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"$exists": true}}"#,
            d(json!({"b": 1})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": {"$exists": false}}"#,
            d(json!({"b": 1})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": {"$exists": false}}"#,
            d(json!({"a": 0})),
            false,
        ),
        // Several keys: all must hold.
        (
            EventPayload,
            r#"{"a": 1, "b": {"$gt": 2}}"#,
            d(json!({"a": 1, "b": 3})),
            true,
        ),
        (
            EventPayload,
            r#"{"a": 1, "b": {"$gt": 2}}"#,
            d(json!({"a": 1, "b": 2})),
            false,
        ),
        (
            EventPayload,
            r#"{"a": 1, "b": {"$gt": 2}}"#,
            d(json!({"a": 2, "b": 3})),
            false,
        ),
    ]);
}

#[test]
fn payload_nested_paths() {
    let d = with_data;
    let country = r#"{"customer.country": "NL"}"#;
    check(&[
        (
            EventPayload,
            country,
            d(json!({"customer": {"country": "NL"}})),
            true,
        ),
        (
            EventPayload,
            country,
            d(json!({"customer": {"country": "BE"}})),
            false,
        ),
        (EventPayload, country, d(json!({"customer": "NL"})), false),
        (
            EventPayload,
            country,
            d(json!({"customer.country": "NL"})),
            false,
        ),
        (
            EventPayload,
            country,
            d(json!({"customer": [{"country": "NL"}]})),
            false,
        ),
        (
            EventPayload,
            r#"{"a.b.c": {"$gte": 1}}"#,
            d(json!({"a": {"b": {"c": 1}}})),
            true,
        ),
        (
            EventPayload,
            r#"{"a.b.c": {"$gte": 1}}"#,
            d(json!({"a": {"b": 1}})),
            false,
        ),
        (
            EventPayload,
            r#"{"a.b": {"$exists": false}}"#,
            d(json!({"a": 1})),
            true,
        ),
        (
            EventPayload,
            r#"{"a.b": {"$ne": 1}}"#,
            d(json!({"a": {"c": 1}})),
            true,
        ),
    ]);
}

#[test]
fn payload_only_matches_json_objects() {
    let m = parse(EventPayload, r#"{"a": {"$exists": false}}"#);
    assert!(m.matches(&with_data(json!({}))));
    for data in [json!([1]), json!(5), json!("x"), json!(null)] {
        assert!(!m.matches(&with_data(data.clone())), "data {data}");
    }
    let mut binary = with_data(json!({}));
    binary.content_type = ContentType::Binary;
    assert!(!m.matches(&binary), "binary content");
    let mut broken = with_data(json!({}));
    broken.data = b"{not json".to_vec();
    assert!(!m.matches(&broken), "invalid JSON data");
    let mut spaced = with_data(json!({}));
    spaced.data = b"  \n {}".to_vec();
    assert!(m.matches(&spaced), "leading whitespace");
}

#[test]
fn tags_any_and_all() {
    check(&[
        (Tags, "x,y", with_tags(&["y"]), true),
        (Tags, "x,y", with_tags(&["z"]), false),
        (Tags, "any:x,y", with_tags(&["x", "z"]), true),
        (Tags, "any:x,y", with_tags(&[]), false),
        (Tags, "all:x,y", with_tags(&["y", "z", "x"]), true),
        (Tags, "all:x,y", with_tags(&["x"]), false),
        (Tags, "all:x", with_tags(&[]), false),
        (Tags, "x", with_tags(&[]), false),
        (Tags, " all:x", with_tags(&["all:x"]), true),
        (Tags, "any:all:x", with_tags(&["all:x"]), true),
        (Tags, "any:all:x", with_tags(&["x"]), false),
    ]);
    assert_eq!(
        parse(Tags, "all: x ,y,x"),
        Matcher::Tags {
            mode: TagMatch::All,
            tags: vec!["x".into(), "y".into()]
        }
    );
}

#[test]
fn invalid_selectors() {
    let long_stream = "s".repeat(257);
    let long_pattern = "*".repeat(PATTERN_BYTES_MAX + 1);
    let too_many_types = vec!["t"; SELECTOR_ITEMS_MAX + 1]
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{t}{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let huge = format!(r#"{{"a": "{}"}}"#, "x".repeat(SELECTOR_BYTES_MAX));
    let rows: &[(SubscriptionType, &str, &str)] = &[
        // Empty selectors, of every type.
        (Stream, "", "empty"),
        (Stream, "  ", "empty"),
        (EventType, "", "empty"),
        (EventPattern, "", "empty"),
        (EventPayload, "", "empty"),
        (EventPayload, " \n", "empty"),
        (Tags, "", "empty"),
        // stream: validated like a stream id.
        (Stream, &long_stream, "257 bytes"),
        (Stream, "a\nb", "control characters"),
        // event_type and tags: empty names.
        (EventType, "a,,b", "event type 2 of \"a,,b\" is empty"),
        (EventType, "a,", "event type 2"),
        (EventType, ",", "empty"),
        (EventType, "a\u{7}", "control characters"),
        (EventType, &too_many_types, "more than 256 event types"),
        (Tags, "x,", "tag 2 of \"x,\" is empty"),
        (Tags, "all:", "tag 1 of \"\" is empty"),
        (Tags, "any:x, ,y", "tag 2"),
        (Tags, "all:,x", "tag 1"),
        // event_pattern.
        (EventPattern, &long_pattern, "limit is 1024"),
        (EventPattern, "a\tb", "control characters"),
        // event_payload: bad JSON, not an object, no conditions.
        (EventPayload, "{", "not valid JSON"),
        (EventPayload, r#"{"a": 1"#, "not valid JSON"),
        (EventPayload, "amount > 100", "not valid JSON"),
        (EventPayload, "[1]", "is an array, not a JSON object"),
        (EventPayload, "5", "is a number, not a JSON object"),
        (EventPayload, r#""a""#, "is a string, not a JSON object"),
        (EventPayload, "null", "is null, not a JSON object"),
        (EventPayload, "{}", "has no conditions"),
        (EventPayload, &huge, "the limit is 4096"),
        // event_payload: bad paths.
        (EventPayload, r#"{"": 1}"#, "empty key"),
        (EventPayload, r#"{"a..b": 1}"#, "empty key"),
        (EventPayload, r#"{".a": 1}"#, "empty key"),
        (EventPayload, r#"{"a.": 1}"#, "empty key"),
        (
            EventPayload,
            r#"{"$or": [{"a": 1}]}"#,
            "top-level operators",
        ),
        // event_payload: bad operators.
        (
            EventPayload,
            r#"{"a": {"$regex": "x"}}"#,
            "unknown operator \"$regex\" on \"a\"",
        ),
        (
            EventPayload,
            r#"{"a": {"$gt": 1, "$foo": 2}}"#,
            "unknown operator \"$foo\"",
        ),
        (
            EventPayload,
            r#"{"a": {"$eq": 1}}"#,
            "accepted: $gt, $gte, $lt, $lte, $ne, $in, $exists",
        ),
        (
            EventPayload,
            r#"{"a": {"$in": 1}}"#,
            "$in on \"a\" takes an array of values, got a number",
        ),
        (
            EventPayload,
            r#"{"a": {"$in": {"x": 1}}}"#,
            "$in on \"a\" takes an array",
        ),
        (
            EventPayload,
            r#"{"a": {"$exists": 1}}"#,
            "$exists on \"a\" takes true or false",
        ),
        (
            EventPayload,
            r#"{"a": {"$gt": true}}"#,
            "$gt on \"a\" takes a number or a string, got a boolean",
        ),
        (
            EventPayload,
            r#"{"a": {"$lte": [1]}}"#,
            "$lte on \"a\" takes a number or a string",
        ),
        (
            EventPayload,
            r#"{"a": {"$lt": null}}"#,
            "takes a number or a string, got null",
        ),
        (EventPayload, r#"{"a": {"$gte": {}}}"#, "got an object"),
        (
            EventPayload,
            r#"{"a": {"$gt": 1, "b": 2}}"#,
            "mixes operators with the plain key \"b\"",
        ),
    ];
    for (kind, selector, want) in rows {
        match Matcher::parse(*kind, selector) {
            Err(StoreError::InvalidInput { field, reason }) => {
                assert_eq!(field, "selector", "{kind} {selector:?}");
                assert!(
                    reason.contains(want),
                    "{kind} {selector:?}: reason {reason:?} should contain {want:?}"
                );
            }
            other => panic!("{kind} {selector:?} should be InvalidInput, got {other:?}"),
        }
    }
}

#[test]
fn empty_selector_reasons_say_what_is_accepted() {
    for kind in SubscriptionType::ALL {
        let Err(e) = Matcher::parse(kind, "") else {
            panic!("{kind}: empty selector accepted");
        };
        let reason = e.to_string();
        assert!(reason.contains("expected"), "{kind}: {reason}");
        assert!(reason.contains(accepted(kind)), "{kind}: {reason}");
    }
}

#[test]
fn valid_edge_selectors() {
    // System streams other than $all are ordinary stream ids.
    assert_eq!(
        parse(Stream, "$ce-order"),
        Matcher::Stream("$ce-order".into())
    );
    assert_eq!(
        parse(Stream, &"s".repeat(256)).stream_hint().map(str::len),
        Some(256)
    );
    // Object values without $ keys are plain values, even empty ones.
    assert!(parse(EventPayload, r#"{"a": {"b": {"$c": 1}}}"#)
        .matches(&with_data(json!({"a": {"b": {"$c": 1}}}))));
    assert!(!parse(EventPayload, r#"{"a": 1}"#).is_all());
    assert_eq!(parse(EventType, "A").stream_hint(), None);
    assert_eq!(parse(Tags, "x").stream_hint(), None);
}

#[test]
fn subscription_type_spellings() {
    for kind in SubscriptionType::ALL {
        assert_eq!(kind.as_str().parse::<SubscriptionType>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        let dashed = kind.as_str().replace('_', "-");
        assert_eq!(dashed.parse::<SubscriptionType>(), Ok(kind), "{dashed}");
    }
    assert_eq!("event-type".parse(), Ok(EventType));
    assert_eq!("event_payload".parse(), Ok(EventPayload));
    assert_eq!("Tags".parse(), Ok(Tags));
    for bad in ["", "streams", "event type", "eventtype", "all"] {
        let err = bad.parse::<SubscriptionType>().unwrap_err();
        assert!(err.contains("event_pattern"), "{bad}: {err}");
    }
}
