//! The gater's own telemetry: a worker registered and deregistered, and a request to
//! a worker that cannot be reached retried until the caller's deadline, then given
//! up, each reported with its fields. Real TCP: the worker's address is a closed
//! loopback port.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reckon_gater::api::{Gater, Registration, WorkerInfo};
use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::telemetry::{self as t, Event, OwnedEvent, Value};
use reckon_gater::types::Role;
use reckon_gater::{ExpectedVersion, NewEvent, StoreRequest};

const STORE: &str = "gater-telemetry";

fn registration(address: &str) -> Registration {
    Registration {
        worker: WorkerInfo {
            node_id: 7,
            store: STORE.into(),
            address: address.into(),
            role: Role::Leader,
            leader: Some(7),
            term: 1,
            last_log_index: 0,
            applied_index: 0,
            leader_changes: 1,
            appended_events: 0,
        },
        sent_us: reckon_gater::auth::now_us(),
        auth: String::new(),
    }
}

fn named<'a>(seen: &'a [OwnedEvent], name: &str) -> Vec<&'a OwnedEvent> {
    seen.iter().filter(|e| e.name == name).collect()
}

#[tokio::test]
async fn registration_retries_and_giving_up_are_reported() {
    let seen: Arc<Mutex<Vec<OwnedEvent>>> = Arc::default();
    let sink = seen.clone();
    t::attach(
        "gater-telemetry-test",
        &["reckon_db.gater"],
        move |e: &Event<'_>| {
            if e.get("store").and_then(Value::as_str) == Some(STORE) {
                sink.lock().unwrap().push(e.to_owned_event());
            }
        },
    )
    .unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let gw = Gateway::new(GatewayOptions::default());
    Gater::register(gw.clone(), tarpc::context::current(), registration(&closed))
        .await
        .unwrap();

    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(1);
    let append = StoreRequest::Append {
        stream_id: "s".into(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent::json("e", &serde_json::json!({}))],
    };
    let err = Gater::call(gw.clone(), ctx, STORE.into(), append)
        .await
        .unwrap_err();
    Gater::deregister(gw.clone(), tarpc::context::current(), registration(&closed))
        .await
        .unwrap();
    assert!(t::detach("gater-telemetry-test"));

    let seen = seen.lock().unwrap();
    let registered = named(&seen, t::GATER_WORKER_REGISTERED);
    assert_eq!(registered.len(), 1, "{seen:?}");
    assert_eq!(registered[0].get("node_id"), Some(&Value::U64(7)));
    assert_eq!(
        registered[0].get("address").and_then(Value::as_str),
        Some(closed.as_str())
    );
    let retries = named(&seen, t::GATER_REQUEST_RETRY);
    assert!(retries.len() >= 2, "retried within the deadline: {seen:?}");
    for r in &retries {
        assert_eq!(r.get("node_id"), Some(&Value::U64(7)), "{r:?}");
        let error = r.get("error").and_then(Value::as_str).unwrap_or_default();
        assert!(error.starts_with("unreachable: "), "{r:?}");
    }
    let exhausted = named(&seen, t::GATER_REQUEST_RETRIES_EXHAUSTED);
    assert_eq!(exhausted.len(), 1, "{seen:?}");
    let attempts = exhausted[0]
        .get("attempts")
        .and_then(Value::as_u64)
        .unwrap();
    assert!(
        attempts as usize >= retries.len(),
        "{exhausted:?} after {} retries",
        retries.len()
    );
    assert_eq!(
        exhausted[0].get("error").and_then(Value::as_str),
        Some(err.kind()),
        "the caller's error is the one reported"
    );
    let unregistered = named(&seen, t::GATER_WORKER_UNREGISTERED);
    assert_eq!(unregistered.len(), 1, "{seen:?}");
    assert_eq!(
        unregistered[0].get("reason").and_then(Value::as_str),
        Some("deregistered")
    );
}
