//! Reading the final state a checker needs: each node's own copy of the global log
//! (stale reads straight from its worker service, so each node answers for itself),
//! the log as the cluster serves it (linearizable, through the gater), and a bounded
//! wait until every replica holds the same log.

use std::time::{Duration, Instant};

use reckon_gater::types::{Direction, EventRecord};
use reckon_gater::{Client, ClientError, StoreHandle};

use super::checker::{digest, Replica};

/// Events asked for per page.
pub const PAGE: u32 = 1000;

/// Deadline of one page read from one node.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most pages one read of a whole log takes (a bound; 10 million events).
const PAGES_MAX: usize = 10_000;

/// Every event the node at `addr` holds locally for `store`, by position, or why it
/// could not be read.
pub async fn local_log(addr: &str, store: &str) -> Result<Vec<EventRecord>, String> {
    let worker = tokio::time::timeout(PAGE_TIMEOUT, reckon_gater::worker::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} took over {PAGE_TIMEOUT:?}"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let local = StoreHandle::direct(worker, store, PAGE_TIMEOUT).stale();
    let mut out: Vec<EventRecord> = Vec::new();
    for _ in 0..PAGES_MAX {
        let from = out.last().map_or(0, |e| e.position + 1);
        let page = local
            .read_all(from, PAGE, Direction::Forward)
            .await
            .map_err(|e| format!("reading {addr} from {from}: {e}"))?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
    Err(format!("{addr} holds more than {PAGES_MAX} pages"))
}

/// The whole global log of `store` as the cluster serves it (linearizable reads
/// through the gater), paging forward.
pub async fn served_log(client: &Client, store: &str) -> Result<Vec<EventRecord>, ClientError> {
    let s = client.store(store);
    let mut out: Vec<EventRecord> = Vec::new();
    for _ in 0..PAGES_MAX {
        let from = out.last().map_or(0, |e| e.position + 1);
        let page = s.read_all(from, PAGE, Direction::Forward).await?;
        if page.is_empty() {
            break;
        }
        out.extend(page);
    }
    Ok(out)
}

/// Every node's local log; `nodes` are (name, address).
pub async fn read_replicas(nodes: &[(String, String)], store: &str) -> Vec<Replica> {
    let mut out = Vec::new();
    for (node, addr) in nodes {
        out.push(Replica {
            node: node.clone(),
            log: local_log(addr, store).await,
        });
    }
    out
}

/// Whether every replica was read and all hold the same log.
pub fn agree(replicas: &[Replica]) -> bool {
    let mut digests = replicas.iter().map(|r| r.log.as_ref().map(|l| digest(l)));
    match digests.next() {
        Some(Ok(first)) => digests.all(|d| d == Ok(first)),
        _ => false,
    }
}

/// What [`await_convergence`] saw last.
#[derive(Debug)]
pub struct Convergence {
    /// Each replica as last read.
    pub replicas: Vec<Replica>,
    /// Whether they all agreed.
    pub converged: bool,
    /// How long it took (or how long it waited before giving up).
    pub waited: Duration,
}

/// Polls every node's local log until all agree, for at most `limit`.
pub async fn await_convergence(
    nodes: &[(String, String)],
    store: &str,
    limit: Duration,
) -> Convergence {
    let started = Instant::now();
    loop {
        let replicas = read_replicas(nodes, store).await;
        let converged = agree(&replicas);
        if converged || started.elapsed() >= limit {
            return Convergence {
                replicas,
                converged,
                waited: started.elapsed(),
            };
        }
        tokio::time::sleep(crate::wait::POLL_EVERY * 4).await;
    }
}

/// One line per replica: its node, length and digest (or error).
pub fn describe(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| match &r.log {
            Ok(l) => {
                let (n, d) = digest(l);
                format!("node {}: {n} events, digest {d:016x}", r.node)
            }
            Err(e) => format!("node {}: unreadable: {e}", r.node),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
