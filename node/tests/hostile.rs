//! Hostile input to a real node over loopback TCP (in-process, single mode): random
//! and mutated frames of the worker and node-to-node Raft services, and random
//! request heads to the metrics endpoint. Each bad connection is closed, a
//! well-behaved client on another connection is served after every case, and the
//! store's contents read back unchanged at the end.
//!
//! Cases per property: `RECKON_FUZZ_CASES` (default `fuzz::DEFAULT_CASES`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../gater/tests/fuzz/mod.rs"]
mod fuzz;

use std::sync::Arc;
use std::time::Duration;

use fuzz::{config, context, count_panics, panics, wire};
use openraft::Vote;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use reckon_gater::frame;
use reckon_gater::request::{StoreRequest, StoreResponse};
use reckon_gater::types::{Direction, ExpectedVersion, NewEvent, ReadConsistency};
use reckon_gater::worker::{WorkerClient, WorkerRequest};
use reckon_node::command::Command;
use reckon_node::config::{NodeConfig, DEFAULT_STORE};
use reckon_node::node::Node;
use reckon_node::raft::election::PreVote;
use reckon_node::raft::peer::RaftServiceRequest;
use reckon_node::raft::snapshot_transfer::{Chunk, Offer};
use reckon_node::run::{run, RunOptions};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// A generous bound on what must be prompt (a bad connection's close).
const PROMPT: Duration = Duration::from_secs(10);

/// A store no node hosts: requests that would write name it, so that a mutated
/// frame that still decodes changes nothing.
const ELSEWHERE: &str = "fuzzed";

struct Harness {
    rt: Runtime,
    addr: String,
    metrics: String,
    good: WorkerClient,
    _node: Arc<Node>,
    _dir: tempfile::TempDir,
}

fn node() -> Harness {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let (addr, metrics, good, node) = rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let metrics = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let config = NodeConfig {
            listen: listener.local_addr().unwrap(),
            data_dir,
            metrics_listen: Some(metrics),
            ..NodeConfig::default()
        };
        let (started, node) = tokio::sync::oneshot::channel();
        let options = RunOptions {
            started: Some(started),
            ..RunOptions::default()
        };
        tokio::spawn(run(config, listener, options, std::future::pending()));
        let node = node.await.expect("the node started");
        let good = reckon_gater::worker::connect(&addr).await.unwrap();
        (addr, metrics.to_string(), good, node)
    });
    let h = Harness {
        rt,
        addr,
        metrics,
        good,
        _node: node,
        _dir: dir,
    };
    // Something to find unchanged afterwards; the good client waits for the store
    // to have a leader.
    h.rt.block_on(async {
        let append = StoreRequest::Append {
            stream_id: "kept".into(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::json("Kept", &serde_json::json!({"n": 1}))],
        };
        for _ in 0..100 {
            if let Ok(Ok(_)) = h
                .good
                .call(context(), DEFAULT_STORE.into(), append.clone())
                .await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the node never took the first append");
    });
    h
}

impl Harness {
    /// What the store holds, as the good client reads it.
    fn contents(&self) -> Result<String, String> {
        let read = StoreRequest::ReadAll {
            from_position: 0,
            count: 1000,
            direction: Direction::Forward,
            consistency: ReadConsistency::default(),
        };
        let r = self
            .rt
            .block_on(self.good.call(context(), DEFAULT_STORE.into(), read))
            .map_err(|e| format!("the good client was not served: {e}"))?;
        match r {
            Ok(StoreResponse::Events(page)) => Ok(format!("{page:?}")),
            other => Err(format!("reading the store: {other:?}")),
        }
    }

    /// Runs `strategy`'s byte strings against `port` on fresh connections; after each
    /// the store still reads `before`.
    fn fuzz(&self, addr: &str, strategy: impl Strategy<Value = Vec<u8>>) {
        let before = self.contents().unwrap();
        let mut runner = TestRunner::new(config());
        runner
            .run(&strategy, |bytes| {
                self.rt
                    .block_on(hostile_connection(addr, &bytes))
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(panics(), 0, "a panic in the process");
                let now = self.contents().map_err(TestCaseError::fail)?;
                prop_assert_eq!(&now, &before, "hostile input changed the store");
                Ok(())
            })
            .unwrap();
    }
}

/// Sends `bytes` on a new connection, ends its write half, and waits until the
/// server closes it (reading whatever it answers).
async fn hostile_connection(addr: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    let mut sink = Vec::new();
    match tokio::time::timeout(PROMPT, tcp.read_to_end(&mut sink)).await {
        Ok(_) => Ok(sink),
        Err(_) => Err(format!(
            "the server kept the connection open for {PROMPT:?}"
        )),
    }
}

fn request<T: serde::Serialize>(message: T) -> Vec<u8> {
    frame::encode(&tarpc::ClientMessage::Request(tarpc::Request {
        context: context(),
        id: 1,
        message,
    }))
    .unwrap()
}

/// Valid frames of the worker service: reads of the real store, writes elsewhere.
fn worker_frames() -> Vec<Vec<u8>> {
    let here = |request| WorkerRequest::Call {
        store: DEFAULT_STORE.into(),
        request,
    };
    let elsewhere = |request| WorkerRequest::Call {
        store: ELSEWHERE.into(),
        request,
    };
    vec![
        request(WorkerRequest::Stats {}),
        request(here(StoreRequest::ReadStream {
            stream_id: "kept".into(),
            from: 0,
            count: 10,
            direction: Direction::Forward,
            consistency: ReadConsistency::default(),
        })),
        request(here(StoreRequest::ReadAll {
            from_position: 0,
            count: 10,
            direction: Direction::Backward,
            consistency: ReadConsistency::default(),
        })),
        request(elsewhere(StoreRequest::Append {
            stream_id: "kept".into(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::json("Bad", &serde_json::json!({"x": [1, 2]}))],
        })),
        request(elsewhere(StoreRequest::DeleteStream {
            stream_id: "kept".into(),
            hard: true,
            expected: ExpectedVersion::Any,
        })),
    ]
}

/// Valid frames of every node-to-node request type, each naming a store not
/// hosted (but a hello, and garbage Raft payloads for the hosted store's decoder).
fn raft_frames() -> Vec<Vec<u8>> {
    let store = || ELSEWHERE.to_string();
    let junk = || ByteBuf::from(vec![1u8, 2, 3, 253, 0, 0, 0, 0, 1, 0, 0, 0]);
    vec![
        request(RaftServiceRequest::Hello {}),
        request(RaftServiceRequest::AppendEntries {
            store: store(),
            rpc: junk(),
        }),
        request(RaftServiceRequest::AppendEntries {
            store: DEFAULT_STORE.into(),
            rpc: junk(),
        }),
        request(RaftServiceRequest::Vote {
            store: DEFAULT_STORE.into(),
            rpc: junk(),
        }),
        request(RaftServiceRequest::PreVote {
            store: store(),
            req: PreVote {
                candidate: 2,
                last_log_id: None,
            },
        }),
        request(RaftServiceRequest::LeaderPing {
            store: store(),
            vote: Vote::new(1, 2),
        }),
        request(RaftServiceRequest::SnapshotChunk {
            store: store(),
            chunk: Chunk {
                snapshot_id: "s".into(),
                offset: 0,
                data: junk(),
            },
        }),
        request(RaftServiceRequest::SnapshotInstall {
            store: store(),
            snapshot_id: "s".into(),
        }),
        request(RaftServiceRequest::SnapshotOffer {
            store: store(),
            offer: Offer {
                vote: Vote::new(1, 2),
                meta: Default::default(),
                size: 1 << 40,
            },
        }),
        request(RaftServiceRequest::Forward {
            store: store(),
            command: Command::Delete {
                stream_id: "kept".into(),
                hard: true,
            },
            bytes: 10,
        }),
        request(RaftServiceRequest::Join {
            store: store(),
            node_id: 2,
            address: "127.0.0.1:1".into(),
        }),
        request(RaftServiceRequest::Remove {
            store: store(),
            node_id: 1,
        }),
        request(RaftServiceRequest::HoldElections {
            store: store(),
            ms: 60_000,
        }),
        request(RaftServiceRequest::Campaign { store: store() }),
    ]
}

/// The harness speaks the protocol: each unmutated frame gets an answer.
#[test]
fn valid_frames_are_answered() {
    let h = node();
    for (service, frames) in [(b'W', worker_frames()), (b'R', raft_frames())] {
        for body in frames {
            let mut wire = reckon_gater::transport::MAGIC.to_vec();
            wire.push(service);
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(&body);
            let answer = h.rt.block_on(hostile_connection(&h.addr, &wire)).unwrap();
            assert!(
                answer.len() > 4,
                "no answer to a valid {} frame",
                service as char
            );
        }
    }
}

#[test]
fn hostile_frames_to_every_node_service_close_the_connection_and_change_nothing() {
    let h = node();
    h.fuzz(&h.addr, wire(worker_frames(), b'W'));
    h.fuzz(&h.addr, wire(raft_frames(), b'R'));
    // A node does not serve the gater service: such connections close too.
    h.fuzz(&h.addr, wire(worker_frames(), b'G'));
}

#[test]
fn hostile_request_heads_to_the_metrics_endpoint_are_refused() {
    let h = node();
    let good_head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let heads = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            Just(good_head.clone()),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        )
            .prop_map(|(mut head, flips)| {
                for (i, b) in flips {
                    let i = i.index(head.len());
                    head[i] = b;
                }
                head
            }),
        // An endless header line: past the head limit.
        (1usize..4).prop_map(|k| {
            let mut head = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            head.resize(k * 8 * 1024, b'a');
            head
        }),
    ];
    h.fuzz(&h.metrics, heads);
    // And the endpoint still answers a proper request.
    h.rt.block_on(async {
        let mut tcp = TcpStream::connect(&h.metrics).await.unwrap();
        tcp.write_all(&good_head).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PROMPT, tcp.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(100)])
        );
    });
}
