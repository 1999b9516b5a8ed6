//! The worker service: what a node serves, per store it hosts, to gaters and tools.
//!
//! One call carries every store operation as a [`StoreRequest`] naming the store it
//! addresses; a node answers [`StoreError::UnknownStore`] for a store it does not
//! host. Writes go through the store's Raft group; reads are linearizable unless the
//! request asks for [`ReadConsistency::Stale`](crate::types::ReadConsistency::Stale).

use crate::metrics::StoreStats;
use crate::request::{StoreRequest, StoreResponse};
use crate::types::StoreError;

/// What a node serves.
#[tarpc::service]
pub trait Worker {
    /// One operation on `store`; see [`StoreRequest`] for each and its answer.
    async fn call(store: String, request: StoreRequest) -> Result<StoreResponse, StoreError>;

    /// Counters and latency histograms of every store this node hosts.
    async fn stats() -> Vec<StoreStats>;
}

/// Dials a node's worker service at `addr` (within
/// [`CONNECT_TIMEOUT`](crate::transport::CONNECT_TIMEOUT)).
pub async fn connect(addr: &str) -> std::io::Result<WorkerClient> {
    let transport = crate::transport::dial(addr, crate::transport::Service::Worker).await?;
    Ok(WorkerClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Dials a node's worker service at `addr` with `dialer` (plain or TLS).
pub async fn connect_with(
    dialer: &crate::transport::Dialer,
    addr: &str,
) -> std::io::Result<WorkerClient> {
    let transport = dialer.dial(addr, crate::transport::Service::Worker).await?;
    Ok(WorkerClient::new(tarpc::client::Config::default(), transport).spawn())
}
