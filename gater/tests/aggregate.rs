//! Integration tests of the aggregator (`reckon_gater::aggregate`).

use proptest::prelude::*;
use reckon_gater::aggregate::{
    aggregate, aggregate_records, decode_event_data, finalize, fold_into, foldl, foldr,
};
use reckon_gater::types::{ContentType, EventRecord};
use serde_json::{json, Value};

fn record(version: u64, data: &[u8]) -> EventRecord {
    EventRecord {
        stream_id: "account-1".into(),
        version,
        position: version,
        event_id: Default::default(),
        event_type: "Changed".into(),
        data: data.to_vec(),
        metadata: Vec::new(),
        content_type: ContentType::Json,
        tags: Vec::new(),
        timestamp_us: 0,
    }
}

#[test]
fn foldl_of_no_events_is_empty_object() {
    assert_eq!(foldl(&[]), json!({}));
    assert_eq!(foldr(&[]), json!({}));
    assert_eq!(finalize(foldl(&[])), json!({}));
}

#[test]
fn sum_adds_and_stays_tagged_until_finalize() {
    let events = [
        json!({"count": {"$sum": 1}}),
        json!({"count": {"$sum": 5}}),
        json!({"count": {"$sum": -2}}),
    ];
    let state = foldl(&events);
    assert_eq!(state, json!({"count": {"$sum": 4}}));
    assert_eq!(finalize(state), json!({"count": 4}));
}

#[test]
fn overwrite_chain_keeps_last_value_tagged() {
    let events = [
        json!({"status": {"$overwrite": "new"}}),
        json!({"status": {"$overwrite": "active"}}),
        json!({"status": {"$overwrite": "closed"}}),
    ];
    let state = foldl(&events);
    assert_eq!(state, json!({"status": {"$overwrite": "closed"}}));
    assert_eq!(finalize(state), json!({"status": "closed"}));
}

#[test]
fn plain_values_keep_last_value_untagged() {
    let events = [
        json!({"name": "Alice", "age": 30}),
        json!({"name": "Bob"}),
        json!({"name": "Carol", "city": "Oslo"}),
    ];
    let state = foldl(&events);
    let expected = json!({"name": "Carol", "age": 30, "city": "Oslo"});
    assert_eq!(state, expected);
    // Nothing to unwrap.
    assert_eq!(finalize(state), expected);
}

#[test]
fn finalize_unwraps_sum_and_overwrite_at_top_level_only() {
    let state = json!({
        "total": {"$sum": 5},
        "status": {"$overwrite": {"code": 7}},
        "plain": "x",
        "nested": {"inner": {"$sum": 1}},
        "two_keys": {"$sum": 1, "other": 2},
        "not_numeric_sum": {"$sum": "abc"},
    });
    assert_eq!(
        finalize(state),
        json!({
            "total": 5,
            "status": {"code": 7},
            "plain": "x",
            "nested": {"inner": {"$sum": 1}},
            "two_keys": {"$sum": 1, "other": 2},
            "not_numeric_sum": {"$sum": "abc"},
        })
    );
    // A non-object state is returned unchanged.
    assert_eq!(finalize(json!([1, 2])), json!([1, 2]));
}

#[test]
fn aggregate_without_finalize_keeps_tags() {
    let events = [json!({"n": {"$sum": 2}}), json!({"n": {"$sum": 3}})];
    assert_eq!(
        aggregate(&events, None, json!({}), false),
        json!({"n": {"$sum": 5}})
    );
    assert_eq!(aggregate(&events, None, json!({}), true), json!({"n": 5}));
}

#[test]
fn aggregate_from_snapshot() {
    let snapshot = json!({"name": "Bob", "balance": 500});
    let events = [
        json!({"balance": {"$sum": 100}}),
        json!({"balance": {"$sum": -50}}),
    ];
    // The snapshot replaces the initial state entirely.
    let initial = json!({"ignored": true, "balance": 1});
    let result = aggregate(&events, Some(&snapshot), initial, true);
    assert_eq!(result, json!({"name": "Bob", "balance": 550}));
    assert_eq!(result["balance"], json!(550));
    assert_eq!(result["name"], json!("Bob"));

    let tagged = aggregate(&events, Some(&snapshot), json!({}), false);
    assert_eq!(tagged, json!({"name": "Bob", "balance": {"$sum": 550}}));
}

#[test]
fn aggregate_without_snapshot_starts_from_initial_state() {
    let initial = json!({"balance": {"$sum": 10}, "owner": "Ann"});
    let events = [json!({"balance": {"$sum": 5}})];
    assert_eq!(
        aggregate(&events, None, initial.clone(), true),
        json!({"balance": 15, "owner": "Ann"})
    );
    // A snapshot that is not an object is ignored.
    assert_eq!(
        aggregate(&events, Some(&json!("junk")), initial, true),
        json!({"balance": 15, "owner": "Ann"})
    );
}

#[test]
fn foldr_applies_newest_first_so_oldest_wins() {
    let events = [
        json!({"name": "first"}),
        json!({"name": "second"}),
        json!({"name": "third"}),
    ];
    assert_eq!(foldl(&events), json!({"name": "third"}));
    assert_eq!(foldr(&events), json!({"name": "first"}));
    assert_ne!(foldl(&events), foldr(&events));

    // Sums are order-independent.
    let sums = [json!({"n": {"$sum": 1}}), json!({"n": {"$sum": 2}})];
    assert_eq!(foldl(&sums), foldr(&sums));
    assert_eq!(foldr(&sums), json!({"n": {"$sum": 3}}));
}

#[test]
fn plain_value_after_sum_replaces_it() {
    let events = [json!({"n": {"$sum": 10}}), json!({"n": 3})];
    let state = foldl(&events);
    assert_eq!(state, json!({"n": 3}));
    assert_eq!(finalize(state), json!({"n": 3}));
}

#[test]
fn sum_after_plain_number_adds_to_it() {
    let events = [json!({"n": 3}), json!({"n": {"$sum": 4}})];
    let state = foldl(&events);
    assert_eq!(state, json!({"n": {"$sum": 7}}));
    assert_eq!(finalize(state), json!({"n": 7}));
}

#[test]
fn sum_after_numeric_overwrite_adds_to_it() {
    let events = [json!({"n": {"$overwrite": 3}}), json!({"n": {"$sum": 4}})];
    assert_eq!(foldl(&events), json!({"n": {"$sum": 7}}));
}

#[test]
fn sum_after_non_number_starts_from_zero() {
    let events = [json!({"n": "text"}), json!({"n": {"$sum": 4}})];
    assert_eq!(foldl(&events), json!({"n": {"$sum": 4}}));
}

#[test]
fn malformed_tags_are_plain_values() {
    let events = [
        json!({"a": 1, "b": 1}),
        json!({"a": {"$sum": "x"}, "b": {"$sum": 1, "extra": 0}}),
    ];
    assert_eq!(
        foldl(&events),
        json!({"a": {"$sum": "x"}, "b": {"$sum": 1, "extra": 0}})
    );
}

#[test]
fn non_object_events_are_ignored() {
    let events = [
        json!({"n": {"$sum": 1}}),
        json!(null),
        json!([{"n": {"$sum": 100}}]),
        json!("n"),
        json!(42),
        json!({"n": {"$sum": 1}}),
    ];
    assert_eq!(foldl(&events), json!({"n": {"$sum": 2}}));
}

#[test]
fn fold_into_continues_a_state_and_replaces_non_object_state() {
    let events = [json!({"n": {"$sum": 1}})];
    assert_eq!(
        fold_into(json!({"n": {"$sum": 41}, "k": true}), &events),
        json!({"n": {"$sum": 42}, "k": true})
    );
    assert_eq!(fold_into(json!(7), &events), json!({"n": {"$sum": 1}}));
    assert_eq!(
        fold_into(json!({"k": 1}), std::iter::empty()),
        json!({"k": 1})
    );
}

#[test]
fn integer_overflow_falls_back_to_float() {
    let events = [json!({"n": {"$sum": i64::MAX}}), json!({"n": {"$sum": 1}})];
    let result = finalize(foldl(&events));
    let n = &result["n"];
    assert!(n.is_f64(), "expected a float, got {n}");
    assert_eq!(n.as_f64(), Some(i64::MAX as f64 + 1.0));
}

#[test]
fn non_finite_float_sum_keeps_previous_total() {
    let events = [
        json!({"n": {"$sum": 1.0e308}}),
        json!({"n": {"$sum": 1.0e308}}),
    ];
    assert_eq!(foldl(&events), json!({"n": {"$sum": 1.0e308}}));
}

#[test]
fn float_and_integer_sum_as_float() {
    let events = [json!({"n": {"$sum": 1}}), json!({"n": {"$sum": 0.5}})];
    assert_eq!(finalize(foldl(&events)), json!({"n": 1.5}));
    let ints = [json!({"n": {"$sum": 1}}), json!({"n": {"$sum": 2}})];
    assert!(finalize(foldl(&ints))["n"].is_i64());
}

#[test]
fn decode_event_data_keeps_only_objects() {
    assert_eq!(
        decode_event_data(br#"{"a": {"$sum": 1}}"#),
        Some(json!({"a": {"$sum": 1}}))
    );
    assert_eq!(decode_event_data(b"[1]"), None);
    assert_eq!(decode_event_data(b"12"), None);
    assert_eq!(decode_event_data(b"null"), None);
    assert_eq!(decode_event_data(b""), None);
    assert_eq!(decode_event_data(b"{not json"), None);
    assert_eq!(decode_event_data(&[0xff, 0xfe, 0x00]), None);
}

#[test]
fn aggregate_records_skips_non_object_data() {
    let records = [
        record(0, br#"{"balance": {"$sum": 100}, "name": "Bob"}"#),
        record(1, b"\x00\x01binary"),
        record(2, b"[1, 2, 3]"),
        record(3, br#"{"balance": {"$sum": -25}}"#),
    ];
    assert_eq!(
        aggregate_records(&records, None, json!({}), true),
        json!({"balance": 75, "name": "Bob"})
    );
    assert_eq!(
        aggregate_records(&records, None, json!({}), false),
        json!({"balance": {"$sum": 75}, "name": "Bob"})
    );
    let snapshot = json!({"balance": 1000});
    assert_eq!(
        aggregate_records(&records, Some(&snapshot), json!({}), true),
        json!({"balance": 1075, "name": "Bob"})
    );
}

proptest! {
    #[test]
    fn finalized_foldl_of_sums_is_the_integer_sum(
        increments in prop::collection::vec(-1_000_000_000_000i64..1_000_000_000_000, 0..64)
    ) {
        let events: Vec<Value> = increments
            .iter()
            .map(|n| json!({"total": {"$sum": n}}))
            .collect();
        let result = finalize(foldl(&events));
        if increments.is_empty() {
            prop_assert_eq!(result, json!({}));
        } else {
            let expected: i64 = increments.iter().sum();
            prop_assert_eq!(&result, &json!({"total": expected}));
            prop_assert!(result["total"].is_i64());
            // Integer sums do not depend on the order.
            prop_assert_eq!(finalize(foldr(&events)), result);
        }
    }
}
