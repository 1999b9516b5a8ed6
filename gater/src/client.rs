//! The client library: typed calls to a reckon-db cluster through its gaters.
//!
//! ```no_run
//! use reckon_gater::{Client, ExpectedVersion, NewEvent};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), reckon_gater::ClientError> {
//! let client = Client::connect(&["127.0.0.1:7700"]).await?;
//! let store = client.store("default");
//! let appended = store
//!     .append("order-1", ExpectedVersion::NoStream, vec![NewEvent::json("placed", &json!({"total": 5}))])
//!     .await?;
//! assert_eq!(appended.version, 0);
//! let events = store.read("order-1", 0, 100).await?;
//! assert_eq!(events[0].event_type, "placed");
//! # Ok(()) }
//! ```
//!
//! Every call has a deadline ([`Client::with_timeout`], 5 s by default) that the gater
//! honours end to end. When a gater cannot be reached the call moves on to the next
//! one in the list. Events without an id get a UUIDv7 here, before the first attempt,
//! so a retried append is recognised by the store and never written twice.
//!
//! A gater with tokens configured wants one: build the client with
//! [`Client::builder`] and [`ClientBuilder::token`]. The token travels once per
//! connection: right after dialling a gater, before any other call, the client calls
//! [`Gater::authenticate`](crate::api::Gater::authenticate) and the gater keeps the
//! principal for that connection. Every new connection (another gater after a
//! failover, a redial after a fault) authenticates again the same way.
//!
//! ```no_run
//! # async fn demo() -> Result<(), reckon_gater::ClientError> {
//! let client = reckon_gater::Client::builder(&["127.0.0.1:7700"])
//!     .token(std::env::var("RECKON_TOKEN").unwrap_or_default())
//!     .connect()
//!     .await?;
//! println!("acting as {}", client.access().await?.name);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tarpc::client::RpcError;

use crate::access::Principal;
use crate::api::{GaterClient, HealthReport, StoreStatus};
use crate::metrics::StoreStats;
use crate::page::{EventPage, PageError};
use crate::pool::Pool;
use crate::request::{StoreRequest, StoreResponse};
use crate::subscription::{Delivery, SubscribeOptions, SubscriptionInfo};
use crate::tls::Tls;
use crate::transport::Dialer;
use crate::types::{
    AppendResult, Direction, EventRecord, ExpectedVersion, NewEvent, ReadConsistency,
    ScavengeAction, ScavengeStatus, SnapshotRecord, StoreError, StreamInfo, StreamPage,
    StreamRetention, SubscriptionType, TagMatch,
};
use crate::worker::WorkerClient;

/// The default per-call deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a call can fail with: the store's answer, or no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The store answered with an error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No gater could be reached or none answered.
    #[error("Unavailable: no gater answered ({0})")]
    Transport(String),
    /// The call's deadline passed.
    #[error("Timeout: no answer within {0:?}")]
    Timeout(Duration),
    /// The client was given no gater address.
    #[error("no gater address given")]
    NoGaters,
    /// The answer was not the kind the request is answered with: a gater or node of
    /// another version.
    #[error("Protocol: expected {expected} in answer, got {got}")]
    Protocol {
        /// The response variant the request is answered with.
        expected: &'static str,
        /// The one that came.
        got: &'static str,
    },
    /// A page of events came that does not decode: a gater or node of another
    /// version, or damaged bytes.
    #[error("Protocol: {0}")]
    Undecodable(#[from] PageError),
}

impl ClientError {
    /// The store error, when the store answered.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            ClientError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// A connection to a cluster through one or more gaters. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// The gaters' addresses, in the order given.
    addrs: Arc<Vec<String>>,
    /// Their connections, each authenticated with `token` when there is one.
    pool: Pool<GaterClient>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    timeout: Duration,
    /// The bearer token presented on every new connection. Never printed.
    token: Option<Arc<str>>,
    /// How the gaters are dialled: plain or TLS.
    dialer: Dialer,
}

/// How a [`Client`] connects: the gaters, and what to add before connecting (TLS, a
/// token, a deadline). Made by [`Client::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use reckon_gater::tls::{ClientTlsFiles, Tls};
/// let tls = Tls::client(&ClientTlsFiles { ca: "certs/ca.crt".into(), identity: None })?;
/// let client = reckon_gater::Client::builder(&["db-1.example:7700"])
///     .tls(tls)
///     .token("rkn_...")
///     .connect()
///     .await?;
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect`"]
pub struct ClientBuilder {
    addrs: Vec<String>,
    token: Option<Arc<str>>,
    timeout: Duration,
    tls: Option<Tls>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("addrs", &self.addrs)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientBuilder {
    /// Presents `token` to every gater connection (an empty one means none).
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        let t: String = token.into();
        self.token = (!t.is_empty()).then(|| Arc::from(t));
        self
    }

    /// Dial the gaters with TLS: they must hold certificates of `tls`'s CA for the
    /// hosts dialled; the client presents its certificate, if `tls` has one.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The per-call deadline ([`DEFAULT_TIMEOUT`] unless set).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// Connects to the first reachable gater that accepts the token; the others are
    /// used when it fails. A token not accepted is `Unauthenticated` here; without a
    /// token the connection is made (health is open to all) and a gater that wants
    /// one refuses the calls that need it.
    pub async fn connect(self) -> Result<Client, ClientError> {
        if self.addrs.is_empty() {
            return Err(ClientError::NoGaters);
        }
        let c = Client {
            addrs: Arc::new(self.addrs),
            pool: Pool::default(),
            current: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            timeout: self.timeout,
            token: self.token,
            dialer: Dialer::new(self.tls),
        };
        c.call(|g, ctx| async move { g.health(ctx).await.map(Ok) })
            .await?;
        Ok(c)
    }
}

/// Why a gater connection could not be had.
enum DialFault {
    /// No connection (or it broke): try the next gater.
    Transport(String),
    /// The gater answered the authentication with a refusal: the caller's answer.
    Refused(StoreError),
}

impl Client {
    /// A client to be set up (TLS, token, deadline) before it connects to `addrs`.
    pub fn builder<S: AsRef<str>>(addrs: &[S]) -> ClientBuilder {
        ClientBuilder {
            addrs: addrs.iter().map(|a| a.as_ref().to_string()).collect(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
        }
    }

    /// Connects to the first reachable gater of `addrs` (HOST:PORT each); the others
    /// are used when it fails.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), reckon_gater::ClientError> {
    /// let client = reckon_gater::Client::connect(&["127.0.0.1:7700", "127.0.0.1:7701"]).await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn connect<S: AsRef<str>>(addrs: &[S]) -> Result<Client, ClientError> {
        Client::builder(addrs).connect().await
    }

    /// Who this client acts as and what it may do, as the gater sees it: its token's
    /// principal, or everyone on an open gater.
    pub async fn access(&self) -> Result<Principal, ClientError> {
        let token = self.token.clone();
        self.call(move |g, ctx| {
            let token = token.as_deref().map(str::to_string);
            async move { g.authenticate(ctx, token).await }
        })
        .await
    }

    /// The same client with another per-call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// A handle on one store.
    pub fn store(&self, name: &str) -> StoreHandle {
        StoreHandle {
            via: Via::Gaters(self.clone()),
            store: name.to_string(),
            consistency: ReadConsistency::Linearizable,
        }
    }

    /// The connection to gater `i`, dialled and authenticated when there is none.
    async fn gater(&self, i: usize) -> Result<GaterClient, DialFault> {
        let addr = &self.addrs[i];
        let dial = || async {
            let t = self
                .dialer
                .dial(addr, crate::transport::Service::Gater)
                .await
                .map_err(|e| DialFault::Transport(format!("{addr}: {e}")))?;
            let g = GaterClient::new(tarpc::client::Config::default(), t).spawn();
            if let Some(token) = &self.token {
                // First call on the connection: the gater keeps the principal for it.
                match g
                    .authenticate(tarpc::context::current(), Some(token.to_string()))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(refused)) => return Err(DialFault::Refused(refused)),
                    Err(e) => return Err(DialFault::Transport(format!("{addr}: {e}"))),
                }
            }
            Ok(g)
        };
        self.pool.get_or_dial(addr, dial).await.map(|(c, _)| c)
    }

    /// Runs one call with the deadline, moving to the next gater on a transport fault.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(GaterClient, tarpc::context::Context) -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, StoreError>, RpcError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let n = self.addrs.len();
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        let mut faults = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(self.timeout));
            }
            let g = match tokio::time::timeout_at(deadline.into(), self.gater(i)).await {
                Ok(Ok(g)) => g,
                Ok(Err(DialFault::Transport(e))) => {
                    faults.push(e);
                    continue;
                }
                Ok(Err(DialFault::Refused(e))) => return Err(ClientError::Store(e)),
                Err(_) => return Err(ClientError::Timeout(self.timeout)),
            };
            let mut ctx = tarpc::context::current();
            ctx.deadline = deadline;
            match f(g, ctx).await {
                Ok(r) => {
                    self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                    return r.map_err(ClientError::Store);
                }
                Err(RpcError::DeadlineExceeded) => return Err(ClientError::Timeout(self.timeout)),
                Err(e) => {
                    self.pool.forget(&self.addrs[i]);
                    faults.push(format!("{}: {e}", self.addrs[i]));
                }
            }
        }
        Err(ClientError::Transport(faults.join("; ")))
    }

    /// Health per store, as the gater sees it.
    ///
    /// ```no_run
    /// # async fn demo(client: reckon_gater::Client) -> Result<(), reckon_gater::ClientError> {
    /// let report = client.health().await?;
    /// println!("healthy: {}", report.healthy());
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        self.call(|g, ctx| async move { g.health(ctx).await.map(Ok) })
            .await
    }

    /// The stores with registered workers.
    ///
    /// ```no_run
    /// # async fn demo(client: reckon_gater::Client) -> Result<(), reckon_gater::ClientError> {
    /// for store in client.list_stores().await? {
    ///     println!("{store}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_stores(&self) -> Result<Vec<String>, ClientError> {
        self.call(|g, ctx| async move { g.list_stores(ctx).await })
            .await
    }

    /// Nodes, roles, leader, term and indexes per store.
    ///
    /// ```no_run
    /// # async fn demo(client: reckon_gater::Client) -> Result<(), reckon_gater::ClientError> {
    /// for s in client.cluster_status().await? {
    ///     println!("{} leader {:?} term {}", s.store, s.leader, s.term);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cluster_status(&self) -> Result<Vec<StoreStatus>, ClientError> {
        self.call(|g, ctx| async move { g.cluster_status(ctx).await })
            .await
    }

    /// Counters and latency histograms per store and node.
    ///
    /// ```no_run
    /// # async fn demo(client: reckon_gater::Client) -> Result<(), reckon_gater::ClientError> {
    /// for s in client.stats().await? {
    ///     let p99 = s.append_latency.quantile_us(0.99);
    ///     println!("{} node {}: {} appends, p99 {:?} µs", s.store, s.node_id, s.appends, p99);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<Vec<StoreStats>, ClientError> {
        self.call(|g, ctx| async move { g.stats(ctx).await }).await
    }
}

/// Receives a subscription's events, in global order, with no gap and no repeat
/// while it lives; it starts after the subscription's checkpoint. Failover between
/// gaters and workers is invisible: it resumes at the position it reached.
pub struct Subscriber {
    store: StoreHandle,
    key: String,
    consumer: String,
    next: Option<u64>,
    max: u32,
    wait: Duration,
}

/// Consecutive failed polls a [`Subscriber`] retries before giving up.
pub const SUBSCRIBER_RETRIES_MAX: u32 = 20;

impl Subscriber {
    /// The subscription's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The position the next poll starts from (`None`: the checkpoint).
    pub fn position(&self) -> Option<u64> {
        self.next
    }

    /// Waits for the next batch of events (up to 1000). Transient faults (no leader,
    /// a gater or worker gone) are retried with a pause, at most
    /// [`SUBSCRIBER_RETRIES_MAX`] times in a row.
    ///
    /// ```no_run
    /// # async fn demo(mut sub: reckon_gater::Subscriber) -> Result<(), reckon_gater::ClientError> {
    /// let events = sub.next_batch().await?;
    /// if let Some(last) = events.last() {
    ///     sub.ack(last.position).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_batch(&mut self) -> Result<Vec<EventRecord>, ClientError> {
        let mut failures = 0u32;
        loop {
            match self
                .store
                .poll(&self.key, &self.consumer, self.next, self.max, self.wait)
                .await
            {
                Ok(d) => {
                    failures = 0;
                    self.next = Some(d.next);
                    if !d.events.is_empty() {
                        return Ok(d.events);
                    }
                }
                Err(e) if is_transient(&e) && failures < SUBSCRIBER_RETRIES_MAX => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(20))))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Acknowledges every event up to and including `position`.
    ///
    /// ```no_run
    /// # async fn demo(mut sub: reckon_gater::Subscriber) -> Result<(), reckon_gater::ClientError> {
    /// let events = sub.next_batch().await?;
    /// // ... process them, then:
    /// sub.ack(events[events.len() - 1].position).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self, position: u64) -> Result<SubscriptionInfo, ClientError> {
        self.store.ack(&self.key, &self.consumer, position).await
    }

    /// The events one by one, as a stream (acknowledge with [`Subscriber::ack`] on a
    /// second handle, or through [`StoreHandle::ack`]).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<EventRecord, ClientError>> {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(mut sub, mut buf)| async move {
                if buf.is_empty() {
                    match sub.next_batch().await {
                        Ok(b) => buf.extend(b),
                        Err(e) => return Some((Err(e), (sub, buf))),
                    }
                }
                let e = buf.pop_front()?;
                Some((Ok(e), (sub, buf)))
            },
        )
    }
}

fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Store(s) => s.is_retryable(),
        ClientError::Transport(_) | ClientError::Timeout(_) => true,
        ClientError::NoGaters | ClientError::Protocol { .. } | ClientError::Undecodable(_) => false,
    }
}

/// How a [`StoreHandle`] reaches its store.
#[derive(Clone)]
enum Via {
    /// Through gaters, which route and fail over.
    Gaters(Client),
    /// Straight to one node's worker service, with this per-call deadline.
    Worker(WorkerClient, Duration),
}

/// Operations on one store. Obtained from [`Client::store`] (through gaters), or
/// [`StoreHandle::direct`] (straight to one node, for tools and tests).
#[derive(Clone)]
pub struct StoreHandle {
    via: Via,
    store: String,
    consistency: ReadConsistency,
}

/// Takes the value out of the response variant a request is answered with.
macro_rules! answer {
    ($response:expr, $variant:ident) => {
        match $response? {
            StoreResponse::$variant(v) => Ok(v),
            other => Err(ClientError::Protocol {
                expected: stringify!($variant),
                got: other.name(),
            }),
        }
    };
}

/// Pages [`StoreHandle::read_all_pages`] keeps asked for ahead of the one it hands
/// over.
const READ_AHEAD_PAGES: usize = 3;

/// A request sent ahead of need, cancelled when dropped unanswered.
struct Ahead(tokio::task::JoinHandle<Result<EventPage, ClientError>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The events a read answers with, decoded.
fn events(response: Result<StoreResponse, ClientError>) -> Result<Vec<EventRecord>, ClientError> {
    let page = answer!(response, Events)?;
    page.decode().map_err(ClientError::from)
}

/// The answer of a request that returns nothing.
fn done(response: Result<StoreResponse, ClientError>) -> Result<(), ClientError> {
    match response? {
        StoreResponse::Done => Ok(()),
        other => Err(ClientError::Protocol {
            expected: "Done",
            got: other.name(),
        }),
    }
}

impl StoreHandle {
    /// A handle on `store` that talks straight to one node's worker service, with a
    /// deadline of `timeout` per call: no routing, no failover (a follower forwards
    /// writes to its leader; a linearizable read it cannot serve answers
    /// `NotLeader`).
    pub fn direct(worker: WorkerClient, store: &str, timeout: Duration) -> StoreHandle {
        StoreHandle {
            via: Via::Worker(worker, timeout),
            store: store.to_string(),
            consistency: ReadConsistency::Linearizable,
        }
    }

    /// The store this handle addresses.
    pub fn name(&self) -> &str {
        &self.store
    }

    /// Sends one request and gives the store's answer: what every typed method here
    /// does, for callers that build requests themselves.
    pub async fn request(&self, request: StoreRequest) -> Result<StoreResponse, ClientError> {
        self.request_within(request, Duration::ZERO).await
    }

    /// [`request`](Self::request), with `extra` time beyond the call's deadline (a
    /// long-poll that may wait that long, a chunk that takes time to move).
    pub(crate) async fn request_within(
        &self,
        request: StoreRequest,
        extra: Duration,
    ) -> Result<StoreResponse, ClientError> {
        match &self.via {
            Via::Gaters(client) => {
                let client = client.clone().with_timeout(client.timeout + extra);
                let store = &self.store;
                client
                    .call(|g, ctx| {
                        let (store, request) = (store.clone(), request.clone());
                        async move { g.call(ctx, store, request).await }
                    })
                    .await
            }
            Via::Worker(worker, timeout) => {
                let timeout = *timeout + extra;
                let mut ctx = tarpc::context::current();
                ctx.deadline = Instant::now() + timeout;
                match worker.call(ctx, self.store.clone(), request).await {
                    Ok(r) => r.map_err(ClientError::Store),
                    Err(RpcError::DeadlineExceeded) => Err(ClientError::Timeout(timeout)),
                    Err(e) => Err(ClientError::Transport(e.to_string())),
                }
            }
        }
    }

    /// The same handle reading whatever the serving node has applied (may lag).
    pub fn stale(mut self) -> StoreHandle {
        self.consistency = ReadConsistency::Stale;
        self
    }

    /// Appends `events` atomically if the stream is at `expected`; gives the new
    /// version and positions. A retry with the same event ids is answered with the
    /// first result.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::{ExpectedVersion, NewEvent};
    /// let r = store
    ///     .append("order-1", ExpectedVersion::NoStream, vec![NewEvent::json("placed", &serde_json::json!({"total": 5}))])
    ///     .await?;
    /// println!("version {} at position {}", r.version, r.first_position);
    /// # Ok(()) }
    /// ```
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult, ClientError> {
        for e in &mut events {
            e.event_id.get_or_insert_with(uuid::Uuid::now_v7);
        }
        let request = StoreRequest::Append {
            stream_id: stream_id.to_string(),
            expected,
            events,
        };
        answer!(self.request(request).await, Appended)
    }

    /// Up to `count` events of a stream from version `from`, ascending.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let events = store.read("order-1", 0, 100).await?;
    /// for e in events {
    ///     println!("{} {}", e.version, e.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read(
        &self,
        stream_id: &str,
        from: u64,
        count: u32,
    ) -> Result<Vec<EventRecord>, ClientError> {
        self.read_stream(stream_id, from, count, Direction::Forward)
            .await
    }

    /// Up to `count` events of a stream from version `from` in `direction`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::Direction;
    /// // The last 10 events, newest first.
    /// let events = store.read_stream("order-1", u64::MAX, 10, Direction::Backward).await?;
    /// # let _ = events;
    /// # Ok(()) }
    /// ```
    pub async fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let request = StoreRequest::ReadStream {
            stream_id: stream_id.to_string(),
            from,
            count,
            direction,
            consistency: self.consistency,
        };
        events(self.request(request).await)
    }

    /// Up to `count` events of the global log from `from_position` in `direction`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::Direction;
    /// let mut from = 0;
    /// loop {
    ///     let page = store.read_all(from, 1000, Direction::Forward).await?;
    ///     let Some(last) = page.last() else { break };
    ///     from = last.position + 1;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_all(
        &self,
        from_position: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let page = self.read_all_page(from_position, count, direction).await?;
        page.decode().map_err(ClientError::from)
    }

    /// [`read_all`](Self::read_all)'s page as it travels, not yet decoded.
    async fn read_all_page(
        &self,
        from_position: u64,
        count: u32,
        direction: Direction,
    ) -> Result<EventPage, ClientError> {
        let request = StoreRequest::ReadAll {
            from_position,
            count,
            direction,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Events)
    }

    /// The global log forward from `from_position` to its end, in pages of up to
    /// `page` events, with the next three pages already asked for while one is
    /// handed over: a reader of the whole log does not wait a round trip between
    /// pages. Each page is read as [`read_all`](Self::read_all) reads it (with this
    /// handle's consistency); the stream ends at the first empty page, and after the
    /// first error. Dropping the stream drops the pages asked for ahead.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use futures::StreamExt;
    /// let mut pages = std::pin::pin!(store.read_all_pages(0, 1000));
    /// while let Some(page) = pages.next().await {
    ///     for event in page? {
    ///         let _ = event.position;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn read_all_pages(
        &self,
        from_position: u64,
        page: u32,
    ) -> impl futures::Stream<Item = Result<Vec<EventRecord>, ClientError>> + Send + 'static {
        let ask = {
            let handle = self.clone();
            move |from: u64| {
                let handle = handle.clone();
                Ahead(tokio::spawn(async move {
                    handle.read_all_page(from, page, Direction::Forward).await
                }))
            }
        };
        // Pages asked for and not yet handed over, by where they start: each one
        // right after the one before, as if every page came back full.
        let mut asked = std::collections::VecDeque::with_capacity(READ_AHEAD_PAGES);
        let top_up = move |asked: &mut std::collections::VecDeque<(u64, Ahead)>, from: u64| {
            let mut next = asked.back().map_or(from, |(f, _)| f + u64::from(page));
            while asked.len() < READ_AHEAD_PAGES {
                asked.push_back((next, ask(next)));
                next += u64::from(page);
            }
        };
        top_up(&mut asked, from_position);
        futures::stream::unfold(Some(asked), move |state| {
            let top_up = top_up.clone();
            async move {
                let mut asked = state?;
                let (from, mut first) = asked.pop_front()?;
                let answer = match (&mut first.0).await {
                    Ok(answer) => answer,
                    Err(e) => Err(ClientError::Transport(format!("read ahead: {e}"))),
                };
                let got = match answer {
                    Ok(got) if got.is_empty() => return None,
                    Ok(got) => got,
                    Err(e) => return Some((Err(e), None)),
                };
                // Positions are gapless: the next page starts right after this one.
                // A page that came back short (the end of the log, or its byte limit)
                // makes the pages asked after it wrong: they are dropped and asked again.
                let next = from + got.len() as u64;
                if got.len() < page as usize {
                    asked.clear();
                }
                top_up(&mut asked, next);
                let events = got.decode().map_err(ClientError::from);
                let go_on = events.is_ok().then_some(asked);
                Some((events, go_on))
            }
        })
    }

    /// Events whose type is one of `types` (all when empty), ascending by position.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let placed = store.read_by_event_types(&["placed", "paid"], 0, 100).await?;
    /// # let _ = placed;
    /// # Ok(()) }
    /// ```
    pub async fn read_by_event_types(
        &self,
        types: &[&str],
        from_position: u64,
        count: u32,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let request = StoreRequest::ReadByEventTypes {
            types: types.iter().map(|t| t.to_string()).collect(),
            from_position,
            count,
            consistency: self.consistency,
        };
        events(self.request(request).await)
    }

    /// Events carrying any or all of `tags`, ascending by position.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::TagMatch;
    /// let eu_vip = store.read_by_tags(&["eu", "vip"], TagMatch::All, 0, 100).await?;
    /// # let _ = eu_vip;
    /// # Ok(()) }
    /// ```
    pub async fn read_by_tags(
        &self,
        tags: &[&str],
        matching: TagMatch,
        from_position: u64,
        count: u32,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let request = StoreRequest::ReadByTags {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            matching,
            from_position,
            count,
            consistency: self.consistency,
        };
        events(self.request(request).await)
    }

    /// The stream's version; `None` when it does not exist.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// match store.get_version("order-1").await? {
    ///     Some(v) => println!("at version {v}"),
    ///     None => println!("no such stream"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_version(&self, stream_id: &str) -> Result<Option<u64>, ClientError> {
        let request = StoreRequest::GetVersion {
            stream_id: stream_id.to_string(),
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Version)
    }

    /// The global log's length at time `at_us` (microseconds since the Unix epoch):
    /// every event before the answer was written at or before `at_us`, every event
    /// from it on after. Timestamps never go down along the log.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let yesterday_us = 1_764_700_000_000_000;
    /// println!("{} events were written by then", store.position_at(yesterday_us).await?);
    /// # Ok(()) }
    /// ```
    pub async fn position_at(&self, at_us: u64) -> Result<u64, ClientError> {
        let request = StoreRequest::PositionAt {
            at_us,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Position)
    }

    /// The positions of the events written from `since_us` to `until_us` (both
    /// inclusive, microseconds since the Unix epoch): read them with
    /// [`read_all`](Self::read_all) from the range's start, up to its end.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::Direction;
    /// let day = store.positions_between(1_764_633_600_000_000, 1_764_719_999_999_999).await?;
    /// let first = store.read_all(day.start, 100, Direction::Forward).await?;
    /// for e in first.iter().filter(|e| day.contains(&e.position)) {
    ///     println!("{} {}", e.position, e.event_type);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn positions_between(
        &self,
        since_us: u64,
        until_us: u64,
    ) -> Result<std::ops::Range<u64>, ClientError> {
        let start = match since_us.checked_sub(1) {
            Some(before) => self.position_at(before).await?,
            None => 0,
        };
        let end = self.position_at(until_us).await?.max(start);
        Ok(start..end)
    }

    /// The version stream `stream_id` had at time `at_us` (microseconds since the
    /// Unix epoch): that of its last event written at or before it, of those reads
    /// still return. `None` when it had none.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let then = store.version_at("order-1", 1_764_700_000_000_000).await?;
    /// println!("order-1 stood at {then:?}");
    /// # Ok(()) }
    /// ```
    pub async fn version_at(
        &self,
        stream_id: &str,
        at_us: u64,
    ) -> Result<Option<u64>, ClientError> {
        let request = StoreRequest::VersionAt {
            stream_id: stream_id.to_string(),
            at_us,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Version)
    }

    /// [`read_stream`](Self::read_stream) of the stream as it stood at time
    /// `until_us`: only its events written at or before it. `StreamNotFound` when
    /// it had none then.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::Direction;
    /// // The order as it was at the end of 2 December 2025 (UTC).
    /// let then = store
    ///     .read_stream_until("order-1", 1_764_719_999_999_999, 0, 1000, Direction::Forward)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn read_stream_until(
        &self,
        stream_id: &str,
        until_us: u64,
        from: u64,
        count: u32,
        direction: Direction,
    ) -> Result<Vec<EventRecord>, ClientError> {
        let Some(last) = self.version_at(stream_id, until_us).await? else {
            return Err(ClientError::Store(StoreError::StreamNotFound {
                stream_id: stream_id.to_string(),
            }));
        };
        let from = match direction {
            Direction::Forward if from > last => return Ok(Vec::new()),
            Direction::Forward => from,
            Direction::Backward => from.min(last),
        };
        let mut events = self.read_stream(stream_id, from, count, direction).await?;
        events.retain(|e| e.version <= last);
        Ok(events)
    }

    /// Sets how long `stream_id` keeps its events, replacing what was set: reads of
    /// the stream no longer return the events its retention drops (a scavenge then
    /// removes them); nothing is renumbered. `StreamRetention::default()` keeps every
    /// event again (those a scavenge removed stay gone).
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::types::StreamRetention;
    /// let month = 30 * 24 * 3600 * 1_000_000;
    /// store
    ///     .set_retention("sensor-7", StreamRetention { max_age_us: Some(month), max_count: Some(10_000), ..Default::default() })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_retention(
        &self,
        stream_id: &str,
        retention: StreamRetention,
    ) -> Result<(), ClientError> {
        let request = StoreRequest::SetRetention {
            stream_id: stream_id.to_string(),
            retention,
        };
        done(self.request(request).await)
    }

    /// How long `stream_id` keeps its events (every field `None`: for ever).
    pub async fn retention(&self, stream_id: &str) -> Result<StreamRetention, ClientError> {
        let request = StoreRequest::GetRetention {
            stream_id: stream_id.to_string(),
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Retention)
    }

    /// Starts the store's scavenge (or resumes a stopped one), stops it, or asks
    /// where it stands: it removes the events no read can return any more (those of
    /// deleted and tombstoned streams) in the background, then gives the space back
    /// to the file system. Answers where it stands after.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::types::ScavengeAction;
    /// let s = store.scavenge(ScavengeAction::Start).await?;
    /// println!("{:?} {:.0}%", s.phase, s.progress() * 100.0);
    /// # Ok(()) }
    /// ```
    pub async fn scavenge(&self, action: ScavengeAction) -> Result<ScavengeStatus, ClientError> {
        answer!(
            self.request(StoreRequest::Scavenge { action }).await,
            Scavenge
        )
    }

    /// Whether the stream exists.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// if !store.exists("order-1").await? {
    ///     println!("new order");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, stream_id: &str) -> Result<bool, ClientError> {
        let request = StoreRequest::Exists {
            stream_id: stream_id.to_string(),
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Exists)
    }

    /// Up to `limit` streams in id order after `after`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let page = store.list_streams(after.as_deref(), 1000).await?;
    ///     let Some(last) = page.last() else { break };
    ///     after = Some(last.stream_id.clone());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_streams(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamInfo>, ClientError> {
        let request = StoreRequest::ListStreams {
            after: after.map(str::to_string),
            limit,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Streams)
    }

    /// Up to `limit` streams after `after` whose id contains `contains`. The node
    /// examines a bounded number of ids per call, so a page may hold fewer (even
    /// none) while more exist: continue from `resume_after` until it is `None`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let page = store.find_streams("order-", after.as_deref(), 100).await?;
    ///     for s in &page.streams {
    ///         println!("{} {}", s.stream_id, s.version);
    ///     }
    ///     match page.resume_after {
    ///         Some(a) => after = Some(a),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn find_streams(
        &self,
        contains: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<StreamPage, ClientError> {
        let request = StoreRequest::FindStreams {
            contains: contains.to_string(),
            after: after.map(str::to_string),
            limit,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, StreamPage)
    }

    /// Deletes a stream if it is at `expected` (checked atomically, as an append's):
    /// soft, or `hard` (its id can never be written again). Versions are never
    /// reused: after a soft delete, reads of the stream find nothing, and a later
    /// append continues after its last version.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::ExpectedVersion;
    /// // Soft, if nobody appended since version 7: the next append is version 8.
    /// store.delete("order-1", ExpectedVersion::Exact(7), false).await?;
    /// // Hard, whatever its version: never written again.
    /// store.delete("order-2", ExpectedVersion::Any, true).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<(), ClientError> {
        let request = StoreRequest::DeleteStream {
            stream_id: stream_id.to_string(),
            hard,
            expected,
        };
        done(self.request(request).await)
    }

    /// Saves a snapshot at `version`, replacing one at the same version.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let state = serde_json::to_vec(&serde_json::json!({"balance": 550})).unwrap_or_default();
    /// store.save_snapshot("account-1", 41, state, Vec::new()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn save_snapshot(
        &self,
        stream_id: &str,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
    ) -> Result<(), ClientError> {
        let request = StoreRequest::SnapshotSave {
            stream_id: stream_id.to_string(),
            version,
            data,
            metadata,
        };
        done(self.request(request).await)
    }

    /// The snapshot at `version`, or the highest when `None`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let latest = store.load_snapshot("account-1", None).await?;
    /// let since = store.read("account-1", latest.version + 1, 1000).await?;
    /// # let _ = since;
    /// # Ok(()) }
    /// ```
    pub async fn load_snapshot(
        &self,
        stream_id: &str,
        version: Option<u64>,
    ) -> Result<SnapshotRecord, ClientError> {
        let request = StoreRequest::SnapshotLoad {
            stream_id: stream_id.to_string(),
            version,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Snapshot)
    }

    /// Every snapshot of a stream by ascending version.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// for s in store.list_snapshots("account-1").await? {
    ///     println!("snapshot at {}", s.version);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_snapshots(
        &self,
        stream_id: &str,
    ) -> Result<Vec<SnapshotRecord>, ClientError> {
        let request = StoreRequest::SnapshotList {
            stream_id: stream_id.to_string(),
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Snapshots)
    }

    /// Deletes the snapshot at `version`, or all of the stream's when `None`.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// store.delete_snapshot("account-1", Some(41)).await?; // one
    /// store.delete_snapshot("account-1", None).await?;     // all of the stream's
    /// # Ok(()) }
    /// ```
    pub async fn delete_snapshot(
        &self,
        stream_id: &str,
        version: Option<u64>,
    ) -> Result<(), ClientError> {
        let request = StoreRequest::SnapshotDelete {
            stream_id: stream_id.to_string(),
            version,
        };
        done(self.request(request).await)
    }

    /// Creates a subscription (or finds the one with the same kind, selector and
    /// name: subscribing twice gives the same key).
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use reckon_gater::subscription::SubscribeOptions;
    /// use reckon_gater::types::SubscriptionType;
    /// let sub = store
    ///     .subscribe(SubscriptionType::EventPattern, "order-*", "billing", SubscribeOptions::default())
    ///     .await?;
    /// let mut subscriber = store.subscriber(&sub.key, "billing-1");
    /// let events = subscriber.next_batch().await?;
    /// # let _ = events;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        kind: SubscriptionType,
        selector: &str,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<SubscriptionInfo, ClientError> {
        let request = StoreRequest::Subscribe {
            kind,
            selector: selector.to_string(),
            name: name.to_string(),
            options,
        };
        answer!(self.request(request).await, Subscription)
    }

    /// Removes a subscription; `NotFound` for an unknown key.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// store.unsubscribe("0123456789abcdef0123456789abcdef").await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(&self, key: &str) -> Result<(), ClientError> {
        let request = StoreRequest::Unsubscribe {
            key: key.to_string(),
        };
        done(self.request(request).await)
    }

    /// One subscription.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// let s = store.subscription("0123456789abcdef0123456789abcdef").await?;
    /// println!("checkpoint {:?}, lag {}", s.checkpoint(), s.lag());
    /// # Ok(()) }
    /// ```
    pub async fn subscription(&self, key: &str) -> Result<SubscriptionInfo, ClientError> {
        let request = StoreRequest::GetSubscription {
            key: key.to_string(),
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Subscription)
    }

    /// Every subscription of the store.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// for s in store.subscriptions().await? {
    ///     println!("{} {} lag {}", s.name, s.selector, s.lag());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, ClientError> {
        let request = StoreRequest::ListSubscriptions {
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Subscriptions)
    }

    /// Acknowledges processing up to `position`; the checkpoint only moves forward.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// store.ack("0123456789abcdef0123456789abcdef", "billing-1", 41).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack(
        &self,
        key: &str,
        consumer: &str,
        position: u64,
    ) -> Result<SubscriptionInfo, ClientError> {
        let request = StoreRequest::Ack {
            key: key.to_string(),
            consumer: consumer.to_string(),
            position,
        };
        answer!(self.request(request).await, Subscription)
    }

    /// One long-poll: matching events from `from` (or the checkpoint when `None`),
    /// waiting up to `wait` when there are none yet.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// use std::time::Duration;
    /// let d = store.poll("0123456789abcdef0123456789abcdef", "c1", None, 100, Duration::from_secs(5)).await?;
    /// // Pass d.next as `from` to continue without gap or repeat.
    /// let more = store.poll("0123456789abcdef0123456789abcdef", "c1", Some(d.next), 100, Duration::from_secs(5)).await?;
    /// # let _ = more;
    /// # Ok(()) }
    /// ```
    pub async fn poll(
        &self,
        key: &str,
        consumer: &str,
        from: Option<u64>,
        max: u32,
        wait: Duration,
    ) -> Result<Delivery, ClientError> {
        let request = StoreRequest::Poll {
            key: key.to_string(),
            consumer: consumer.to_string(),
            from,
            max,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        // The call may take the whole wait: give it room beyond that.
        answer!(self.request_within(request, wait).await, Delivery)
    }

    /// A subscriber for the subscription `key`, as consumer `consumer` (consumers of
    /// a pool need distinct names).
    pub fn subscriber(&self, key: &str, consumer: &str) -> Subscriber {
        Subscriber {
            store: self.clone(),
            key: key.to_string(),
            consumer: consumer.to_string(),
            next: None,
            max: 1000,
            wait: Duration::from_secs(5),
        }
    }

    /// Removes node `node_id` from this store's Raft group (through its leader).
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// store.remove_node(4).await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_node(&self, node_id: u64) -> Result<(), ClientError> {
        done(self.request(StoreRequest::RemoveNode { node_id }).await)
    }

    /// Hands the leadership of this store's group to node `node_id` (a voter);
    /// returns once it leads. Writes and linearizable reads wait (the client retries
    /// them) for the second or so the handover takes.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// store.transfer_leader(2).await?;
    /// # Ok(()) }
    /// ```
    pub async fn transfer_leader(&self, node_id: u64) -> Result<(), ClientError> {
        done(self.request(StoreRequest::TransferLeader { node_id }).await)
    }

    /// Backs this store up into the file `out` (which must not exist unless
    /// `replace`): a consistent copy of its whole state as of one applied entry, taken
    /// from the leader while writes go on, checked against the node's checksum, and
    /// renamed into place only when complete and durable. `progress` hears how it
    /// goes. See [`crate::backup`] for the conversation and its limits.
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::backup::BackupError> {
    /// let info = store
    ///     .backup(std::path::Path::new("default.rbk"), false, &mut |_| {})
    ///     .await?;
    /// println!("{} bytes, events below position {}", info.bytes, info.next_position);
    /// # Ok(()) }
    /// ```
    pub async fn backup(
        &self,
        out: &std::path::Path,
        replace: bool,
        progress: &mut (dyn FnMut(&crate::backup::BackupProgress) + Send),
    ) -> Result<crate::backup::BackupInfo, crate::backup::BackupError> {
        crate::backup::download(self, out, replace, progress).await
    }

    /// Whether a snapshot exists at `version` (any when `None`).
    ///
    /// ```no_run
    /// # async fn demo(store: reckon_gater::StoreHandle) -> Result<(), reckon_gater::ClientError> {
    /// if store.snapshot_exists("account-1", Some(41)).await? {
    ///     println!("have it");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn snapshot_exists(
        &self,
        stream_id: &str,
        version: Option<u64>,
    ) -> Result<bool, ClientError> {
        let request = StoreRequest::SnapshotExists {
            stream_id: stream_id.to_string(),
            version,
            consistency: self.consistency,
        };
        answer!(self.request(request).await, Exists)
    }
}
