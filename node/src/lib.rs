//! reckon-node: the node that holds reckon-db's data.
//!
//! The layers, each ignorant of the ones above it:
//!
//! - [`domain`]: what a valid append is and how expected versions are checked; no
//!   openraft, redb or tarpc.
//! - [`matcher`]: which events a subscription selects; pure, like `domain`.
//! - [`command`]: the writes the state machine applies, as they travel in Raft entries
//!   (a persisted format: the log stores them).
//! - [`storage`]: the state machine's redb database.
//! - [`raft`]: openraft adapters: the redb log store, the state machine, the network.
//! - [`store`]: one store's Raft group with its group-commit batcher and reads.
//! - [`subscriptions`]: subscriptions: records through Raft, delivery by long-poll.
//! - [`service`]: the tarpc worker service over the node's stores.
//! - [`node`]: lock the data directory, open every store, serve them.
//! - [`run`]: a node's whole life as one call (what the binary, the embedded cluster
//!   and tests start): embedded gater, registrar, metrics, watchdog, drain order.
//! - [`cluster`]: forming and joining store groups in cluster mode.
//! - [`discovery`]: finding peers (static seeds, multicast, DNS).
//! - [`notify`]: readiness and watchdog notifications to systemd.
//! - [`registrar`]: registering the node's workers with the gaters.
//! - [`config`]: the node's configuration, layered with figment.

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
pub mod prometheus;
pub mod raft;
pub mod registrar;
pub mod run;
pub mod service;
pub mod storage;
pub mod store;
pub mod subscriptions;
