use super::*;

#[test]
fn grpc_timeouts_parse_in_every_unit() {
    for (text, d) in [
        ("5S", Duration::from_secs(5)),
        ("100m", Duration::from_millis(100)),
        ("2M", Duration::from_secs(120)),
        ("1H", Duration::from_secs(3600)),
        ("7u", Duration::from_micros(7)),
        ("9n", Duration::from_nanos(9)),
    ] {
        assert_eq!(parse_grpc_timeout(text), Some(d), "{text}");
    }
    for bad in ["", "S", "5", "5x", "123456789S", "-1S"] {
        assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
    }
}

fn with_auth(value: &str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert("authorization", value.parse().unwrap());
    m
}

#[test]
fn basic_auth_gives_its_password_as_the_token() {
    let encoded = base64::engine::general_purpose::STANDARD.encode("admin:tok-123");
    assert_eq!(
        bearer_token(&with_auth(&format!("Basic {encoded}"))).unwrap(),
        Some("tok-123".to_string())
    );
    assert_eq!(
        bearer_token(&with_auth("Bearer tok-9")).unwrap(),
        Some("tok-9".to_string())
    );
    assert_eq!(bearer_token(&MetadataMap::new()).unwrap(), None);
    for bad in ["Basic !!!", "Digest x", "Basic bm9jb2xvbg=="] {
        let e = bearer_token(&with_auth(bad)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        assert!(e.message().contains("authorization header"), "{bad}: {e}");
    }
}
