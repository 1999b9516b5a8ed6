//! The KurrentDB v1 client protocol as Rust types and tonic service traits,
//! generated at build time from `gater/proto/kurrent/*.proto` (see `build.rs`).
//!
//! Modules follow the protobuf packages: [`event_store::client::streams`],
//! [`event_store::client::gossip`], [`event_store::client::server_features`],
//! [`event_store::client::persistent_subscriptions`], and `google.rpc`'s status.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/kurrent_proto.rs"));
