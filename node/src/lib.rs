//! reckon-node: the node that holds reckon-db's data.
//!
//! The modules, from the bottom up; each uses only modules listed before it, so no
//! two import each other:
//!
//! - [`domain`]: what a valid append is and how expected versions are checked; no
//!   openraft, redb or tarpc.
//! - [`matcher`]: which events a subscription selects; pure, like `domain`.
//! - [`command`]: the writes the state machine applies, as they travel in Raft entries
//!   (a persisted format: the log stores them).
//! - [`config`]: the node's configuration, layered with figment.
//! - [`storage`]: the state machine's redb database.
//! - [`raft`]: openraft adapters: the redb log store, the state machine, the network,
//!   and the node-to-node contract the network speaks.
//! - [`backup`]: online backups of a store (the file, its export while writes go on)
//!   and `reckon-node restore`.
//! - [`store`]: one store's Raft group: its group-commit batcher, reads, leadership
//!   transfer, and subscriptions (records through Raft, delivery by long-poll).
//! - [`service`]: the tarpc worker service over the node's stores.
//! - [`peer_service`]: the server of the node-to-node service over the node's stores.
//! - [`registrar`]: registering the node's workers with the gaters.
//! - [`prometheus`]: the metrics endpoint, in Prometheus text.
//! - `otel` (cargo feature `otel`): the metrics exported over OTLP to a collector.
//! - [`discovery`]: finding peers (static seeds, multicast, DNS).
//! - [`cluster`]: forming and joining store groups in cluster mode.
//! - [`notify`]: readiness and watchdog notifications to systemd.
//! - [`node`]: lock the data directory, open every store, serve them.
//! - [`run`]: a node's whole life as one call (what the binary, the embedded cluster
//!   and tests start): embedded gater, registrar, metrics, watchdog, drain order.
//! - [`embedded`]: a gater and a cluster of nodes in one process, for the demo and
//!   tests.

pub mod backup;
pub mod cluster;
pub mod command;
pub mod config;
pub mod discovery;
pub mod domain;
pub mod embedded;
pub mod matcher;
pub mod node;
pub mod notify;
#[cfg(feature = "otel")]
pub mod otel;
pub mod peer_service;
pub mod prometheus;
pub mod raft;
pub mod registrar;
pub mod run;
pub mod service;
pub mod storage;
pub mod store;
