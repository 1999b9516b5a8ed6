use super::*;

#[test]
fn commit_positions_are_positions_plus_one_and_zero_is_before_everything() {
    assert_eq!(commit_of(0), 1);
    assert_eq!(commit_of(41), 42);
    // A subscription after the head of an empty store (commit 0) starts at 0.
    assert_eq!(after_commit(0), 0);
    // After the event at commit 42 (position 41) comes position 42.
    assert_eq!(after_commit(commit_of(41)), 42);
    assert_eq!(at_commit(commit_of(41)), Some(41));
    assert_eq!(at_commit(0), None);
}

#[test]
fn uuids_round_trip_in_both_spellings() {
    let id = Uuid::parse_str("0190b4c8-1d2e-7f00-8a4b-1234567890ab").unwrap();
    for structured in [false, true] {
        assert_eq!(uuid_from(&uuid_to(id, structured)).unwrap(), id);
    }
    let e = uuid_from(&pb::Uuid {
        value: Some(pb::uuid::Value::String("nope".into())),
    })
    .unwrap_err();
    assert!(e.contains("\"nope\" is not a UUID"), "{e}");
    assert!(uuid_from(&pb::Uuid { value: None }).is_err());
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_proposed_message_becomes_an_event() {
    let id = Uuid::new_v4();
    let e = new_event(
        0,
        Some(&uuid_to(id, false)),
        &meta(&[("type", "placed"), ("content-type", JSON)]),
        b"{\"m\":1}".to_vec(),
        b"{\"a\":1}".to_vec(),
    )
    .unwrap();
    assert_eq!(e.event_id, Some(id));
    assert_eq!(e.event_type, "placed");
    assert_eq!(e.content_type, ContentType::Json);
    assert_eq!(e.metadata, b"{\"m\":1}");
    let binary = new_event(
        0,
        Some(&uuid_to(id, false)),
        &meta(&[("type", "blob"), ("content-type", BINARY)]),
        Vec::new(),
        vec![0, 1, 2],
    )
    .unwrap();
    assert_eq!(binary.content_type, ContentType::Binary);
}

#[test]
fn a_proposed_message_without_id_or_type_is_refused_naming_it() {
    let e = new_event(3, None, &meta(&[("type", "t")]), Vec::new(), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("proposed_messages[3].id"), "{e}");
    let id = uuid_to(Uuid::new_v4(), false);
    let e = new_event(1, Some(&id), &meta(&[]), Vec::new(), Vec::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("proposed_messages[1].metadata[\"type\"]"),
        "{e}"
    );
}

#[test]
fn a_stored_event_reads_back_as_kurrentdb_sends_it() {
    let id = Uuid::new_v4();
    let record = EventRecord {
        stream_id: "order-1".into(),
        version: 4,
        position: 99,
        event_id: id,
        event_type: "placed".into(),
        data: b"{}".to_vec(),
        metadata: b"m".to_vec(),
        content_type: ContentType::Binary,
        tags: Vec::new(),
        timestamp_us: 1_700_000_000_000_001,
    };
    let read = read_event(record, false);
    let e = read.event.unwrap();
    assert_eq!(e.stream_revision, 4);
    assert_eq!((e.commit_position, e.prepare_position), (100, 100));
    assert_eq!(e.metadata["type"], "placed");
    assert_eq!(e.metadata["content-type"], BINARY);
    assert_eq!(e.metadata["created"], "17000000000000010");
    assert_eq!(e.custom_metadata, b"m");
    assert_eq!(uuid_from(&e.id.unwrap()).unwrap(), id);
    assert_eq!(
        read.position,
        Some(read_resp::read_event::Position::CommitPosition(100))
    );
}

#[test]
fn errors_carry_kurrentdb_codes_and_texts() {
    let wrong = StoreError::WrongExpectedVersion {
        expected: ExpectedVersion::Exact(5),
        current: Some(0),
    };
    let s = status_of(&wrong, Some("s-1"));
    assert_eq!(s.code(), Code::FailedPrecondition);
    // The Python client parses exactly this text.
    assert_eq!(
        s.message(),
        "WrongExpectedVersion. Stream: s-1, Expected version: 5, Actual version: 0"
    );
    assert_eq!(
        s.metadata().get("exception").unwrap(),
        "wrong-expected-version"
    );
    let deleted = status_of(
        &StoreError::StreamDeleted {
            stream_id: "s-1".into(),
        },
        Some("s-1"),
    );
    assert!(deleted.message().contains("is deleted"));
    for (e, code) in [
        (StoreError::invalid("f", "r"), Code::InvalidArgument),
        (
            StoreError::NoWorkers {
                store: "default".into(),
            },
            Code::Unavailable,
        ),
        (
            StoreError::Unauthenticated { reason: "r".into() },
            Code::Unauthenticated,
        ),
        (
            StoreError::Timeout { what: "w".into() },
            Code::DeadlineExceeded,
        ),
    ] {
        assert_eq!(status_of(&e, None).code(), code, "{e}");
    }
}
