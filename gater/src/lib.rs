//! reckon_gater: the wire contract of reckon-db, the client library and the aggregator.
//!
//! Everything that crosses a process boundary between a client, a gater and a node
//! lives here, so that the node, the gateway, the CLI and the console agree on one
//! definition:
//!
//! - [`types`]: the serde types of the domain as they travel (events, expected
//!   versions, results) and the wire error [`StoreError`].
//! - [`request`]: every store operation as one [`StoreRequest`] and its
//!   [`StoreResponse`]: what clients send gaters, and gaters send nodes.
//! - [`worker`]: the tarpc service every node serves for each store it hosts.
//! - [`api`]: the gater's service: store requests, registration, health, cluster.
//! - [`pool`]: connections by address, dialled outside the pool's lock: the one pool
//!   of the gateway, the client library and the node's Raft network.
//! - [`transport`]: how a tarpc service is served and dialled over TCP, with a
//!   bounded frame length and `TCP_NODELAY`, in clear text or TLS.
//! - [`tls`]: the `[tls]` files, the rustls configurations built from them, and the
//!   role (node, gater, client) a certificate names and servers check.
//! - [`certs`]: `reckon certs`' CA and certificates (rcgen).
//! - [`aggregate`]: folding events into state with `$sum` and `$overwrite`.
//! - [`telemetry`]: the seed's telemetry events and the handler API to receive them.
//! - [`metrics`]: per-store counters and latency histograms, as nodes keep them and
//!   `stats` serves them.
//! - [`logging`]: the `[log]` config table and the `tracing` set-up the node and
//!   the gater share.
//! - [`startup`]: the rest of what the two binaries share: the runtime, the stop
//!   signals, the exit status.
//! - [`subscription`]: subscriptions as they travel: options, records, deliveries.
//! - [`backup`]: online backups as they travel, and the client's download of one.
//! - [`auth`]: signing and checking worker registrations with the cluster secret.
//! - [`access`]: client tokens, principals and their roles per store.
//! - [`settings`]: what every binary's configuration shares (key-naming errors).
//!
//! And what runs on top of the contract:
//!
//! - [`client`]: the client library ([`Client`], [`StoreHandle`], [`Subscriber`]).
//! - [`router`]: the gater's registry and routing decisions, a pure core.
//! - [`gateway`]: the gater's service, the I/O shell around the router.
//! - [`kurrent`]: the gater's second front door, KurrentDB's gRPC protocol, onto the
//!   same gateway.
//! - [`config`]: the gater's configuration.
//! - [`cli`]: the `reckon` command line.
//!
//! The crate imports neither openraft nor redb: those are internals of the node.

pub mod access;
pub mod aggregate;
pub mod api;
pub mod auth;
pub mod backup;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod frame;
pub mod gateway;
pub mod kurrent;
pub mod logging;
pub mod metrics;
pub mod page;
pub mod pool;
pub mod request;
pub mod router;
pub mod service;
pub mod settings;
pub mod startup;
pub mod subscription;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod types;
pub mod worker;

pub use client::{Client, ClientBuilder, ClientError, StoreHandle, Subscriber};
pub use page::EventPage;
pub use request::{Route, StoreRequest, StoreResponse};
pub use types::{
    AppendResult, ContentType, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    SnapshotRecord, StoreError, StreamInfo, StreamPage, TagMatch,
};
