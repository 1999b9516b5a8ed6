//! Hostile input to a real gater over loopback TCP: random and mutated preambles and
//! frames of every gater request type, idle and trickling connections, and a flood
//! of idle connections. Each bad connection is closed; a well-behaved client on
//! another connection is served throughout; nothing bad changes the gater's state.
//! (The decoder's allocation bound is shown in `frame_alloc.rs`.)
//!
//! Cases per property: `RECKON_FUZZ_CASES` (default `fuzz::DEFAULT_CASES`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

mod fuzz;

use fuzz::{config, context, count_panics, panics, valid_frames, wire};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use reckon_gater::api::{Gater, GaterClient};
use reckon_gater::certs;
use reckon_gater::gateway::{Gateway, GatewayOptions};
use reckon_gater::tls::{ClientTlsFiles, PeerCerts, Role, Tls, TlsFiles};
use reckon_gater::transport::{self, Dialer, Limits, Service, MAGIC};
use reckon_gater::{StoreRequest, StoreResponse};
use tarpc::server::{BaseChannel, Channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// A generous bound on what must be prompt (a bad connection's close).
const PROMPT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// The harness.

/// Sends `bytes` on a new connection, ends its write half, and waits until the
/// server closes it (reading whatever it answers).
async fn hostile_connection(addr: &str, bytes: &[u8]) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // The server may close before it has read everything: that is a refusal too.
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    let mut sink = Vec::new();
    match tokio::time::timeout(PROMPT, tcp.read_to_end(&mut sink)).await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "the server kept the connection open for {PROMPT:?}"
        )),
    }
}

/// A gater serving on loopback with a cluster secret (so that no unsigned
/// registration may change its registry), and a well-behaved client of it.
struct Harness {
    rt: Runtime,
    addr: String,
    good: GaterClient,
}

fn gater(limits: Limits) -> Harness {
    gater_with(limits, None, None)
}

/// A gater as [`gater`] makes, with TLS when `tls` is given (its good client then
/// dials with `client`).
fn gater_with(limits: Limits, tls: Option<Tls>, client: Option<Tls>) -> Harness {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, good) = rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gateway = Gateway::new(GatewayOptions {
            secret: Some("a-cluster-secret-of-32-bytes-or-more!".into()),
            tls: tls.clone(),
            ..GatewayOptions::default()
        });
        tokio::spawn(serve(gateway, listener, tls, limits));
        let good = client_with(&Dialer::new(client), &addr).await;
        // Served once: it has sent a whole frame, so it never gives its slot up.
        good.health(context()).await.unwrap();
        (addr, good)
    });
    Harness { rt, addr, good }
}

/// [`Gateway::serve`]'s connection handling, under `limits`.
async fn serve(gateway: Gateway, listener: TcpListener, tls: Option<Tls>, limits: Limits) {
    transport::accept_loop_limited(
        listener,
        tls,
        limits,
        std::future::pending(),
        move |service, conn, _| {
            let handler = gateway.connection(None);
            async move {
                if service != Service::Gater {
                    return;
                }
                let channel = BaseChannel::with_defaults(transport::wrap(conn));
                transport::spawn_requests(channel.execute(handler.serve())).await;
            }
        },
    )
    .await
}

async fn client(addr: &str) -> GaterClient {
    client_with(&Dialer::plain(), addr).await
}

async fn client_with(dialer: &Dialer, addr: &str) -> GaterClient {
    let t = dialer.dial(addr, Service::Gater).await.expect("dial");
    GaterClient::new(tarpc::client::Config::default(), t).spawn()
}

impl Harness {
    /// The gater answers the good client, and knows no store (nothing registered).
    fn still_serving(&self) -> Result<(), String> {
        let report = self
            .rt
            .block_on(self.good.health(context()))
            .map_err(|e| format!("the good client was not served: {e}"))?;
        if panics() > 0 {
            return Err(format!("{} panics in the process", panics()));
        }
        if !report.stores.is_empty() {
            return Err(format!("hostile input changed the registry: {report:?}"));
        }
        Ok(())
    }
}

#[test]
fn random_and_mutated_preambles_are_refused_and_others_served() {
    let h = gater(Limits::default());
    let preamble = (
        proptest::collection::vec(any::<u8>(), 0..12),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
    )
        .prop_map(|(random, flips)| {
            if random.len() % 2 == 0 {
                return random;
            }
            let mut p = MAGIC.to_vec();
            p.push(b'G');
            for (i, b) in flips {
                let i = i.index(p.len());
                p[i] = b;
            }
            p
        });
    let mut runner = TestRunner::new(config());
    runner
        .run(&preamble, |bytes| {
            h.rt.block_on(hostile_connection(&h.addr, &bytes))
                .map_err(TestCaseError::fail)?;
            h.still_serving().map_err(TestCaseError::fail)
        })
        .unwrap();
}

#[test]
fn random_and_mutated_gater_frames_close_the_connection_and_change_nothing() {
    let h = gater(Limits::default());
    let mut runner = TestRunner::new(config());
    runner
        .run(&wire(valid_frames(), b'G'), |bytes| {
            h.rt.block_on(hostile_connection(&h.addr, &bytes))
                .map_err(TestCaseError::fail)?;
            h.still_serving().map_err(TestCaseError::fail)
        })
        .unwrap();
    // And the good client's own calls still decode: a store request gets its answer.
    let r =
        h.rt.block_on(h.good.call(
            context(),
            "fuzzed".into(),
            StoreRequest::ListStreams {
                after: None,
                limit: 10,
                consistency: Default::default(),
            },
        ))
        .unwrap();
    assert!(!matches!(r, Ok(StoreResponse::Streams(_))), "{r:?}");
}

/// A gater's and a client's TLS, from a fresh CA in `dir`.
fn tls_pair(dir: &std::path::Path) -> (Tls, Tls) {
    let ca = certs::make_ca(dir, false).unwrap();
    let gw =
        certs::make_leaf(dir, &Role::Gater("gw".into()), &["127.0.0.1".into()], false).unwrap();
    let server = Tls::load(
        &TlsFiles {
            ca: ca.cert.clone(),
            cert: gw.cert,
            key: gw.key,
        },
        "tls",
        PeerCerts::Optional,
    )
    .unwrap();
    let client = Tls::client(&ClientTlsFiles {
        ca: ca.cert,
        identity: None,
    })
    .unwrap();
    (server, client)
}

/// The first bytes a TLS client sends (its ClientHello), caught by a listener that
/// never answers.
fn client_hello(rt: &Runtime, client: Tls) -> Vec<u8> {
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let dial =
            tokio::spawn(async move { Dialer::tls(client).open(&addr, Service::Gater).await });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut hello = vec![0u8; 4096];
        let n = tcp.read(&mut hello).await.unwrap();
        hello.truncate(n);
        dial.abort();
        hello
    })
}

#[test]
fn random_and_mutated_tls_handshakes_fail_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = tls_pair(dir.path());
    let h = gater_with(Limits::default(), Some(server), Some(client.clone()));
    let hello = client_hello(&h.rt, client);
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    let handshakes = prop_oneof![
        // Random bytes, some dressed as a handshake record.
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            any::<bool>()
        )
            .prop_map(|(mut bytes, dressed)| {
                if dressed {
                    let len = (bytes.len() as u16).to_be_bytes();
                    let mut head = vec![0x16, 0x03, 0x01, len[0], len[1]];
                    head.append(&mut bytes);
                    head
                } else {
                    bytes
                }
            }),
        // The real ClientHello, bytes flipped, cut or added.
        (
            Just(hello),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(mut hello, flips, cut, cutting)| {
                for (i, b) in flips {
                    let i = i.index(hello.len());
                    hello[i] = b;
                }
                if cutting {
                    hello.truncate(cut.index(hello.len() + 1));
                }
                hello
            }),
    ];
    let mut runner = TestRunner::new(config());
    runner
        .run(&handshakes, |bytes| {
            h.rt.block_on(hostile_connection(&h.addr, &bytes))
                .map_err(TestCaseError::fail)?;
            h.still_serving().map_err(TestCaseError::fail)
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------
// Idle, trickling and flooding connections, under lowered limits.

/// Limits low enough to reach in a test: 8 connection slots, 1 s deadlines.
fn tight() -> Limits {
    Limits {
        max_connections: 8,
        preamble_timeout: Duration::from_secs(1),
        frame_read_timeout: Duration::from_secs(1),
    }
}

/// How long after its deadline a connection must be closed by.
const SLACK: Duration = Duration::from_secs(5);

/// Waits until the server closes `tcp`; how long that took.
async fn closed_within(tcp: &mut TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(bound, tcp.read_to_end(&mut sink))
        .await
        .expect("the server never closed the connection")
        .ok();
    start.elapsed()
}

#[test]
fn a_silent_or_trickling_connection_is_dropped_within_its_deadline() {
    let limits = tight();
    let h = gater(limits);
    h.rt.block_on(async {
        // Says nothing.
        let mut silent = TcpStream::connect(&h.addr).await.unwrap();
        let t = closed_within(&mut silent, limits.preamble_timeout + SLACK).await;
        assert!(t >= limits.preamble_timeout / 2, "closed after {t:?}");

        // Trickles its preamble a byte at a time, slower than allowed in total.
        let mut trickle = TcpStream::connect(&h.addr).await.unwrap();
        let step = limits.preamble_timeout / 3;
        let start = Instant::now();
        let mut cut = false;
        for b in MAGIC.iter().chain(b"G") {
            if trickle.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(step).await;
        }
        if !cut {
            closed_within(&mut trickle, SLACK).await;
        }
        assert!(start.elapsed() < limits.preamble_timeout + SLACK);

        // Sends a good preamble, starts a frame, and stalls in it.
        let mut stall = TcpStream::connect(&h.addr).await.unwrap();
        stall.write_all(&MAGIC).await.unwrap();
        stall.write_all(b"G").await.unwrap();
        stall.write_all(&100u32.to_be_bytes()).await.unwrap();
        stall.write_all(&[0; 10]).await.unwrap();
        let t = closed_within(&mut stall, limits.frame_read_timeout + SLACK).await;
        assert!(t >= limits.frame_read_timeout / 2, "closed after {t:?}");

        // Trickles a frame's length prefix alone, then stalls: still mid-frame.
        let mut prefix = TcpStream::connect(&h.addr).await.unwrap();
        prefix.write_all(&MAGIC).await.unwrap();
        prefix.write_all(b"G").await.unwrap();
        prefix.write_all(&100u32.to_be_bytes()).await.unwrap();
        closed_within(&mut prefix, limits.frame_read_timeout + SLACK).await;
    });
    h.still_serving().unwrap();
}

#[test]
fn a_connection_idle_between_frames_is_kept() {
    let limits = tight();
    let h = gater(limits);
    h.rt.block_on(async {
        let idle = client(&h.addr).await;
        idle.health(context()).await.unwrap();
        tokio::time::sleep(limits.frame_read_timeout * 2).await;
        idle.health(context()).await.unwrap();
    });
}

#[test]
fn a_flood_of_idle_connections_does_not_keep_a_good_client_out() {
    let limits = tight();
    let h = gater(limits);
    let flood = 300;
    h.rt.block_on(async {
        // Many more silent connections than slots, and as many that stall mid-frame.
        let mut idle = Vec::new();
        for i in 0..flood {
            let mut tcp = TcpStream::connect(&h.addr).await.unwrap();
            if i % 2 == 1 {
                let _ = tcp.write_all(&MAGIC).await;
                let _ = tcp.write_all(b"G").await;
                let _ = tcp.write_all(&1000u32.to_be_bytes()).await;
            }
            idle.push(tcp);
        }
        // A new client gets in (the flood's connections give their slots up: none
        // has sent a whole frame) and is served, well before the flood could time
        // out slot by slot (flood / slots deadlines).
        let bound = limits.preamble_timeout + limits.frame_read_timeout + SLACK;
        let served = tokio::time::timeout(bound, async {
            let c = client(&h.addr).await;
            c.health(context()).await
        })
        .await;
        assert!(
            matches!(served, Ok(Ok(_))),
            "a good client was not served within {bound:?} of a flood: {served:?}"
        );
        // The connection it already had was never at risk.
        h.good.health(context()).await.unwrap();
        drop(idle);
    });
}

#[test]
fn an_undecodable_frame_closes_its_connection_at_once() {
    let h = gater(Limits::default());
    h.rt.block_on(async {
        let mut tcp = TcpStream::connect(&h.addr).await.unwrap();
        tcp.write_all(&MAGIC).await.unwrap();
        tcp.write_all(b"G").await.unwrap();
        tcp.write_all(&16u32.to_be_bytes()).await.unwrap();
        tcp.write_all(&[0xff; 16]).await.unwrap();
        // The write half stays open: the server closes on the frame alone.
        let mut sink = Vec::new();
        tokio::time::timeout(PROMPT, tcp.read_to_end(&mut sink))
            .await
            .expect("the connection stayed open after an undecodable frame")
            .ok();
    });
    h.still_serving().unwrap();
}
