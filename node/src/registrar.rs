//! Registering this node's workers with the gaters, and keeping their leases.
//!
//! One task per configured gater: it connects, registers one worker per store, then
//! heartbeats every third of the granted lease, reporting each worker's role, leader,
//! term and indexes. A gater that answers "unknown worker" (it restarted, or the lease
//! ran out) gets a fresh registration; a broken connection is redialled with a
//! bounded backoff. On stop, every worker is deregistered so gaters drop it at once.

use std::time::Duration;

use reckon_gater::api::{GaterClient, WorkerInfo};
use reckon_gater::auth;
use reckon_gater::types::Role;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{Store, Stores};

/// The longest pause between attempts to reach a gater.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The first pause between attempts to reach a gater.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How long one registry call may take.
pub const REGISTRY_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the node checks its workers' roles for a change worth an early heartbeat.
pub const ROLE_POLL: Duration = Duration::from_millis(50);
/// How long deregistering may hold up a shutdown.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Who this node is, for its registrations.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node's id.
    pub node_id: u64,
    /// The address gaters dial.
    pub advertise: String,
    /// The cluster secret registrations are signed with.
    pub secret: Option<String>,
    /// How gaters are dialled: with the node's TLS, or in clear text.
    pub dialer: reckon_gater::transport::Dialer,
}

/// The running registration tasks.
pub struct Registrar {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A worker's current description, from its Raft metrics.
pub fn worker_info(store: &Store, id: &Identity) -> WorkerInfo {
    let m = store.raft().metrics().borrow().clone();
    let role = store.role();
    WorkerInfo {
        node_id: id.node_id,
        store: store.name().to_string(),
        address: id.advertise.clone(),
        role,
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        leader_changes: store
            .metrics()
            .leader_changes
            .load(std::sync::atomic::Ordering::Relaxed),
        appended_events: store
            .metrics()
            .appended_events
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = std::time::Instant::now() + REGISTRY_CALL_TIMEOUT;
    c
}

impl Registrar {
    /// Starts one registration task per gater.
    pub fn start(stores: Stores, id: Identity, gaters: &[String]) -> Registrar {
        let (stop, rx) = watch::channel(false);
        let tasks = gaters
            .iter()
            .map(|g| tokio::spawn(run(g.clone(), stores.clone(), id.clone(), rx.clone())))
            .collect();
        Registrar { stop, tasks }
    }

    /// Deregisters every worker (bounded by [`DEREGISTER_TIMEOUT`]) and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(DEREGISTER_TIMEOUT * 2, t).await;
        }
    }
}

async fn run(gater: String, stores: Stores, id: Identity, mut stop: watch::Receiver<bool>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        match session(&gater, &stores, &id, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(gater, error = %e, "gater session ended; reconnecting");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// One connection's life: register, heartbeat until stopped (`Ok`) or broken (`Err`).
async fn session(
    gater: &str,
    stores: &Stores,
    id: &Identity,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let t = id
        .dialer
        .dial(gater, reckon_gater::transport::Service::Gater)
        .await
        .map_err(|e| e.to_string())?;
    let client = GaterClient::new(tarpc::client::Config::default(), t).spawn();
    let mut lease_ms = u64::MAX;
    for store in stores.values() {
        let reg = auth::sign(worker_info(store, id), id.secret.as_deref());
        match client.register(ctx(), reg).await {
            Ok(Ok(l)) => lease_ms = lease_ms.min(l.lease_ms),
            Ok(Err(e)) => {
                tracing::error!(gater, store = store.name(), error = %e, "gater refused registration");
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    tracing::info!(gater, stores = stores.len(), "registered with gater");
    let every = Duration::from_millis((lease_ms / 3).clamp(10, 10_000));
    let mut tick = tokio::time::interval(ROLE_POLL);
    let mut last_sent = std::time::Instant::now();
    let mut last_seen: Vec<(Role, Option<u64>, u64)> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                deregister(&client, stores, id).await;
                return Ok(());
            }
        }
        // Heartbeat when due, or at once when a role, leader or term changed, so that
        // gaters route writes to a new leader without waiting for the next beat.
        let infos: Vec<WorkerInfo> = stores.values().map(|s| worker_info(s, id)).collect();
        let seen: Vec<_> = infos.iter().map(|i| (i.role, i.leader, i.term)).collect();
        if seen == last_seen && last_sent.elapsed() < every {
            continue;
        }
        last_seen = seen;
        last_sent = std::time::Instant::now();
        for info in infos {
            let store = info.store.clone();
            let reg = auth::sign(info, id.secret.as_deref());
            match client.heartbeat(ctx(), reg.clone()).await {
                Ok(Ok(_)) => {}
                Ok(Err(reckon_gater::api::RegistryError::UnknownWorker)) => {
                    match client.register(ctx(), reg).await {
                        Ok(Ok(_)) => tracing::info!(gater, store, "re-registered with gater"),
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

async fn deregister(client: &GaterClient, stores: &Stores, id: &Identity) {
    for store in stores.values() {
        let reg = auth::sign(worker_info(store, id), id.secret.as_deref());
        let _ = tokio::time::timeout(DEREGISTER_TIMEOUT, client.deregister(ctx(), reg)).await;
    }
}
