use super::*;
use crate::kurrent::proto::event_store::client::streams::read_req::options::filter_options::{
    Expression, Filter as Which, Window,
};
use crate::types::ContentType;

fn event(stream: &str, event_type: &str) -> EventRecord {
    EventRecord {
        stream_id: stream.into(),
        version: 0,
        position: 0,
        event_id: uuid::Uuid::nil(),
        event_type: event_type.into(),
        data: Vec::new(),
        metadata: Vec::new(),
        content_type: ContentType::Json,
        tags: Vec::new(),
        timestamp_us: 0,
    }
}

fn options(which: Which) -> FilterOptions {
    FilterOptions {
        checkpoint_interval_multiplier: 5,
        filter: Some(which),
        window: Some(Window::Max(30)),
    }
}

fn expr(regex: &str, prefix: &[&str]) -> Expression {
    Expression {
        regex: regex.into(),
        prefix: prefix.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn prefixes_on_stream_names() {
    let f = Filter::from_options(&options(Which::StreamIdentifier(expr(
        "",
        &["order-", "user-"],
    ))))
    .unwrap();
    assert!(f.matches(&event("order-1", "x")));
    assert!(f.matches(&event("user-7", "x")));
    assert!(!f.matches(&event("cart-1", "order-")));
    assert_eq!(f.checkpoint_every, 150);
}

#[test]
fn the_python_clients_exclude_regex_works_with_its_look_ahead() {
    // What kurrentdbclient sends to leave out system events by default.
    let regex = r"^(?!(\$.+$|PersistentConfig\d+$|Result$))";
    let f = Filter::from_options(&options(Which::EventType(expr(regex, &[])))).unwrap();
    assert!(f.matches(&event("s", "placed")));
    assert!(!f.matches(&event("s", "$metadata")));
    assert!(!f.matches(&event("s", "PersistentConfig1")));
    // And its include form.
    let f =
        Filter::from_options(&options(Which::EventType(expr("^placed|shipped$", &[])))).unwrap();
    assert!(f.matches(&event("s", "placed")));
    assert!(!f.matches(&event("s", "paid")));
}

#[test]
fn bad_filters_are_refused_naming_the_field() {
    let e = Filter::from_options(&options(Which::EventType(expr("(", &[])))).unwrap_err();
    assert!(e.to_string().contains("filter.regex"), "{e}");
    let e = Filter::from_options(&options(Which::EventType(expr("", &[])))).unwrap_err();
    assert!(e.to_string().contains("filter"), "{e}");
    let long = "a".repeat(REGEX_BYTES_MAX + 1);
    let e = Filter::from_options(&options(Which::EventType(expr(&long, &[])))).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
}
