//! Forming and joining store groups in cluster mode, without split brain.
//!
//! For every store whose group this node has not initialized, a task asks the peers
//! that discovery finds who they are ([`hello`](crate::raft::peer::RaftService::hello)):
//!
//! - if a peer already has the store's group, this node joins it: the leader adds it
//!   as a learner, waits until it has caught up, then makes it a voter;
//! - otherwise, once `bootstrap_expect` nodes (this one included) know of each other,
//!   the one with the lowest id initializes the group with all of them as voters, and
//!   the others wait to be contacted by the new leader;
//! - a node with state never initializes again (openraft refuses, and the task sees
//!   the group is initialized before trying).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use reckon_gater::types::StoreError;
use tokio::sync::watch;

use crate::discovery::Discovery;
use crate::raft::network::{deadline_ctx, PeerPool};
use crate::raft::peer::Hello;
use crate::raft::NodeId;
use crate::store::Store;

/// Pause between bootstrap rounds.
pub const BOOTSTRAP_POLL: Duration = Duration::from_millis(250);
/// Deadline of one hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of one join (the leader waits for the learner to catch up).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed by one join attempt.
pub const JOIN_REDIRECTS_MAX: usize = 3;

/// Who this node is.
#[derive(Debug, Clone)]
pub struct Me {
    /// Its id.
    pub node_id: NodeId,
    /// The address peers dial.
    pub advertise: String,
    /// Voters at first start.
    pub bootstrap_expect: usize,
}

/// Runs until `store`'s group is initialized on this node (or `stop`).
pub async fn form_or_join(
    store: Arc<Store>,
    me: Me,
    discovery: Discovery,
    pool: PeerPool,
    mut stop: watch::Receiver<bool>,
) {
    let name = store.name().to_string();
    loop {
        if *stop.borrow() {
            return;
        }
        if store.raft().is_initialized().await.unwrap_or(false) {
            tracing::info!(target: "reckon_db", store = name, "store group is formed on this node");
            return;
        }
        match round(&store, &me, &discovery, &pool).await {
            Ok(true) => {}
            Ok(false) => {}
            Err(e) => tracing::debug!(store = name, error = %e, "bootstrap round"),
        }
        tokio::select! {
            _ = tokio::time::sleep(BOOTSTRAP_POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn hellos(me: &Me, discovery: &Discovery, pool: &PeerPool) -> Vec<Hello> {
    let mut out = Vec::new();
    for addr in discovery.peers().await {
        if addr == me.advertise {
            continue;
        }
        let Ok(c) = pool.client(&addr).await else {
            continue;
        };
        match c.hello(deadline_ctx(HELLO_TIMEOUT)).await {
            Ok(h) if h.node_id != me.node_id => out.push(h),
            Ok(_) => {}
            Err(_) => pool.forget(&addr).await,
        }
    }
    out
}

/// One round; `Ok(true)` when this node initialized or joined.
async fn round(
    store: &Store,
    me: &Me,
    discovery: &Discovery,
    pool: &PeerPool,
) -> Result<bool, String> {
    let name = store.name();
    let peers = hellos(me, discovery, pool).await;
    let formed: Vec<&Hello> = peers
        .iter()
        .filter(|h| h.stores.iter().any(|(s, init)| s == name && *init))
        .collect();
    if !formed.is_empty() {
        for h in formed {
            if join(name, me, &h.advertise, pool).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let mut known: BTreeMap<NodeId, String> = peers
        .iter()
        .filter(|h| h.stores.iter().any(|(s, _)| s == name))
        .map(|h| (h.node_id, h.advertise.clone()))
        .collect();
    known.insert(me.node_id, me.advertise.clone());
    if known.len() < me.bootstrap_expect {
        tracing::debug!(
            store = name,
            known = known.len(),
            expect = me.bootstrap_expect,
            "waiting for peers"
        );
        return Ok(false);
    }
    if known.keys().next() != Some(&me.node_id) {
        // The lowest id initializes; this node waits to be contacted by the leader.
        return Ok(false);
    }
    let members: BTreeMap<NodeId, BasicNode> = known
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    let ids: Vec<NodeId> = members.keys().copied().collect();
    store
        .raft()
        .initialize(members)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(target: "reckon_db", store = name, voters = ?ids, "store group initialized");
    Ok(true)
}

async fn join(store: &str, me: &Me, via: &str, pool: &PeerPool) -> Result<bool, String> {
    let mut addr = via.to_string();
    for _ in 0..=JOIN_REDIRECTS_MAX {
        let c = pool.client(&addr).await.map_err(|e| e.to_string())?;
        match c
            .join(
                deadline_ctx(JOIN_TIMEOUT),
                store.to_string(),
                me.node_id,
                me.advertise.clone(),
            )
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(target: "reckon_db", store, via = addr, "joined the store group");
                return Ok(true);
            }
            Ok(Err(StoreError::NotLeader {
                leader_addr: Some(l),
                ..
            })) => addr = l,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => {
                pool.forget(&addr).await;
                return Err(e.to_string());
            }
        }
    }
    Ok(false)
}
