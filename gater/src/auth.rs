//! Authenticating worker registrations with the cluster secret.
//!
//! A registration carries HMAC-SHA256 over its worker record and send time, keyed
//! with the cluster secret, and is accepted only while fresh
//! ([`REGISTRATION_FRESH_FOR`]). Without a configured secret nothing is signed or
//! checked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::{Registration, WorkerInfo};

/// How far a registration's send time may be from the gater's clock.
pub const REGISTRATION_FRESH_FOR: Duration = Duration::from_secs(60);

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn mac(secret: &str, worker: &WorkerInfo, sent_us: u64) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(b"reckon-registration-v1");
    m.update(&worker.node_id.to_be_bytes());
    m.update(worker.store.as_bytes());
    m.update(&[0]);
    m.update(worker.address.as_bytes());
    m.update(&[0]);
    m.update(&sent_us.to_be_bytes());
    m
}

/// Builds a registration for `worker`, signed when `secret` is set.
pub fn sign(worker: WorkerInfo, secret: Option<&str>) -> Registration {
    let sent_us = now_us();
    let auth = match secret {
        Some(s) => hex::encode(mac(s, &worker, sent_us).finalize().into_bytes()),
        None => String::new(),
    };
    Registration {
        worker,
        sent_us,
        auth,
    }
}

/// Checks a registration against `secret` (anything passes without one).
pub fn verify(reg: &Registration, secret: Option<&str>, now_us: u64) -> Result<(), String> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let skew = now_us.abs_diff(reg.sent_us);
    if skew > REGISTRATION_FRESH_FOR.as_micros() as u64 {
        return Err(format!(
            "registration is stale: sent {} s from the gater's clock (limit {} s)",
            skew / 1_000_000,
            REGISTRATION_FRESH_FOR.as_secs()
        ));
    }
    let tag = hex::decode(&reg.auth).map_err(|_| "registration is not signed".to_string())?;
    mac(secret, &reg.worker, reg.sent_us)
        .verify_slice(&tag)
        .map_err(|_| "registration signature does not match the gater's secret".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Role;

    fn w() -> WorkerInfo {
        WorkerInfo {
            node_id: 1,
            store: "default".into(),
            address: "127.0.0.1:7600".into(),
            role: Role::Leader,
            leader: Some(1),
            term: 1,
            last_log_index: 1,
            applied_index: 1,
            leader_changes: 1,
            appended_events: 0,
        }
    }

    #[test]
    fn signed_registrations_verify_and_tampering_fails() {
        let s = "0123456789abcdef0123456789abcdef";
        let r = sign(w(), Some(s));
        assert_eq!(verify(&r, Some(s), r.sent_us), Ok(()));
        assert!(verify(&r, Some("another secret of at least 32 bytes!"), r.sent_us).is_err());
        let mut t = r.clone();
        t.worker.address = "10.9.9.9:1".into();
        assert!(verify(&t, Some(s), r.sent_us).is_err());
        let unsigned = sign(w(), None);
        assert!(verify(&unsigned, Some(s), unsigned.sent_us).is_err());
        assert!(
            verify(&r, Some(s), r.sent_us + 120_000_000).is_err(),
            "stale"
        );
        assert_eq!(verify(&unsigned, None, 0), Ok(()));
    }
}
