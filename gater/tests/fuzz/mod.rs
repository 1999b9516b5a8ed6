//! What the hostile-input tests share: the case count, and frames of every gater
//! request type, valid and mutated.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;
use reckon_gater::api::{GaterRequest, Registration, WorkerInfo};
use reckon_gater::frame;
use reckon_gater::transport::MAGIC;
use reckon_gater::types::Role;
use reckon_gater::{ExpectedVersion, StoreRequest};

/// Cases per property unless `RECKON_FUZZ_CASES` says otherwise.
pub const DEFAULT_CASES: u32 = 200;

/// The proptest configuration: `RECKON_FUZZ_CASES` cases (default [`DEFAULT_CASES`]).
pub fn config() -> Config {
    let cases = std::env::var("RECKON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A gater connection's frame, as the server reads it.
pub type GaterFrame = tarpc::ClientMessage<GaterRequest>;

pub fn context() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + Duration::from_secs(30);
    c
}

pub fn encode_request(message: GaterRequest) -> Vec<u8> {
    frame::encode(&tarpc::ClientMessage::Request(tarpc::Request {
        context: context(),
        id: 1,
        message,
    }))
    .unwrap()
}

pub fn registration() -> Registration {
    Registration {
        worker: WorkerInfo {
            node_id: 9,
            store: "fuzzed".into(),
            address: "127.0.0.1:1".into(),
            role: Role::Leader,
            leader: Some(9),
            term: 3,
            last_log_index: 4,
            applied_index: 4,
            leader_changes: 1,
            appended_events: 0,
        },
        sent_us: 1,
        auth: "00".into(),
    }
}

/// A valid frame body of every gater request type (and a cancel).
pub fn valid_frames() -> Vec<Vec<u8>> {
    let call = |request| GaterRequest::Call {
        store: "fuzzed".into(),
        request,
    };
    let mut frames: Vec<Vec<u8>> = [
        GaterRequest::Register {
            registration: registration(),
        },
        GaterRequest::Heartbeat {
            registration: registration(),
        },
        GaterRequest::Deregister {
            registration: registration(),
        },
        GaterRequest::Health {},
        GaterRequest::ListStores {},
        GaterRequest::ClusterStatus {},
        GaterRequest::Stats {},
        GaterRequest::Authenticate {
            token: Some("rkn_not-a-token".into()),
        },
        call(StoreRequest::ListStreams {
            after: None,
            limit: 10,
            consistency: Default::default(),
        }),
        call(StoreRequest::DeleteStream {
            stream_id: "s".into(),
            hard: true,
            expected: ExpectedVersion::Any,
        }),
    ]
    .into_iter()
    .map(encode_request)
    .collect();
    frames.push(
        frame::encode(&GaterFrame::Cancel {
            trace_context: Default::default(),
            request_id: 1,
        })
        .unwrap(),
    );
    frames
}

/// A frame body: random bytes, or a valid body with bytes flipped, cut or added.
pub fn frame_body(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..256);
    let mutated = (
        proptest::sample::select(valid),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut body, flips, cut, tail)| {
            for (i, b) in flips {
                let i = i.index(body.len());
                body[i] = b;
            }
            if tail.len() % 3 == 0 {
                body.truncate(cut.index(body.len() + 1));
            }
            body.extend_from_slice(&tail[..tail.len() % 4]);
            body
        });
    prop_oneof![random, mutated]
}

/// What goes on the wire: a preamble (valid, or not) and a frame (its length
/// prefix true, or not).
pub fn wire(valid: Vec<Vec<u8>>, service: u8) -> impl Strategy<Value = Vec<u8>> {
    (frame_body(valid), any::<u8>(), any::<u32>(), 0u8..8).prop_map(
        move |(body, byte, len, how)| {
            let mut out = Vec::new();
            match how {
                // A good preamble and a frame with a true length: most cases.
                0..=4 => {
                    out.extend_from_slice(&MAGIC);
                    out.push(service);
                    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                }
                // A good preamble and a length prefix that lies.
                5 => {
                    out.extend_from_slice(&MAGIC);
                    out.push(service);
                    out.extend_from_slice(&len.to_be_bytes());
                }
                // A bad service byte.
                6 => {
                    out.extend_from_slice(&MAGIC);
                    out.push(byte);
                }
                // No preamble at all.
                _ => {}
            }
            out.extend_from_slice(&body);
            out
        },
    )
}

static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts every panic in the process from now on (a server's task panicking is
/// caught by its runtime, and would otherwise go unseen).
pub fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            default(info)
        }));
    });
}

/// Panics counted since [`count_panics`].
pub fn panics() -> usize {
    PANICS.load(std::sync::atomic::Ordering::SeqCst)
}
