//! Online backup and restore of a store.
//!
//! - [`format`](mod@format): the backup file: a checked header saying what it holds,
//!   then the store's state file as of one applied Raft entry.
//! - [`export`]: the backups a store's node is writing or serving: a pinned read view
//!   of the state copied into a file while writes go on, read by clients in chunks
//!   (the conversation is in `reckon_gater::backup`), removed when ended or idle.
//! - [`restore`]: `reckon-node restore`: a data directory seeded from backup files, in
//!   which each store is a group of one that a cluster can grow from.
//!
//! The store (`crate::store`) takes a backup's read view after a linearizable
//! barrier, so a backup holds everything acknowledged before it was asked for.
//! This module knows the state file and the Raft layer's records, not the store.

pub mod export;
pub mod format;
pub mod restore;
