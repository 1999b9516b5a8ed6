//! Finding the peers of a cluster: a static seed list, signed UDP multicast, or a
//! Kubernetes headless service in DNS (`discovery.method`).
//!
//! Discovery only proposes addresses (`HOST:PORT` of peers' node RPC); who a peer is
//! (its node id and stores) is asked over the node-to-node service by
//! [`crate::cluster`]. [`Discovery::peers`] never waits on the network: the methods
//! that need it ([`multicast`], [`dns`]) run a background task and `peers` reads what
//! that task found last.
//!
//! ```text
//!   static     config seeds ──────────────────────────────┐
//!   multicast  UDP group ── decode/verify ── PeerTable ───┼──> peers() ──> cluster
//!   k8s_dns    DNS SRV or A/AAAA ── latest resolution ────┘
//! ```

pub mod dns;
pub mod multicast;

use tokio::sync::watch;

use crate::config::{DiscoveryMethod, NodeConfig};

pub use dns::DnsDiscovery;
pub use multicast::{Multicast, MulticastStats};

/// Where peers are found. A cheap `Clone`: every clone reads the same state.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A fixed list of addresses.
    Static(Vec<String>),
    /// Peers heard announcing themselves on a multicast group.
    Multicast(Multicast),
    /// The records of a headless service in DNS.
    K8sDns(DnsDiscovery),
}

impl Discovery {
    /// Starts the configured method, spawning whatever background work it needs,
    /// which ends when `stop` turns true (or its sender is dropped).
    ///
    /// Must be called within a Tokio runtime when the method is `multicast` or
    /// `k8s_dns`.
    pub fn start(config: &NodeConfig, stop: watch::Receiver<bool>) -> Discovery {
        match config.discovery.method {
            DiscoveryMethod::Static => Discovery::Static(config.discovery.seeds.clone()),
            DiscoveryMethod::Multicast => Discovery::Multicast(Multicast::start(
                multicast::Settings::from_config(config),
                stop,
            )),
            DiscoveryMethod::K8sDns => {
                Discovery::K8sDns(match dns::Settings::from_config(config) {
                    Some(settings) => DnsDiscovery::start(settings, stop),
                    None => {
                        tracing::warn!(
                            "k8s_dns discovery has no discovery.service to resolve; this node finds \
                             no peers"
                        );
                        DnsDiscovery::idle()
                    }
                })
            }
        }
    }

    /// The peer addresses known now, `HOST:PORT` each. May include this node's own
    /// address; never waits on the network.
    pub async fn peers(&self) -> Vec<String> {
        match self {
            Discovery::Static(seeds) => seeds.clone(),
            Discovery::Multicast(multicast) => multicast.peers(),
            Discovery::K8sDns(dns) => dns.peers(),
        }
    }

    /// The datagram counters of multicast discovery; `None` for the other methods.
    pub fn multicast_stats(&self) -> Option<MulticastStats> {
        match self {
            Discovery::Multicast(multicast) => Some(multicast.stats()),
            _ => None,
        }
    }
}

/// Resolves once `stop` is true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
