//! The gateway's access checks, called in-process: per-connection authentication,
//! refusals before routing, and the audit events and counts, with their fields.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use reckon_gater::access::{new_token, token_digest, Authority, ClientEntry, TokenEntry};
use reckon_gater::api::Gater;
use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::telemetry::{self as t, Event, OwnedEvent, Value};
use reckon_gater::tls::Role;
use reckon_gater::{ExpectedVersion, StoreError, StoreRequest};

const STORE: &str = "gater-access";

fn ctx() -> tarpc::context::Context {
    tarpc::context::current()
}

fn delete() -> StoreRequest {
    StoreRequest::DeleteStream {
        stream_id: "s".into(),
        hard: true,
        expected: ExpectedVersion::Any,
    }
}

fn field<'a>(e: &'a OwnedEvent, k: &str) -> Option<&'a str> {
    e.get(k).and_then(Value::as_str)
}

#[tokio::test]
async fn refusals_and_admin_actions_are_audited_per_connection() {
    let seen: Arc<Mutex<Vec<OwnedEvent>>> = Arc::default();
    let sink = seen.clone();
    t::attach(
        "gater-access-test",
        &["reckon_db.gater"],
        move |e: &Event<'_>| {
            if e.get("store").and_then(Value::as_str) == Some(STORE) {
                sink.lock().unwrap().push(e.to_owned_event());
            }
        },
    )
    .unwrap();
    let (reader, ops) = (new_token(), new_token());
    let authority = Authority::new(
        &[
            TokenEntry {
                name: "reader".into(),
                hash: token_digest(&reader),
                grants: vec![format!("{STORE}:read")],
            },
            TokenEntry {
                name: "ops".into(),
                hash: token_digest(&ops),
                grants: vec![format!("{STORE}:admin")],
            },
        ],
        &[ClientEntry {
            name: "billing".into(),
            grants: vec![format!("{STORE}:admin")],
        }],
    )
    .unwrap();
    let gw = Gateway::new(GatewayOptions {
        authority: Arc::new(authority),
        ..GatewayOptions::default()
    });

    // A connection that has not authenticated may do nothing but ask for health.
    let anonymous = gw.connection(None);
    let e = anonymous
        .clone()
        .call(ctx(), STORE.into(), delete())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unauthenticated { .. }), "{e:?}");
    assert!(anonymous.clone().list_stores(ctx()).await.is_err());
    anonymous.clone().health(ctx()).await;

    // The reader's connection lacks admin; another connection's token is not its.
    let r = gw.connection(None);
    assert_eq!(
        r.clone()
            .authenticate(ctx(), Some(reader.clone()))
            .await
            .unwrap()
            .name,
        "reader"
    );
    let e = r
        .clone()
        .call(ctx(), STORE.into(), delete())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::PermissionDenied {
            principal: "reader".into(),
            store: STORE.into(),
            action: "delete_stream".into(),
            needs: "admin".into(),
        }
    );
    assert!(matches!(
        anonymous.clone().call(ctx(), STORE.into(), delete()).await,
        Err(StoreError::Unauthenticated { .. })
    ));
    // A wrong token on the reader's connection takes its principal away.
    assert!(r
        .clone()
        .authenticate(ctx(), Some("rkn_wrong".into()))
        .await
        .is_err());
    assert!(matches!(
        r.clone().call(ctx(), STORE.into(), delete()).await,
        Err(StoreError::Unauthenticated { .. })
    ));

    // The admin passes the check (and, with no worker, gets NoWorkers): audited.
    let o = gw.connection(None);
    o.clone().authenticate(ctx(), Some(ops)).await.unwrap();
    let e = o
        .clone()
        .call(ctx(), STORE.into(), delete())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoWorkers { .. }), "{e:?}");

    // A verified client certificate maps onto its [[clients]] grants.
    let cert = gw.connection(Some(Role::Client("billing".into())));
    let e = cert
        .clone()
        .call(ctx(), STORE.into(), delete())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoWorkers { .. }), "{e:?}");

    t::detach("gater-access-test");
    let seen = seen.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            t::GATER_AUTH_FAILED,
            t::GATER_ACCESS_DENIED,
            t::GATER_AUTH_FAILED,
            t::GATER_AUTH_FAILED,
            t::GATER_ADMIN_ACTION,
            t::GATER_ADMIN_ACTION,
        ]
    );
    let denied = &seen[1];
    assert_eq!(field(denied, "principal"), Some("reader"));
    assert_eq!(field(denied, "action"), Some("delete_stream"));
    assert_eq!(field(denied, "needs"), Some("admin"));
    assert_eq!(field(&seen[4], "principal"), Some("ops"));
    assert_eq!(field(&seen[4], "outcome"), Some("NoWorkers"));
    assert_eq!(field(&seen[5], "principal"), Some("billing"));
    let audit = gw.health(ctx()).await.audit;
    // Failures: the anonymous delete and list_stores (the list's event has no store,
    // so the sink above skips it), the second anonymous delete, the wrong token (no
    // store either), the reader's delete after losing its principal.
    assert_eq!(
        (
            audit.auth_failures,
            audit.permission_denied,
            audit.admin_actions
        ),
        (5, 1, 2),
        "{audit:?}"
    );
}
