//! The gateway: the thin I/O shell around the [routing core](crate::router).
//!
//! It serves the [`Gater`] service, keeps one multiplexed connection per worker, and
//! for each call asks the registry where to go, applies the answer, and reports
//! faults back: a transport error or timeout marks the worker suspect and fails over
//! to the next; `NotLeader` redirects; passing errors back off with jitter; all inside
//! the caller's deadline.
//!
//! Each client connection gets its own handler ([`Gateway::connection`]) that keeps
//! the [`Principal`] the connection authenticated as; every call is checked against
//! it ([`crate::access`]) before anything is routed, so a refused call changes
//! nothing. Refusals and admin operations are audited: a telemetry event (logged by
//! the default handler) naming principal, store and action, and a count in
//! [`HealthReport::audit`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tarpc::client::RpcError;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;

use crate::access::{Authority, NonStoreCall, Permission, Principal, Refusal};
use crate::api::{
    AuditCounts, Gater, HealthReport, Lease, Registration, RegistryError, StoreStatus,
};
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
    /// Who may call what; open (everyone, everything) when nothing is configured.
    pub authority: Arc<Authority>,
    /// TLS for clients and to workers; clear text when `None`.
    pub tls: Option<Tls>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            lease: Duration::from_millis(3000),
            retry: RetryPolicy::default(),
            secret: None,
            authority: Arc::default(),
            tls: None,
        }
    }
}

struct Inner {
    registry: Mutex<Registry>,
    pool: Pool<WorkerClient>,
    dialer: Dialer,
    opts: GatewayOptions,
    audit: Audit,
}

/// The audit's counters (see [`AuditCounts`]).
#[derive(Default)]
struct Audit {
    auth_failures: AtomicU64,
    permission_denied: AtomicU64,
    admin_actions: AtomicU64,
}

/// The gateway service handler (a cheap clone). One per connection carries that
/// connection's principal; clones share it.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    principal: Arc<Mutex<Option<Arc<Principal>>>>,
    /// Who is on the other end of the connection this clone serves, as its TLS
    /// certificate says; `None` in clear text or without a certificate.
    peer: Option<Role>,
}

impl Gateway {
    /// A gateway with an empty registry. Served as is (not through
    /// [`Gateway::serve`], which makes one handler per connection), it acts for a
    /// connection that has not authenticated: everyone on an open gater.
    pub fn new(opts: GatewayOptions) -> Self {
        let initial = opts.authority.initial_principal(None).map(Arc::new);
        Gateway {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::new(opts.lease, SUSPECT_FOR)),
                pool: Pool::default(),
                dialer: Dialer::new(opts.tls.clone()),
                opts,
                audit: Audit::default(),
            }),
            principal: Arc::new(Mutex::new(initial)),
            peer: None,
        }
    }

    /// The handler for one new connection from `peer`, the role its TLS certificate
    /// verified (none in clear text or without a certificate). It starts as the
    /// principal a client certificate's name maps to in `[[clients]]`, as everyone on
    /// an open gater, or unauthenticated; [`Gater::authenticate`] changes that for
    /// this connection only. A node's role is what its registrations are checked
    /// against.
    pub fn connection(&self, peer: Option<Role>) -> Gateway {
        let certificate_name = match &peer {
            Some(Role::Client(name)) => Some(name.as_str()),
            _ => None,
        };
        let initial = self
            .inner
            .opts
            .authority
            .initial_principal(certificate_name);
        Gateway {
            inner: self.inner.clone(),
            principal: Arc::new(Mutex::new(initial.map(Arc::new))),
            peer,
        }
    }

    fn principal(&self) -> Option<Arc<Principal>> {
        self.principal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn audit_unauthenticated(&self, store: &str, action: &str, reason: &str) -> StoreError {
        self.inner
            .audit
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
        crate::emit!(telemetry::GATER_AUTH_FAILED, "principal" => "-", "store" => store, "action" => action, "reason" => reason);
        StoreError::Unauthenticated {
            reason: reason.to_string(),
        }
    }

    /// Checks that this connection may do `needs` on `store`; a refusal is audited.
    fn authorize(
        &self,
        store: &str,
        action: &str,
        needs: Permission,
    ) -> Result<Arc<Principal>, StoreError> {
        let principal = self.principal();
        match Authority::authorize(principal.as_deref(), store, needs) {
            Ok(()) => Ok(principal.expect("authorize accepts only a principal")),
            Err(Refusal::Unauthenticated) => Err(self.audit_unauthenticated(
                store,
                action,
                "this gater requires a token: give --token or RECKON_TOKEN",
            )),
            Err(Refusal::Denied { principal, needs }) => {
                self.inner
                    .audit
                    .permission_denied
                    .fetch_add(1, Ordering::Relaxed);
                crate::emit!(telemetry::GATER_ACCESS_DENIED, "principal" => &principal, "store" => store, "action" => action, "needs" => needs.name());
                Err(StoreError::PermissionDenied {
                    principal,
                    store: store.to_string(),
                    action: action.to_string(),
                    needs: needs.name().to_string(),
                })
            }
        }
    }

    /// The principal for a call not about one store (see [`NonStoreCall`]).
    fn authorize_non_store(
        &self,
        call: NonStoreCall,
    ) -> Result<Option<Arc<Principal>>, StoreError> {
        let Some(needs) = call.permission() else {
            return Ok(None);
        };
        let Some(principal) = self.principal() else {
            return Err(self.audit_unauthenticated(
                "-",
                call.name(),
                "this gater requires a token: give --token or RECKON_TOKEN",
            ));
        };
        if let Some(p) = needs {
            if !principal.holds_anywhere(p) {
                self.inner
                    .audit
                    .permission_denied
                    .fetch_add(1, Ordering::Relaxed);
                crate::emit!(telemetry::GATER_ACCESS_DENIED, "principal" => &principal.name, "store" => "*", "action" => call.name(), "needs" => p.name());
                return Err(StoreError::PermissionDenied {
                    principal: principal.name.clone(),
                    store: "*".into(),
                    action: call.name().into(),
                    needs: p.name().into(),
                });
            }
        }
        Ok(Some(principal))
    }

    fn audit_counts(&self) -> AuditCounts {
        let a = &self.inner.audit;
        AuditCounts {
            auth_failures: a.auth_failures.load(Ordering::Relaxed),
            permission_denied: a.permission_denied.load(Ordering::Relaxed),
            admin_actions: a.admin_actions.load(Ordering::Relaxed),
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
            let handler = me.connection(stream.peer().cloned());
            async move {
                if service != transport::Service::Gater {
                    tracing::debug!(%peer, ?service, "a gater serves only the gater service");
                    return;
                }
                let channel = BaseChannel::with_defaults(transport::wrap(stream))
                    .max_concurrent_requests(MAX_REQUESTS_PER_CONNECTION);
                transport::spawn_requests(channel.execute(handler.serve())).await;
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

    /// Checks, routes and audits one store request for this connection, as
    /// [`Gater::call`] does, but asks the caller for `needs` rather than for what the
    /// request itself needs. For a front door one of whose operations is made of
    /// several requests: a KurrentDB catch-up subscription is a read for its client,
    /// served by creating (once) and polling a store subscription. Everything else
    /// (the access check, routing, failover, the audit of admin actions) is the path
    /// every tarpc call takes.
    pub async fn call_as(
        &self,
        ctx: Context,
        store: String,
        mut request: StoreRequest,
        needs: Permission,
    ) -> Result<StoreResponse, StoreError> {
        let principal = self.authorize(&store, request.name(), needs)?;
        if let StoreRequest::Append { events, .. } = &mut request {
            // Every event gets its id before the first attempt, so that an attempt
            // the gater retries elsewhere (after a timeout, a lost connection, a
            // redirect) is recognised by the store as the same append, wherever it
            // went through.
            for e in events {
                e.event_id.get_or_insert_with(uuid::Uuid::now_v7);
            }
        }
        let action = request.name();
        let answer = self
            .route(&ctx, &store, request.route(), |c, cx| {
                let (store, request) = (store.clone(), request.clone());
                async move { c.call(cx, store, request).await }
            })
            .await;
        if needs == Permission::Admin {
            self.inner
                .audit
                .admin_actions
                .fetch_add(1, Ordering::Relaxed);
            let outcome = answer.as_ref().map_or_else(|e| e.kind(), |_| "ok");
            crate::emit!(telemetry::GATER_ADMIN_ACTION, "principal" => &principal.name, "store" => &store, "action" => action, "outcome" => outcome);
        }
        answer
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
        let mut h = self.registry().health(Instant::now());
        h.audit = self.audit_counts();
        h
    }

    async fn list_stores(self, _: Context) -> Result<Vec<String>, StoreError> {
        let p = self.authorize_non_store(NonStoreCall::ListStores)?;
        let mut stores = self.registry().stores();
        stores.retain(|s| p.as_ref().is_none_or(|p| p.sees(s)));
        Ok(stores)
    }

    async fn cluster_status(self, _: Context) -> Result<Vec<StoreStatus>, StoreError> {
        let p = self.authorize_non_store(NonStoreCall::ClusterStatus)?;
        let mut status = self.registry().status(Instant::now());
        status.retain(|s| p.as_ref().is_none_or(|p| p.sees(&s.store)));
        Ok(status)
    }

    async fn stats(self, ctx: Context) -> Result<Vec<StoreStats>, StoreError> {
        let p = self.authorize_non_store(NonStoreCall::Stats)?;
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
        all.retain(|s| {
            p.as_ref()
                .is_none_or(|p| p.allows(&s.store, Permission::Admin))
        });
        all.sort_by(|a, b| (&a.store, a.node_id).cmp(&(&b.store, b.node_id)));
        Ok(all)
    }

    async fn call(
        self,
        ctx: Context,
        store: String,
        request: StoreRequest,
    ) -> Result<StoreResponse, StoreError> {
        let needs = request.permission();
        self.call_as(ctx, store, request, needs).await
    }

    async fn authenticate(
        self,
        _: Context,
        token: Option<String>,
    ) -> Result<Principal, StoreError> {
        let authority = &self.inner.opts.authority;
        if authority.is_open() {
            return Ok(Principal::open());
        }
        let found = token
            .as_deref()
            .and_then(|t| authority.authenticate_token(t));
        let mut slot = self.principal.lock().unwrap_or_else(|p| p.into_inner());
        match found {
            Some(p) => {
                let p = Arc::new(p);
                *slot = Some(p.clone());
                Ok(Principal::clone(&p))
            }
            None if token.is_none() => match slot.clone() {
                // No token, but a verified certificate's principal: keep it.
                Some(p) => Ok(Principal::clone(&p)),
                None => {
                    drop(slot);
                    Err(self.audit_unauthenticated("-", "authenticate", "no token given"))
                }
            },
            None => {
                // A token not accepted: the connection loses what it had.
                *slot = None;
                drop(slot);
                Err(self.audit_unauthenticated(
                    "-",
                    "authenticate",
                    "the token is not accepted by this gater (wrong, or removed from its config)",
                ))
            }
        }
    }
}
