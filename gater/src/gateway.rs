//! The gateway: the thin I/O shell around the [routing core](crate::router).
//!
//! It serves the [`Gater`] service, keeps one multiplexed connection per worker, and
//! for each call asks the registry where to go, applies the answer, and reports
//! faults back: a transport error or timeout marks the worker suspect and fails over
//! to the next; `NotLeader` redirects; passing errors back off with jitter; all inside
//! the caller's deadline.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;

use crate::api::{Gater, HealthReport, Lease, Registration, RegistryError, StoreStatus};
use crate::metrics::StoreStats;
use crate::pool::Pool;
use crate::request::{Route, StoreRequest, StoreResponse};
use crate::router::{classify, Decision, Registry, RetryPolicy};
use crate::telemetry;
use crate::tls::{self, Role, Tls};
use crate::transport::{self, Dialer};
use crate::types::StoreError;
use crate::worker::WorkerClient;

/// Requests one client connection may have in flight; more are refused.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1024;
/// How long a worker that failed a call is avoided.
pub const SUSPECT_FOR: Duration = Duration::from_secs(2);
/// Time kept back from the caller's deadline so that an answer can still travel back.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(20);

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Lease granted to workers.
    pub lease: Duration,
    /// Retry policy for routed calls.
    pub retry: RetryPolicy,
    /// Cluster secret; registrations must be signed with it when set.
    pub secret: Option<String>,
    /// TLS for clients and to workers; clear text when `None`.
    pub tls: Option<Tls>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            lease: Duration::from_millis(3000),
            retry: RetryPolicy::default(),
            secret: None,
            tls: None,
        }
    }
}

struct Inner {
    registry: Mutex<Registry>,
    pool: Pool<WorkerClient>,
    dialer: Dialer,
    opts: GatewayOptions,
}

/// The gateway service handler (a cheap clone).
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    /// Who is on the other end of the connection this clone serves, as its TLS
    /// certificate says; `None` in clear text or without a certificate.
    peer: Option<Role>,
}

impl Gateway {
    /// A gateway with an empty registry.
    pub fn new(opts: GatewayOptions) -> Self {
        Gateway {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::new(opts.lease, SUSPECT_FOR)),
                pool: Pool::default(),
                dialer: Dialer::new(opts.tls.clone()),
                opts,
            }),
            peer: None,
        }
    }

    /// The handler for one connection from `peer`.
    fn for_peer(&self, peer: Option<Role>) -> Gateway {
        Gateway {
            inner: self.inner.clone(),
            peer,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Serves the gater service on `listener` until `shutdown` resolves, expiring
    /// leases in the background, then drains: returns once every request already
    /// read is answered ([`transport::accept_loop`]).
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let expiry = {
            let me = self.clone();
            let tick = (self.inner.opts.lease / 10).max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut t = tokio::time::interval(tick);
                loop {
                    t.tick().await;
                    let dropped = me.registry().expire(Instant::now());
                    if dropped.is_empty() {
                        continue;
                    }
                    for (store, node_id) in dropped {
                        crate::emit!(telemetry::GATER_WORKER_UNREGISTERED, "store" => &store, "node_id" => node_id, "reason" => "lease_expired");
                    }
                    me.forget_dead_connections().await;
                }
            })
        };
        let me = self.clone();
        let tls = self.inner.opts.tls.clone();
        transport::accept_loop_with(listener, tls, shutdown, move |service, stream, peer| {
            let me = me.for_peer(stream.peer().cloned());
            async move {
                if service != transport::Service::Gater {
                    tracing::debug!(%peer, ?service, "a gater serves only the gater service");
                    return;
                }
                let channel = BaseChannel::with_defaults(transport::wrap(stream))
                    .max_concurrent_requests(MAX_REQUESTS_PER_CONNECTION);
                transport::spawn_requests(channel.execute(me.serve())).await;
            }
        })
        .await;
        expiry.abort();
    }

    /// The worker addresses registered now, each once (a node serves all its stores
    /// on one address).
    fn worker_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .registry()
            .status(Instant::now())
            .into_iter()
            .flat_map(|s| s.nodes.into_iter().map(|n| n.address))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// Closes the connections to addresses no registered worker has any more.
    async fn forget_dead_connections(&self) {
        let live = self.worker_addresses();
        self.inner
            .pool
            .retain(|addr| live.iter().any(|l| l == addr));
    }

    /// A client for `addr` and whether it came from the pool (it may be stale: the
    /// worker may have restarted since it was dialled).
    async fn client(&self, addr: &str) -> Result<(WorkerClient, bool), std::io::Error> {
        self.inner
            .pool
            .get_or_dial(addr, || {
                crate::worker::connect_with(&self.inner.dialer, addr)
            })
            .await
    }

    fn drop_client(&self, addr: &str) {
        self.inner.pool.forget(addr);
    }

    /// Routes one call to a worker of `store`, following the rules of the module docs.
    async fn route<T, F, Fut>(
        &self,
        ctx: &Context,
        store: &str,
        kind: Route,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(WorkerClient, Context) -> Fut,
        Fut: Future<Output = Result<Result<T, StoreError>, RpcError>>,
    {
        let deadline = ctx
            .deadline
            .checked_sub(DEADLINE_MARGIN)
            .unwrap_or(ctx.deadline);
        let policy = self.inner.opts.retry;
        let mut tried: Vec<u64> = Vec::new();
        let mut last_err: Option<StoreError> = None;
        let mut redirected = false;
        let mut redialled: Vec<u64> = Vec::new();
        let mut attempts = 0u32;
        for attempt in 0..=policy.retries_max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            attempts += 1;
            let picked = self.registry().pick(store, kind, now, &tried);
            let target = match picked {
                Ok(t) => t,
                Err(e @ StoreError::NoWorkers { .. }) => return Err(e),
                Err(e) => {
                    // Every worker failed this call: start over after a pause.
                    last_err = Some(e);
                    tried.clear();
                    self.pause(attempt, deadline).await;
                    continue;
                }
            };
            let (client, pooled) = match tokio::time::timeout(
                deadline.saturating_duration_since(now),
                self.client(&target.address),
            )
            .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    crate::emit!(telemetry::GATER_REQUEST_RETRY, "store" => store, "node_id" => target.node_id, "attempt" => attempt, "error" => format!("unreachable: {e}"));
                    self.registry()
                        .mark_suspect(store, target.node_id, Instant::now());
                    tried.push(target.node_id);
                    last_err = Some(StoreError::Unavailable {
                        reason: format!("worker {} at {}: {e}", target.node_id, target.address),
                    });
                    continue;
                }
                Err(_) => break,
            };
            let mut child = *ctx;
            child.deadline = deadline;
            match call(client, child).await {
                Ok(Ok(v)) => {
                    self.registry().mark_healthy(store, target.node_id);
                    return Ok(v);
                }
                Ok(Err(e)) => match classify(&e) {
                    Decision::Return => return Err(e),
                    Decision::Redirect(leader) => {
                        crate::emit!(telemetry::GATER_REQUEST_RETRY, "store" => store, "node_id" => target.node_id, "attempt" => attempt, "error" => e.kind());
                        self.registry().note_leader(store, leader);
                        // Follow the first redirect at once; after that the group is
                        // likely mid-election, so give it time to settle.
                        if redirected || leader.is_none() || leader == Some(target.node_id) {
                            self.pause(attempt, deadline).await;
                        }
                        redirected = true;
                        last_err = Some(e);
                    }
                    Decision::Backoff => {
                        crate::emit!(telemetry::GATER_REQUEST_RETRY, "store" => store, "node_id" => target.node_id, "attempt" => attempt, "error" => e.kind());
                        last_err = Some(e);
                        self.pause(attempt, deadline).await;
                    }
                },
                Err(rpc) => {
                    crate::emit!(telemetry::GATER_REQUEST_RETRY, "store" => store, "node_id" => target.node_id, "attempt" => attempt, "error" => rpc.to_string());
                    self.drop_client(&target.address);
                    let dead_conn = !matches!(rpc, RpcError::DeadlineExceeded);
                    if pooled && dead_conn && !redialled.contains(&target.node_id) {
                        // A pooled connection can outlive the worker process behind it:
                        // dial the same worker once more before counting it as failed.
                        redialled.push(target.node_id);
                        continue;
                    }
                    self.registry()
                        .mark_suspect(store, target.node_id, Instant::now());
                    tried.push(target.node_id);
                    last_err = Some(match rpc {
                        RpcError::DeadlineExceeded => StoreError::Timeout {
                            what: format!("call to worker {}", target.node_id),
                        },
                        other => StoreError::Unavailable {
                            reason: format!("worker {}: {other}", target.node_id),
                        },
                    });
                }
            }
        }
        let err = last_err.unwrap_or_else(|| StoreError::Timeout {
            what: format!("no answer from store {store:?} within the caller's deadline"),
        });
        crate::emit!(telemetry::GATER_REQUEST_RETRIES_EXHAUSTED, "store" => store, "attempts" => attempts, "error" => err.kind());
        Err(err)
    }

    async fn pause(&self, attempt: u32, deadline: Instant) {
        let d = self
            .inner
            .opts
            .retry
            .backoff(attempt, rand::random::<f64>());
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(d.min(left)).await;
    }

    fn check(&self, reg: &Registration) -> Result<(), RegistryError> {
        crate::auth::verify(
            reg,
            self.inner.opts.secret.as_deref(),
            crate::auth::now_us(),
        )
        .map_err(RegistryError::Unauthorized)?;
        // With TLS only a node speaks for itself: a client's or another node's
        // certificate cannot register, move or remove node N's workers.
        if self.inner.opts.tls.is_some()
            && !tls::may_register(self.peer.as_ref(), reg.worker.node_id)
        {
            return Err(RegistryError::Unauthorized(format!(
                "node {}'s workers are registered only over a connection with node {}'s certificate; this one has {}",
                reg.worker.node_id,
                reg.worker.node_id,
                self.peer.as_ref().map_or_else(|| "none".to_string(), |r| r.to_string())
            )));
        }
        if reg.worker.store.is_empty() || reg.worker.address.is_empty() {
            return Err(RegistryError::Invalid(
                "store and address must not be empty".into(),
            ));
        }
        Ok(())
    }

    fn lease(&self) -> Lease {
        Lease {
            lease_ms: self.inner.opts.lease.as_millis() as u64,
        }
    }
}

impl Gater for Gateway {
    async fn register(self, _: Context, reg: Registration) -> Result<Lease, RegistryError> {
        self.check(&reg)?;
        let (store, node_id, addr) = (
            reg.worker.store.clone(),
            reg.worker.node_id,
            reg.worker.address.clone(),
        );
        if self.registry().register(reg.worker, Instant::now()) {
            crate::emit!(telemetry::GATER_WORKER_REGISTERED, "store" => &store, "node_id" => node_id, "address" => &addr);
        }
        Ok(self.lease())
    }

    async fn heartbeat(self, _: Context, reg: Registration) -> Result<Lease, RegistryError> {
        self.check(&reg)?;
        if self.registry().heartbeat(reg.worker, Instant::now()) {
            Ok(self.lease())
        } else {
            Err(RegistryError::UnknownWorker)
        }
    }

    async fn deregister(self, _: Context, reg: Registration) -> Result<(), RegistryError> {
        self.check(&reg)?;
        if self
            .registry()
            .remove(&reg.worker.store, reg.worker.node_id)
        {
            crate::emit!(telemetry::GATER_WORKER_UNREGISTERED, "store" => &reg.worker.store, "node_id" => reg.worker.node_id, "reason" => "deregistered");
        }
        Ok(())
    }

    async fn health(self, _: Context) -> HealthReport {
        self.registry().health(Instant::now())
    }

    async fn list_stores(self, _: Context) -> Vec<String> {
        self.registry().stores()
    }

    async fn cluster_status(self, _: Context) -> Vec<StoreStatus> {
        self.registry().status(Instant::now())
    }

    async fn stats(self, ctx: Context) -> Vec<StoreStats> {
        let addresses = self.worker_addresses();
        let deadline = ctx
            .deadline
            .checked_sub(DEADLINE_MARGIN)
            .unwrap_or(ctx.deadline);
        let asks = addresses.into_iter().map(|addr| {
            let me = self.clone();
            async move {
                let ask = async {
                    let (client, _) = me.client(&addr).await.ok()?;
                    let mut cx = tarpc::context::current();
                    cx.deadline = deadline;
                    match client.stats(cx).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "stats: worker did not answer");
                            me.drop_client(&addr);
                            None
                        }
                    }
                };
                tokio::time::timeout_at(deadline.into(), ask)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
        });
        let mut all: Vec<StoreStats> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| (&a.store, a.node_id).cmp(&(&b.store, b.node_id)));
        all
    }

    async fn call(
        self,
        ctx: Context,
        store: String,
        mut request: StoreRequest,
    ) -> Result<StoreResponse, StoreError> {
        if let StoreRequest::Append { events, .. } = &mut request {
            // Every event gets its id before the first attempt, so that an attempt
            // the gater retries elsewhere (after a timeout, a lost connection, a
            // redirect) is recognised by the store as the same append, wherever it
            // went through.
            for e in events {
                e.event_id.get_or_insert_with(uuid::Uuid::now_v7);
            }
        }
        self.route(&ctx, &store, request.route(), |c, cx| {
            let (store, request) = (store.clone(), request.clone());
            async move { c.call(cx, store, request).await }
        })
        .await
    }
}
