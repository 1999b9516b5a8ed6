use super::*;
use crate::certs::{make_ca, make_leaf};

#[test]
fn role_uris_round_trip() {
    for role in [
        Role::Node(3),
        Role::Node(u64::MAX),
        Role::Gater("g-1".into()),
        Role::Client("alice.ops".into()),
    ] {
        assert_eq!(Role::from_uri(&role.uri()), Some(role.clone()), "{role}");
    }
    assert_eq!(Role::Node(3).uri(), "reckon://node/3");
    assert_eq!(Role::Client("a".into()).to_string(), "client a");
}

#[test]
fn what_is_not_a_role_uri() {
    for uri in [
        "reckon://node/0",
        "reckon://node/",
        "reckon://node/+3",
        "reckon://node/3x",
        "reckon://node/99999999999999999999999",
        "reckon://gater/",
        "reckon://gater/a/b",
        "reckon://client/.hidden",
        "reckon://client/has space",
        "reckon://admin/root",
        "reckon:/node/3",
        "https://node/3",
        "reckon://node",
    ] {
        assert_eq!(Role::from_uri(uri), None, "{uri}");
    }
    let long = format!("reckon://client/{}", "a".repeat(NAME_BYTES_MAX + 1));
    assert_eq!(Role::from_uri(&long), None);
}

#[test]
fn which_role_may_use_which_service() {
    let node = Role::Node(1);
    let gater = Role::Gater("g".into());
    let client = Role::Client("c".into());
    let cases = [
        (Some(&node), Service::Raft, true),
        (Some(&gater), Service::Raft, false),
        (Some(&client), Service::Raft, false),
        (None, Service::Raft, false),
        (Some(&node), Service::Worker, true),
        (Some(&gater), Service::Worker, true),
        (Some(&client), Service::Worker, false),
        (None, Service::Worker, false),
        (Some(&node), Service::Gater, true),
        (Some(&gater), Service::Gater, true),
        (Some(&client), Service::Gater, true),
        (None, Service::Gater, true),
    ];
    for (peer, service, allowed) in cases {
        assert_eq!(admits(peer, service), allowed, "{peer:?} -> {service:?}");
    }
    let served = [
        (Some(&node), Service::Raft, true),
        (Some(&gater), Service::Raft, false),
        (Some(&node), Service::Worker, true),
        (Some(&gater), Service::Worker, false),
        (Some(&client), Service::Worker, false),
        (Some(&gater), Service::Gater, true),
        (Some(&node), Service::Gater, true),
        (Some(&client), Service::Gater, false),
        (None, Service::Gater, false),
    ];
    for (server, service, ok) in served {
        assert_eq!(
            serves(server, service),
            ok,
            "{server:?} serving {service:?}"
        );
    }
}

#[test]
fn server_names_come_from_the_host() {
    assert_eq!(
        server_name("127.0.0.1:7700").unwrap(),
        ServerName::try_from("127.0.0.1").unwrap()
    );
    assert_eq!(
        server_name("[::1]:7700").unwrap(),
        ServerName::try_from("::1").unwrap()
    );
    assert_eq!(
        server_name("db-1.example:7600").unwrap(),
        ServerName::try_from("db-1.example").unwrap()
    );
    assert!(server_name("not a host:1").is_err());
}

#[test]
fn loading_names_the_missing_file_and_its_key() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), false).unwrap();
    let node = make_leaf(dir.path(), &Role::Node(1), &["127.0.0.1".into()], false).unwrap();
    let missing = dir.path().join("nope.key");
    let files = TlsFiles {
        ca: dir.path().join("ca.crt"),
        cert: node.cert.clone(),
        key: missing.clone(),
    };
    let e = Tls::load(&files, "tls", PeerCerts::Required)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls.key") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    // A key file given where the certificate should be.
    let files = TlsFiles {
        ca: dir.path().join("ca.crt"),
        cert: node.key.clone(),
        key: node.key.clone(),
    };
    let e = Tls::load(&files, "tls", PeerCerts::Required)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls.cert") && e.contains("certificate"), "{e}");
    assert!(!e.contains("PRIVATE KEY-----"), "no key contents: {e}");
    let e = Tls::client(&ClientTlsFiles {
        ca: dir.path().join("missing-ca.crt"),
        identity: None,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--ca") && e.contains("missing-ca.crt"), "{e}");
}

#[test]
fn a_loaded_identity_knows_its_role() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), false).unwrap();
    let g = make_leaf(
        dir.path(),
        &Role::Gater("edge".into()),
        &["localhost".into()],
        false,
    )
    .unwrap();
    let files = TlsFiles {
        ca: dir.path().join("ca.crt"),
        cert: g.cert,
        key: g.key,
    };
    let tls = Tls::load(&files, "tls", PeerCerts::Optional).unwrap();
    assert_eq!(tls.own_role(), Some(&Role::Gater("edge".into())));
    assert!(tls.acceptor().is_some());
}

#[test]
fn a_certificate_without_a_role_is_refused() {
    // The CA certificate names no holder: it cannot be used as a node's.
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), false).unwrap();
    let files = TlsFiles {
        ca: ca.cert.clone(),
        cert: ca.cert,
        key: ca.key,
    };
    let e = Tls::load(&files, "tls", PeerCerts::Required)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls.cert") && e.contains("reckon://"), "{e}");
}

#[test]
fn only_a_node_registers_its_own_workers() {
    assert!(may_register(Some(&Role::Node(3)), 3));
    assert!(!may_register(Some(&Role::Node(2)), 3));
    assert!(!may_register(Some(&Role::Gater("g".into())), 3));
    assert!(!may_register(Some(&Role::Client("c".into())), 3));
    assert!(!may_register(None, 3));
}
