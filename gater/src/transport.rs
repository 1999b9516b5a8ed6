//! Serving and dialling tarpc services over TCP.
//!
//! Frames are length-delimited bincode with a finite [`MAX_FRAME_BYTES`], decoded
//! within the bytes of the frame ([`crate::frame`]), and sockets set `TCP_NODELAY`
//! so that small requests are not held back by Nagle's algorithm.
//!
//! Every connection opens with a 5-byte preamble: the magic `RKN1` and the byte of the
//! [`Service`] it wants. One port can so serve several services (a node serves its
//! worker service and the node-to-node Raft service on one port), and a stray or
//! mismatched peer is turned away at once instead of failing inside a decoder.
//!
//! With TLS ([`Dialer::tls`], [`accept_loop_with`]) the preamble travels inside the
//! TLS session, and the server checks the peer's certificate against the service
//! asked for ([`crate::tls::admits`]): a connection whose peer may not
//! use the service is closed before any request is read. The verified peer is on the
//! [`Accepted`] connection ([`Accepted::peer`]).
//!
//! A server does not let a connection hold its slot by saying nothing ([`Limits`]):
//! the handshake and preamble must come within [`PREAMBLE_TIMEOUT`], and a frame,
//! once its first byte has arrived, must be whole within [`FRAME_READ_TIMEOUT`]; a
//! connection that trickles is closed. When every slot ([`MAX_CONNECTIONS`]) is
//! taken, the oldest connection that has not yet sent a whole frame gives its slot
//! to a newcomer. A connection whose frame does not decode is closed too (tarpc
//! ends the channel on a transport error).
//!
//! A server drains before it stops ([`accept_loop`]): it closes its listener, then
//! every connection stops reading requests while the requests it already read run
//! to their end and get their answers; a connection closes once it owes none. A
//! request that arrived too late is never read, and its caller sees the connection
//! close, which a gater treats as a transport error (it fails over).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::tokio_util::codec::Framed;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::frame::{FrameCodec, LENGTH_BYTES};
use crate::tls::{self, Role, Tls};

pub use crate::frame::MAX_FRAME_BYTES;
pub use crate::service::Service;

/// How long dialling a peer may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The connections one listener serves at once. When all are taken, the oldest
/// connection that has not yet sent a whole frame makes room for a new one; when
/// none has, new ones wait in the backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// The protocol magic every connection starts with.
pub const MAGIC: [u8; 4] = *b"RKN1";

/// How long a new connection may take to send its preamble (and, with TLS, to finish
/// its handshake first).
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a frame may take to arrive whole once its first byte has: a connection
/// that starts a frame and then trickles or stalls is closed. A full frame of
/// [`MAX_FRAME_BYTES`] needs about 0.5 MiB/s to make it.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a server allows each connection; [`Limits::default`] holds the named
/// constants, which servers use. Tests lower them to show what happens at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once ([`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// The handshake and preamble's deadline ([`PREAMBLE_TIMEOUT`]).
    pub preamble_timeout: Duration,
    /// A started frame's deadline ([`FRAME_READ_TIMEOUT`]).
    pub frame_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            preamble_timeout: PREAMBLE_TIMEOUT,
            frame_read_timeout: FRAME_READ_TIMEOUT,
        }
    }
}

/// The pause after a failed `accept` (out of file descriptors, say) before the next.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A bincode transport over one connection, plain or TLS.
pub type TcpTransport<In, Out> = Framed<Conn, FrameCodec<In, Out>>;

/// A server's transport over one accepted connection: frames must arrive whole
/// within [`Limits::frame_read_timeout`].
pub type ServerTransport<In, Out> = Framed<Deadline, FrameCodec<In, Out>>;

/// One connection's byte stream: plain TCP, or TLS over TCP from either end.
#[derive(Debug)]
pub enum Conn {
    /// Clear text.
    Plain(TcpStream),
    /// TLS, as the side that dialled.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, as the side that accepted.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// Whether the bytes travel inside TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = match self.get_mut() {
            Conn::Plain(s) => return Pin::new(s).poll_read(cx, buf),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        // tarpc drops connections without a TLS close_notify, so a peer that simply
        // went away looks like a truncation to rustls. Frames are length-delimited:
        // a frame cut short is still an error to the codec, so an end without
        // close_notify can be read as a plain end of stream.
        match read {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Client(s) => s.is_write_vectored(),
            Conn::Server(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection a server accepted, with the server's drain signal; turn it into a
/// transport with [`wrap`].
#[derive(Debug)]
pub struct Accepted {
    stream: Conn,
    drain: CancellationToken,
    peer: Option<Role>,
    frame_read_timeout: Duration,
    /// Its [`Standing`]'s state, settled once a whole frame is read.
    state: Arc<AtomicU8>,
}

impl Accepted {
    /// Who the peer is, as its verified TLS certificate says; `None` on a plain
    /// connection or when the peer presented no certificate.
    pub fn peer(&self) -> Option<&Role> {
        self.peer.as_ref()
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }
}

/// Wraps an accepted connection into a framed bincode transport that stops
/// yielding requests once its server drains (see the module docs); responses
/// still go out.
pub fn wrap<In, Out>(conn: Accepted) -> Draining<ServerTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let stream = Deadline::new(conn.stream, conn.frame_read_timeout, conn.state);
    Draining {
        inner: Framed::new(stream, FrameCodec::default()),
        drain: Box::pin(conn.drain.cancelled_owned()),
        drained: false,
    }
}

fn frame<In, Out>(stream: Conn) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    Framed::new(stream, FrameCodec::default())
}

/// Where a byte stream of length-prefixed frames stands: inside a frame or
/// between two.
#[derive(Debug, Default)]
struct Boundaries {
    /// Bytes of the length prefix read so far, and the prefix itself.
    prefix: ([u8; LENGTH_BYTES], usize),
    /// Bytes of the frame's body still to come, once the prefix is whole.
    body_left: usize,
}

impl Boundaries {
    fn mid_frame(&self) -> bool {
        self.prefix.1 > 0 || self.body_left > 0
    }

    /// Follows the boundaries through bytes just read; gives the count of frames
    /// they completed.
    fn track(&mut self, mut bytes: &[u8]) -> usize {
        let mut done = 0;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                if self.body_left == 0 {
                    done += 1;
                }
                continue;
            }
            let (prefix, got) = &mut self.prefix;
            let n = (LENGTH_BYTES - *got).min(bytes.len());
            prefix[*got..*got + n].copy_from_slice(&bytes[..n]);
            *got += n;
            bytes = &bytes[n..];
            if *got == LENGTH_BYTES {
                self.body_left = u32::from_be_bytes(*prefix) as usize;
                *got = 0;
                if self.body_left == 0 {
                    done += 1;
                }
            }
        }
        done
    }
}

/// An accepted connection's byte stream, watched for frames that stall: once a
/// frame's first byte has been read, the rest must come within the deadline, or
/// the read fails with [`io::ErrorKind::TimedOut`] (and the connection closes).
/// Between frames it waits as long as the peer likes.
#[derive(Debug)]
pub struct Deadline {
    inner: Conn,
    timeout: Duration,
    frames: Boundaries,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set to [`SETTLED`] at the first whole frame.
    state: Arc<AtomicU8>,
}

impl Deadline {
    fn new(inner: Conn, timeout: Duration, state: Arc<AtomicU8>) -> Deadline {
        Deadline {
            inner,
            timeout,
            frames: Boundaries::default(),
            timer: None,
            state,
        }
    }

    /// Follows the frames through bytes just read; the first whole one settles
    /// the connection.
    fn track(&mut self, bytes: &[u8]) {
        if self.frames.track(bytes) > 0 {
            let _ =
                self.state
                    .compare_exchange(UNPROVEN, SETTLED, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn mid_frame(&self) -> bool {
        self.frames.mid_frame()
    }
}

impl AsyncRead for Deadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                me.track(&buf.filled()[before..]);
                me.timer = match (me.mid_frame(), me.timer.take()) {
                    (false, _) => None,
                    (true, Some(t)) => Some(t),
                    (true, None) => Some(Box::pin(tokio::time::sleep(me.timeout))),
                };
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = me
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("a frame did not arrive whole within {:?}", me.timeout),
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Deadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A server-side transport whose stream of requests ends when its server drains,
/// as if the client had closed its half: tarpc then answers the requests it holds
/// and closes the connection. The sink side is untouched.
pub struct Draining<T> {
    inner: T,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    drained: bool,
}

impl<T> Stream for Draining<T>
where
    T: Stream + Unpin,
{
    type Item = T::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        // Checked before reading, so that a busy connection cannot outrun the drain.
        if self.drained || self.drain.as_mut().poll(cx).is_ready() {
            self.drained = true;
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<T, Item> Sink<Item> for Draining<T>
where
    T: Sink<Item> + Unpin,
{
    type Error = T::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Item) -> Result<(), T::Error> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Dials `addr` within [`CONNECT_TIMEOUT`] and asks for `service`, in clear text.
pub async fn dial<In, Out>(addr: &str, service: Service) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    Dialer::plain().dial(addr, service).await
}

/// How a process dials: in clear text, or with TLS. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<Tls>,
}

impl Dialer {
    /// Dials in clear text.
    pub fn plain() -> Dialer {
        Dialer { tls: None }
    }

    /// Dials with TLS: the server must hold a certificate of the CA for the host
    /// dialled, naming a role that serves the service asked for
    /// ([`tls::serves`]); this process presents its own certificate, if it has one.
    pub fn tls(tls: Tls) -> Dialer {
        Dialer { tls: Some(tls) }
    }

    /// The same, from an optional TLS set-up.
    pub fn new(tls: Option<Tls>) -> Dialer {
        Dialer { tls }
    }

    /// Whether it dials with TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Dials `addr` within [`CONNECT_TIMEOUT`] and asks for `service`.
    pub async fn dial<In, Out>(
        &self,
        addr: &str,
        service: Service,
    ) -> io::Result<TcpTransport<In, Out>>
    where
        In: DeserializeOwned,
        Out: Serialize,
    {
        Ok(frame(self.open(addr, service).await?))
    }

    /// Dials `addr` within [`CONNECT_TIMEOUT`] and sends the preamble asking for
    /// `service`; gives the connection as bytes (for tools and tests that speak
    /// below tarpc).
    pub async fn open(&self, addr: &str, service: Service) -> io::Result<Conn> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let mut stream = match &self.tls {
                None => Conn::Plain(tcp),
                Some(tls) => {
                    let name = tls::server_name(addr)?;
                    let s = tls.connector().connect(name, tcp).await?;
                    let server = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| tls::role_of(c));
                    if !tls::serves(server.as_ref(), service) {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!(
                                "{addr} holds a certificate of {}, which does not serve {service:?}",
                                server.map_or_else(|| "no reckon role".to_string(), |r| r.to_string())
                            ),
                        ));
                    }
                    Conn::Client(Box::new(s))
                }
            };
            let mut preamble = [0u8; 5];
            preamble[..4].copy_from_slice(&MAGIC);
            preamble[4] = service.byte();
            stream.write_all(&preamble).await?;
            // TLS holds written bytes in the session until flushed.
            stream.flush().await?;
            Ok::<_, io::Error>(stream)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {addr} took longer than {CONNECT_TIMEOUT:?}"),
                )
            })?
    }
}

async fn read_preamble(stream: &mut Conn) -> io::Result<Service> {
    let mut b = [0u8; 5];
    stream.read_exact(&mut b).await?;
    if b[..4] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a reckon-db connection (bad magic)",
        ));
    }
    Service::from_byte(b[4]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown service byte {}", b[4]),
        )
    })
}

/// Why an accepted connection was turned away before it was served.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no TLS handshake and preamble within {0:?}")]
    Slow(Duration),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("{0}")]
    Preamble(io::Error),
    #[error("{peer} may not use the {service:?} service")]
    Role { peer: String, service: Service },
}

/// The handshake (with TLS), the preamble, and the check of the peer's role against
/// the service it asks for, within `timeout` ([`PREAMBLE_TIMEOUT`]).
async fn open_accepted(
    tcp: TcpStream,
    tls: Option<&Tls>,
    timeout: Duration,
) -> Result<(Service, Conn, Option<Role>), Refused> {
    let open = async {
        let _ = tcp.set_nodelay(true);
        let (mut stream, peer) = match tls.and_then(Tls::acceptor) {
            None => (Conn::Plain(tcp), None),
            Some(acceptor) => {
                let s = acceptor.accept(tcp).await.map_err(Refused::Handshake)?;
                let peer = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| tls::role_of(c));
                (Conn::Server(Box::new(s)), peer)
            }
        };
        let service = read_preamble(&mut stream)
            .await
            .map_err(Refused::Preamble)?;
        if tls.is_some() && !tls::admits(peer.as_ref(), service) {
            return Err(Refused::Role {
                peer: peer.map_or_else(|| "a peer without a certificate".into(), |r| r.to_string()),
                service,
            });
        }
        Ok((service, stream, peer))
    };
    tokio::time::timeout(timeout, open)
        .await
        .map_err(|_| Refused::Slow(timeout))?
}

/// Accepts connections on `listener` until `shutdown` resolves, then drains: the
/// listener is closed, every connection stops reading requests (through
/// [`wrap`]), and this returns once each has answered the requests it had read and
/// closed. Dropping the future before then cuts the remaining connections off, so a
/// caller bounds the drain with a timeout.
///
/// Each connection's preamble is read on its own task, then `serve_conn` gets the
/// service it asked for and the connection. At most [`MAX_CONNECTIONS`] are served
/// at once; when every slot is taken, a new connection takes the slot of the oldest
/// one that has not yet sent a whole frame (a flood of idle connections cannot keep
/// a working client out), and when none is left to give way, further ones wait in
/// the backlog.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serve_conn: F,
) where
    F: Fn(Service, Accepted, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop_with(listener, None, shutdown, serve_conn).await
}

/// [`accept_loop`], with TLS when `tls` is given: each connection's handshake and
/// preamble must come within [`PREAMBLE_TIMEOUT`], and a peer whose certificate
/// does not admit it to the service it asks for ([`tls::admits`]) is closed
/// unserved. `serve_conn` sees the verified peer on [`Accepted::peer`].
pub async fn accept_loop_with<F, Fut>(
    listener: TcpListener,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
    serve_conn: F,
) where
    F: Fn(Service, Accepted, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop_limited(listener, tls, Limits::default(), shutdown, serve_conn).await
}

/// [`accept_loop_with`] under `limits` instead of the named constants (for tests
/// that show what happens at a limit without waiting out the real one).
pub async fn accept_loop_limited<F, Fut>(
    listener: TcpListener,
    tls: Option<Tls>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    serve_conn: F,
) where
    F: Fn(Service, Accepted, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve_conn = std::sync::Arc::new(serve_conn);
    let drain = CancellationToken::new();
    // Owning the connection tasks here is what lets a dropped future end them.
    let mut conns: JoinSet<()> = JoinSet::new();
    // The connections that have not yet sent a whole frame, oldest first: when every
    // slot is taken, the oldest of them gives its slot up to a newcomer.
    let mut unproven: VecDeque<Standing> = VecDeque::new();
    tokio::pin!(shutdown);
    loop {
        let room = conns.len() < limits.max_connections || has_unproven(&mut unproven);
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => log_conn_end(done),
            accepted = listener.accept(), if room => match accepted {
                Ok((tcp, addr)) => {
                    if conns.len() >= limits.max_connections {
                        evict_oldest(&mut unproven, addr);
                    }
                    let standing = Standing::default();
                    // Settled ones behind a long-unproven front are forgotten here,
                    // so that the queue stays within the connections alive.
                    if unproven.len() >= 2 * limits.max_connections {
                        unproven.retain(|s| s.state.load(Ordering::Acquire) == UNPROVEN);
                    }
                    unproven.push_back(standing.clone());
                    let serve_conn = serve_conn.clone();
                    let drain = drain.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        let evicted = standing.evict.clone();
                        let _settle = Settle(standing.state.clone());
                        tokio::select! {
                            _ = open_and_serve(tcp, addr, tls, limits, drain, standing.state, serve_conn) => {}
                            _ = evicted.cancelled() => {
                                tracing::debug!(peer = %addr, "connection evicted: every slot was taken and it had sent no request");
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    // New connections are refused from here on.
    drop(listener);
    drain.cancel();
    if !conns.is_empty() {
        tracing::info!(
            connections = conns.len(),
            "draining: answering the requests already read"
        );
    }
    while let Some(done) = conns.join_next().await {
        log_conn_end(done);
    }
}

/// The handshake, preamble and service of one accepted connection.
async fn open_and_serve<F, Fut>(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: Option<Tls>,
    limits: Limits,
    drain: CancellationToken,
    state: Arc<AtomicU8>,
    serve_conn: Arc<F>,
) where
    F: Fn(Service, Accepted, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let opened = tokio::select! {
        o = open_accepted(tcp, tls.as_ref(), limits.preamble_timeout) => o,
        // Not a request yet: nothing is owed to it.
        _ = drain.cancelled() => return,
    };
    match opened {
        Ok((service, stream, peer)) => {
            let conn = Accepted {
                stream,
                drain,
                peer,
                frame_read_timeout: limits.frame_read_timeout,
                state,
            };
            serve_conn(service, conn, addr).await
        }
        // A peer of the CA asking for what its role may not use
        // is worth an operator's attention; stray bytes are not.
        Err(e @ Refused::Role { .. }) => {
            tracing::warn!(peer = %addr, error = %e, "connection refused")
        }
        // A certificate of another CA, an expired one, a peer
        // speaking clear text: said once per connection.
        Err(e @ Refused::Handshake(_)) => {
            tracing::info!(peer = %addr, error = %e, "connection refused")
        }
        Err(e) => tracing::debug!(peer = %addr, error = %e, "connection refused"),
    }
}

/// A connection's standing: [`UNPROVEN`] until it has sent a whole frame (or ended),
/// then [`SETTLED`]; or [`EVICTED`] by the accept loop while still unproven.
const UNPROVEN: u8 = 0;
const SETTLED: u8 = 1;
const EVICTED: u8 = 2;

#[derive(Clone, Default)]
struct Standing {
    state: Arc<AtomicU8>,
    evict: CancellationToken,
}

/// Marks its connection settled when dropped (the connection task ended).
struct Settle(Arc<AtomicU8>);

impl Drop for Settle {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(UNPROVEN, SETTLED, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Whether any connection is still unproven (forgetting those that are not, from
/// the front).
fn has_unproven(unproven: &mut VecDeque<Standing>) -> bool {
    while let Some(front) = unproven.front() {
        if front.state.load(Ordering::Acquire) == UNPROVEN {
            return true;
        }
        unproven.pop_front();
    }
    false
}

/// Closes the oldest connection that has not sent a whole frame, to make room for
/// the one from `newcomer`.
fn evict_oldest(unproven: &mut VecDeque<Standing>, newcomer: SocketAddr) {
    while let Some(oldest) = unproven.pop_front() {
        let won = oldest
            .state
            .compare_exchange(UNPROVEN, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            oldest.evict.cancel();
            tracing::debug!(%newcomer, "every connection slot is taken: the oldest connection without a request gives its slot up");
            return;
        }
    }
}

fn log_conn_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked");
        }
    }
}

/// Runs every request of one connection's channel on its own task.
pub async fn spawn_requests<S>(requests: S)
where
    S: futures::Stream,
    S::Item: Future<Output = ()> + Send + 'static,
{
    requests
        .for_each(|fut| async {
            tokio::spawn(fut);
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarpc::tokio_util::bytes::BytesMut;
    use tarpc::tokio_util::codec::Encoder;

    /// The boundaries the deadline follows are the codec's own, however the bytes
    /// are split across reads.
    #[test]
    fn boundaries_follow_the_codec() {
        let mut wire = BytesMut::new();
        let sizes = [0usize, 1, 3, 4, 5, 300, 70_000];
        for n in sizes {
            FrameCodec::<(), serde_bytes::ByteBuf>::default()
                .encode(serde_bytes::ByteBuf::from(vec![7u8; n]), &mut wire)
                .unwrap();
        }
        for chunk in [1usize, 2, 3, 4, 5, 7, 64, 4096, wire.len()] {
            let mut b = Boundaries::default();
            let mut done = 0;
            for piece in wire.chunks(chunk) {
                done += b.track(piece);
            }
            assert_eq!(done, sizes.len(), "in pieces of {chunk}");
            assert!(!b.mid_frame());
        }
        // Cut anywhere inside a frame, it is mid-frame.
        let mut b = Boundaries::default();
        b.track(&wire[..wire.len() - 1]);
        assert!(b.mid_frame());
        let mut b = Boundaries::default();
        b.track(&[0, 0]);
        assert!(b.mid_frame());
    }
}
