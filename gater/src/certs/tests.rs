use super::*;
use crate::tls::role_of;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn each_certificate_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), false).unwrap();
    assert_eq!(ca.cert, dir.path().join("ca.crt"));
    assert_eq!(role_of(&der(&ca.cert)), None);
    let hosts = vec!["127.0.0.1".to_string(), "db-3.example".to_string()];
    for (role, expected_stem) in [
        (Role::Node(3), "node-3"),
        (Role::Gater("edge".into()), "gater-edge"),
        (Role::Client("alice".into()), "client-alice"),
    ] {
        let w = make_leaf(dir.path(), &role, &hosts, false).unwrap();
        assert_eq!(w.cert, dir.path().join(format!("{expected_stem}.crt")));
        assert_eq!(w.key, dir.path().join(format!("{expected_stem}.key")));
        assert_eq!(role_of(&der(&w.cert)), Some(role.clone()));
        let text = std::fs::read_to_string(&w.key).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    }
}

#[cfg(unix)]
#[test]
fn keys_are_private_and_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), false).unwrap();
    assert_eq!(mode(&ca.key), 0o600);
    assert_eq!(mode(&ca.cert), 0o644);
    let e = make_ca(dir.path(), false).unwrap_err();
    assert!(matches!(e, CertError::Exists { .. }), "{e}");
    assert!(e.to_string().contains("--force"), "{e}");

    let role = Role::Node(1);
    let first = make_leaf(dir.path(), &role, &["127.0.0.1".into()], false).unwrap();
    let before = std::fs::read(&first.key).unwrap();
    let e = make_leaf(dir.path(), &role, &["127.0.0.1".into()], false).unwrap_err();
    assert!(e.to_string().contains("node-1.key"), "{e}");
    assert_eq!(std::fs::read(&first.key).unwrap(), before, "key untouched");

    // Forced over a key someone made readable: the new one is private again.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&first.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = make_leaf(dir.path(), &role, &["127.0.0.1".into()], true).unwrap();
    assert_ne!(std::fs::read(&again.key).unwrap(), before, "a new key");
    assert_eq!(mode(&again.key), 0o600);
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = make_leaf(dir.path(), &Role::Node(1), &["h".into()], false).unwrap_err();
    assert!(
        matches!(e, CertError::NoCa { .. }) && e.to_string().contains("reckon certs ca"),
        "{e}"
    );
    make_ca(dir.path(), false).unwrap();
    let cases: [(Role, Vec<String>, &str); 5] = [
        (Role::Node(0), vec!["h".into()], "--node-id"),
        (Role::Node(1), vec![], "--host"),
        (Role::Node(1), vec!["bad host!".into()], "bad host!"),
        (Role::Gater("a/b".into()), vec!["h".into()], "--name"),
        (Role::Client("".into()), vec![], "--name"),
    ];
    for (role, hosts, named) in cases {
        let e = make_leaf(dir.path(), &role, &hosts, false).unwrap_err();
        assert!(e.to_string().contains(named), "{role:?}: {e}");
    }
}

#[test]
fn a_certificate_from_another_ca_does_not_verify() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    make_ca(ours.path(), false).unwrap();
    make_ca(theirs.path(), false).unwrap();
    let foreign = make_leaf(theirs.path(), &Role::Node(4), &["127.0.0.1".into()], false).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&ours.path().join("ca.crt"))).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let e = verifier
        .verify_client_cert(&der(&foreign.cert), &[], rustls::pki_types::UnixTime::now())
        .unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}
