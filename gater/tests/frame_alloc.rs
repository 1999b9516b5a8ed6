//! The frame decoder allocates within the frame it decodes ([`frame::decode`]): a
//! few bytes that claim a vector of 2^32 elements reserve room for no more elements
//! than the bytes left could hold, and random and mutated frames of every gater
//! request type allocate in proportion to their length.
//!
//! Counted with an instrumented global allocator; this file holds one test, so that
//! no other test's allocations run alongside.

#![allow(clippy::unwrap_used)]

mod fuzz;

use std::alloc::System;

use fuzz::{config, encode_request, frame_body, valid_frames, GaterFrame};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use reckon_gater::api::GaterRequest;
use reckon_gater::frame;
use reckon_gater::types::ExpectedVersion;
use reckon_gater::StoreRequest;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated while `f` ran (all of it, freed or not: at least the peak).
fn allocated<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let region = Region::new(GLOBAL);
    let r = f();
    (r, region.change().bytes_allocated)
}

/// bincode's varint for a length of 2^32: a 4 GiB claim in 9 bytes.
const HUGE_LEN: [u8; 9] = [253, 0, 0, 0, 0, 1, 0, 0, 0];

#[test]
fn decoding_allocates_within_the_frame() {
    // A vector of 32-byte elements claiming 2^32 of them, with 64 bytes present.
    // serde alone reserves up to 1 MiB for a claim (bincode's stock codec passes the
    // claim on), and a reader that trusts it, 128 GiB.
    let mut bytes = HUGE_LEN.to_vec();
    bytes.extend_from_slice(&[7; 64]);
    let (r, n) = allocated(|| frame::decode::<Vec<[u64; 4]>>(&bytes));
    assert!(r.is_err());
    assert!(
        n <= 64 * 32 + 1024,
        "decoding {} bytes allocated {n}",
        bytes.len()
    );

    // The same inside a real request: an append whose events claim 2^32 entries.
    let append = encode_request(GaterRequest::Call {
        store: "s".into(),
        request: StoreRequest::Append {
            stream_id: "x".into(),
            expected: ExpectedVersion::Any,
            events: vec![],
        },
    });
    // The empty events vector is the last field: its length is the last byte.
    assert_eq!(append.last(), Some(&0));
    let mut huge = append[..append.len() - 1].to_vec();
    huge.extend_from_slice(&HUGE_LEN);
    huge.extend_from_slice(&[1; 32]);
    let (r, n) = allocated(|| frame::decode::<GaterFrame>(&huge));
    assert!(r.is_err());
    assert!(
        n <= 64 * 1024,
        "decoding {} bytes allocated {n}",
        huge.len()
    );

    // Random and mutated frames of every request type.
    let mut runner = TestRunner::new(config());
    runner
        .run(&frame_body(valid_frames()), |body| {
            let (_, n) = allocated(|| frame::decode::<GaterFrame>(&body));
            // Strings and byte buffers take their bytes from the frame; a vector
            // reserves room for at most one element per byte left.
            prop_assert!(
                n <= 4096 + 1024 * body.len(),
                "{} bytes allocated {n}",
                body.len()
            );
            Ok(())
        })
        .unwrap();
}
