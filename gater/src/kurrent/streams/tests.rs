use super::*;

#[test]
fn a_wrong_expected_version_answers_in_both_spellings() {
    use append_resp::wrong_expected_version as w;
    let r = wrong_expected_version(ExpectedVersion::Exact(5), Some(0));
    assert_eq!(
        r.current_revision_option,
        Some(w::CurrentRevisionOption::CurrentRevision(0))
    );
    assert_eq!(
        r.expected_revision_option,
        Some(w::ExpectedRevisionOption::ExpectedRevision(5))
    );
    assert_eq!(
        r.current_revision_option_20_6_0,
        Some(w::CurrentRevisionOption2060::CurrentRevision2060(0))
    );
    let r = wrong_expected_version(ExpectedVersion::StreamExists, None);
    assert!(matches!(
        r.current_revision_option,
        Some(w::CurrentRevisionOption::CurrentNoStream(_))
    ));
    assert!(matches!(
        r.expected_revision_option,
        Some(w::ExpectedRevisionOption::ExpectedStreamExists(_))
    ));
}

#[test]
fn a_batchs_error_carries_the_detail_clients_unpack() {
    let e = batch_error(
        &StoreError::WrongExpectedVersion {
            expected: ExpectedVersion::NoStream,
            current: Some(3),
        },
        "s",
    );
    assert_eq!(e.code, tonic::Code::FailedPrecondition as i32);
    let details = e.details.unwrap();
    assert_eq!(
        details.type_url,
        "type.googleapis.com/event_store.client.WrongExpectedVersion"
    );
    let wev = pb::WrongExpectedVersion::decode(details.value.as_slice()).unwrap();
    assert_eq!(
        wev.current_stream_revision_option,
        Some(pb::wrong_expected_version::CurrentStreamRevisionOption::CurrentStreamRevision(3))
    );
    let deleted = batch_error(
        &StoreError::StreamDeleted {
            stream_id: "s".into(),
        },
        "s",
    );
    assert!(deleted
        .details
        .unwrap()
        .type_url
        .ends_with("event_store.client.StreamDeleted"));
    let denied = batch_error(
        &StoreError::PermissionDenied {
            principal: "p".into(),
            store: "default".into(),
            action: "append".into(),
            needs: "write".into(),
        },
        "s",
    );
    assert!(denied
        .details
        .unwrap()
        .type_url
        .ends_with("event_store.client.AccessDenied"));
}

#[test]
fn an_append_gathers_within_its_limits() {
    let id = || Some(convert::uuid_to(Uuid::new_v4(), false));
    let meta: HashMap<String, String> = [("type".to_string(), "t".to_string())].into();
    let mut g = Gathering::new("s".into(), ExpectedVersion::Any);
    g.push(id().as_ref(), &meta, Vec::new(), vec![0; 10])
        .unwrap();
    let e = g
        .push(id().as_ref(), &meta, Vec::new(), vec![0; APPEND_BYTES_MAX])
        .unwrap_err();
    assert!(
        e.to_string().contains("bytes of events in one append"),
        "{e}"
    );
    let mut g = Gathering::new("s".into(), ExpectedVersion::Any);
    for _ in 0..APPEND_EVENTS_MAX {
        g.push(id().as_ref(), &meta, Vec::new(), Vec::new())
            .unwrap();
    }
    let e = g
        .push(id().as_ref(), &meta, Vec::new(), Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("events in one append"), "{e}");
}

#[test]
fn what_is_served_is_advertised() {
    let methods = super::super::edges::supported_methods();
    let has = |service: &str, method: &str| {
        methods
            .methods
            .iter()
            .any(|m| m.service_name == service && m.method_name == method)
    };
    for m in ["read", "append", "batchappend", "delete", "tombstone"] {
        assert!(has("event_store.client.streams.streams", m), "{m}");
    }
    assert!(has("event_store.client.gossip.gossip", "read"));
    assert!(!has("event_store.client.streams.streams", "subscribe"));
}
