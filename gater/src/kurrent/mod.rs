//! The KurrentDB front door: the gater speaking KurrentDB's v1 gRPC client protocol,
//! so that applications written for KurrentDB (formerly EventStoreDB) work against
//! reckon-db with only their connection string changed.
//!
//! ```text
//!  KurrentDB client ──gRPC (HTTP/2, TLS as the gater's)──▶ kurrent::serve
//!      Streams.Append / BatchAppend / Read / Delete / Tombstone ─┐
//!      ServerFeatures, Gossip, PersistentSubscriptions.List      │ (answered here)
//!                                                                ▼
//!                      one StoreRequest per store operation ──▶ Gateway::call_as
//!                      (the tarpc path: access check, routing, failover, audit)
//! ```
//!
//! Nothing here talks to a node: every operation becomes [`StoreRequest`]s that the
//! [`Gateway`] checks, routes and fails over exactly as it does a tarpc client's, on
//! behalf of a principal the gRPC call authenticated as (basic auth `user:token`: the
//! password is a gater token, see [`crate::access`]). One front door serves one store
//! (`kurrent_store`, `default` unless configured).
//!
//! How the protocol's values map onto ours is in [`convert`]; filters are in
//! [`filter`]; reads and catch-up subscriptions in `read`; appends and deletes in
//! `streams`; the services around the edges in `edges`. Every method of a served
//! service that is not implemented answers `UNIMPLEMENTED` at once (the generated
//! defaults), as does every service not served (tonic's router).

pub mod convert;
mod edges;
pub mod filter;
pub mod proto;
mod read;
mod streams;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataMap;
use tonic::transport::server::Connected;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::access::Permission;
use crate::api::Gater;
use crate::gateway::Gateway;
use crate::request::{StoreRequest, StoreResponse};
use crate::tls::{self, Role, Tls};
use crate::transport::Conn;
use crate::types::StoreError;
use proto::event_store::client::gossip::gossip_server::GossipServer;
use proto::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer;
use proto::event_store::client::server_features::server_features_server::ServerFeaturesServer;
use proto::event_store::client::streams::streams_server::StreamsServer;

/// The port KurrentDB listens on, and ours when `kurrent_listen` names none.
pub const DEFAULT_PORT: u16 = 2113;
/// The store a front door serves unless `kurrent_store` says otherwise.
pub const DEFAULT_STORE: &str = "default";
/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// Calls (HTTP/2 streams) one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Largest gRPC message accepted, in bytes: no append can be larger than what the
/// gater can forward to a node in one frame, and the store refuses what exceeds its
/// own (smaller, configured) batch limits with an error naming them.
pub const MAX_MESSAGE_BYTES: usize = crate::frame::MAX_FRAME_BYTES;
/// How often an idle connection is pinged, so that a peer gone without closing
/// frees its slot of [`MAX_CONNECTIONS`].
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The deadline of each store request of a call whose client sent none.
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Longest deadline of one store request, whatever the client's deadline.
pub const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// Longest `authorization` header accepted, in bytes.
pub const AUTHORIZATION_BYTES_MAX: usize = 4096;
/// Connections accepted and handshaken but not yet taken by the HTTP/2 server.
const ACCEPT_QUEUE_MAX: usize = 64;
/// The protocol's name for one connection's calls, in logs.
const FRONT_DOOR: &str = "kurrent";

/// What a front door serves, besides the gateway it dispatches through.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// The store every connection's calls go to.
    pub store: String,
    /// TLS with the gater's certificates (HTTP/2 negotiated by ALPN); clear text when
    /// `None`.
    pub tls: Option<Tls>,
    /// The address clients are told to dial in gossip; when `None`, the address each
    /// client reached the front door at (right for it, whatever the listener's is).
    pub advertise: Option<SocketAddr>,
}

impl Default for KurrentOptions {
    fn default() -> Self {
        KurrentOptions {
            store: DEFAULT_STORE.to_string(),
            tls: None,
            advertise: None,
        }
    }
}

/// What the server state every handler shares holds.
struct Inner {
    gateway: Gateway,
    store: String,
    /// The address gossip names, when configured; else the one each client reached.
    advertise: Option<SocketAddr>,
    /// This front door's id in gossip.
    instance: Uuid,
    /// The key of the store subscription catch-up subscriptions poll, once created.
    catch_up_key: tokio::sync::Mutex<Option<String>>,
    /// Turns true when the server stops: live subscriptions end.
    stopping: watch::Receiver<bool>,
}

/// The handler of every served service (a cheap clone).
#[derive(Clone)]
pub(crate) struct Door {
    inner: Arc<Inner>,
}

/// One call's context: the gateway acting for the principal the call authenticated
/// as, and the client's deadline for the whole call, when it gave one.
#[derive(Clone)]
pub(crate) struct Call {
    gateway: Gateway,
    store: String,
    client_deadline: Option<Instant>,
}

impl Call {
    /// Dispatches `request` through the gateway (needing what it needs), within
    /// [`Call::deadline`].
    pub(crate) async fn send(&self, request: StoreRequest) -> Result<StoreResponse, StoreError> {
        let needs = request.permission();
        self.send_needing(request, needs, self.deadline()).await
    }

    /// Dispatches `request` asking the caller only for `needs`, within `deadline`.
    pub(crate) async fn send_needing(
        &self,
        request: StoreRequest,
        needs: Permission,
        deadline: Instant,
    ) -> Result<StoreResponse, StoreError> {
        let mut ctx = tarpc::context::current();
        ctx.deadline = deadline;
        self.gateway
            .call_as(ctx, self.store.clone(), request, needs)
            .await
    }

    /// The deadline of a store request made now: the client's deadline for the whole
    /// call, but no more than [`CALL_TIMEOUT_MAX`] for one request; without one,
    /// [`CALL_TIMEOUT_DEFAULT`] for each (each page of a long read gets its own).
    pub(crate) fn deadline(&self) -> Instant {
        let now = Instant::now();
        match self.client_deadline {
            Some(d) => d.min(now + CALL_TIMEOUT_MAX),
            None => now + CALL_TIMEOUT_DEFAULT,
        }
    }

    /// `deadline` or the client's, whichever is sooner.
    pub(crate) fn within(&self, deadline: Instant) -> Instant {
        self.client_deadline.map_or(deadline, |d| d.min(deadline))
    }

    /// Whether the client's deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.client_deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The same principal, with `deadline` as the client's (a batch's own).
    pub(crate) fn with_deadline(&self, deadline: Instant) -> Call {
        Call {
            gateway: self.gateway.clone(),
            store: self.store.clone(),
            client_deadline: Some(deadline),
        }
    }
}

impl Door {
    /// The context of one call: its principal (from its connection's certificate and
    /// its `authorization` header) and its deadline (`grpc-timeout`).
    pub(crate) async fn call<T>(&self, request: &Request<T>) -> Result<Call, Status> {
        let peer = request
            .extensions()
            .get::<Peer>()
            .and_then(|p| p.role.clone());
        let gateway = self.inner.gateway.connection(peer);
        // A deadline too far to represent is no deadline.
        let client_deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .and_then(|t| Instant::now().checked_add(t));
        if let Some(token) = bearer_token(request.metadata())? {
            let mut ctx = tarpc::context::current();
            ctx.deadline = Instant::now() + CALL_TIMEOUT_DEFAULT;
            Gater::authenticate(gateway.clone(), ctx, Some(token))
                .await
                .map_err(|e| convert::status_of(&e, None))?;
        }
        Ok(Call {
            gateway,
            store: self.inner.store.clone(),
            client_deadline,
        })
    }

    /// A receiver that turns true when the server stops.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.clone()
    }
}

/// Parses gRPC's `grpc-timeout` header: up to 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`); `None` when it is not one.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gater token a call presents: the password of KurrentDB's basic auth
/// (`Basic base64(user:token)`; the user name is not checked, the token says who
/// the caller is), or a `Bearer` token. `None` without an `authorization` header.
pub fn bearer_token(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Status::unauthenticated(format!(
            "the authorization header {why}: send basic auth with a gater token as the password"
        ))
    };
    let text = value.to_str().map_err(|_| bad("is not ASCII"))?;
    if text.len() > AUTHORIZATION_BYTES_MAX {
        return Err(bad("is too long"));
    }
    if let Some(token) = text.strip_prefix("Bearer ") {
        return Ok(Some(token.trim().to_string()));
    }
    let encoded = text
        .strip_prefix("Basic ")
        .ok_or_else(|| bad("is neither Basic nor Bearer"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
    let (_user, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("has no user:password"))?;
    Ok(Some(password.to_string()))
}

/// What a call knows of its connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Who is on the other end, as its TLS certificate says.
    pub role: Option<Role>,
    /// The address the client reached this front door at.
    pub local: Option<SocketAddr>,
}

/// One accepted connection, plain or TLS, holding its slot of [`MAX_CONNECTIONS`].
pub struct Io {
    conn: Conn,
    peer: Peer,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Io {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }
}

/// Serves the KurrentDB front door on `listener` for `gateway` until `shutdown`
/// resolves: then live subscriptions end, no new call is taken, and this returns
/// once the calls in flight are answered (a caller bounds that with its grace).
/// Errors when `options.tls` cannot serve (a client's TLS) or the server fails.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    options: KurrentOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let advertise = options.advertise;
    let (stop_tx, stopping) = watch::channel(false);
    let door = Door {
        inner: Arc::new(Inner {
            gateway,
            store: options.store.clone(),
            advertise,
            instance: Uuid::new_v4(),
            catch_up_key: tokio::sync::Mutex::new(None),
            stopping,
        }),
    };
    // gRPC clients insist on HTTP/2 being agreed in the TLS handshake.
    let acceptor = match &options.tls {
        Some(t) => Some(t.acceptor_with_alpn(&[b"h2"]).ok_or_else(|| {
            io::Error::other(
                "the gater's TLS has no certificate to serve the KurrentDB front door with",
            )
        })?),
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Io>>(ACCEPT_QUEUE_MAX);
    let accepting = tokio::spawn(accept_loop(listener, acceptor, tx));
    let incoming = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let stopped = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let result = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(
            StreamsServer::new(door.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(ServerFeaturesServer::new(door.clone()))
        .add_service(GossipServer::new(door.clone()))
        .add_service(PersistentSubscriptionsServer::new(door))
        .serve_with_incoming_shutdown(incoming, stopped)
        .await;
    accepting.abort();
    result.map_err(io::Error::other)
}

/// Accepts connections, each within its slot of [`MAX_CONNECTIONS`]; TLS handshakes
/// run on their own tasks, so that a slow one holds up no other.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Io>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "{FRONT_DOOR}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        match &acceptor {
            None => {
                let io = Io {
                    conn: Conn::Plain(tcp),
                    peer: Peer { role: None, local },
                    _slot: slot,
                };
                if tx.send(Ok(io)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let role = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| tls::role_of(c));
                            let io = Io {
                                conn: Conn::Server(Box::new(s)),
                                peer: Peer { role, local },
                                _slot: slot,
                            };
                            let _ = tx.send(Ok(io)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "{FRONT_DOOR}: TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "{FRONT_DOOR}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}")
                        }
                    }
                });
            }
        }
    }
}

/// A channel's receiver as the boxed stream tonic sends a server-streaming answer from.
pub(crate) fn receiver_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<Result<T, Status>>,
) -> Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[cfg(test)]
mod tests;
