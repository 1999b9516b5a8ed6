//! Serving and dialling tarpc services over TCP.
//!
//! Frames are length-delimited bincode with a finite [`MAX_FRAME_BYTES`], and sockets
//! set `TCP_NODELAY` so that small requests are not held back by Nagle's algorithm.
//!
//! Every connection opens with a 5-byte preamble: the magic `RKN1` and the byte of the
//! [`Service`] it wants. One port can so serve several services (a node serves its
//! worker service and the node-to-node Raft service on one port), and a stray or
//! mismatched peer is turned away at once instead of failing inside a decoder.
//!
//! A server drains before it stops ([`accept_loop`]): it closes its listener, then
//! every connection stops reading requests while the requests it already read run
//! to their end and get their answers; a connection closes once it owes none. A
//! request that arrived too late is never read, and its caller sees the connection
//! close, which a gater treats as a transport error (it fails over).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The largest frame either side accepts: a 4 MiB batch plus envelope, with room.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How long dialling a peer may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The connections one listener serves at once; further ones wait in the backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// The protocol magic every connection starts with.
pub const MAGIC: [u8; 4] = *b"RKN1";

/// How long a new connection may take to send its preamble.
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause after a failed `accept` (out of file descriptors, say) before the next.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The services a connection can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// A node's [worker service](crate::worker).
    Worker,
    /// The [gater service](crate::api).
    Gater,
    /// The node-to-node Raft service (internal to the node).
    Raft,
}

impl Service {
    fn byte(self) -> u8 {
        match self {
            Service::Worker => b'W',
            Service::Gater => b'G',
            Service::Raft => b'R',
        }
    }

    fn from_byte(b: u8) -> Option<Service> {
        match b {
            b'W' => Some(Service::Worker),
            b'G' => Some(Service::Gater),
            b'R' => Some(Service::Raft),
            _ => None,
        }
    }
}

/// A bincode transport over one TCP stream.
pub type TcpTransport<In, Out> = Transport<TcpStream, In, Out, Bincode<In, Out>>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// A connection a server accepted, with the server's drain signal; turn it into a
/// transport with [`wrap`].
#[derive(Debug)]
pub struct Accepted {
    stream: TcpStream,
    drain: CancellationToken,
}

/// Wraps an accepted connection into a framed bincode transport that stops
/// yielding requests once its server drains (see the module docs); responses
/// still go out.
pub fn wrap<In, Out>(conn: Accepted) -> Draining<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    Draining {
        inner: frame(conn.stream),
        drain: Box::pin(conn.drain.cancelled_owned()),
        drained: false,
    }
}

fn frame<In, Out>(stream: TcpStream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let _ = stream.set_nodelay(true);
    let framed = tokio_util_framed(stream);
    tarpc::serde_transport::new(framed, Bincode::default())
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

fn tokio_util_framed(
    stream: TcpStream,
) -> tarpc::tokio_util::codec::Framed<TcpStream, LengthDelimitedCodec> {
    tarpc::tokio_util::codec::Framed::new(stream, codec())
}

/// Dials `addr` within [`CONNECT_TIMEOUT`] and asks for `service`.
pub async fn dial<In, Out>(addr: &str, service: Service) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let connect = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut preamble = [0u8; 5];
        preamble[..4].copy_from_slice(&MAGIC);
        preamble[4] = service.byte();
        stream.write_all(&preamble).await?;
        Ok::<_, io::Error>(stream)
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} took longer than {CONNECT_TIMEOUT:?}"),
            )
        })??;
    Ok(frame(stream))
}

async fn read_preamble(stream: &mut TcpStream) -> io::Result<Service> {
    let mut b = [0u8; 5];
    tokio::time::timeout(PREAMBLE_TIMEOUT, stream.read_exact(&mut b))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no preamble in time"))??;
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

/// Accepts connections on `listener` until `shutdown` resolves, then drains: the
/// listener is closed, every connection stops reading requests (through
/// [`wrap`]), and this returns once each has answered the requests it had read and
/// closed. Dropping the future before then cuts the remaining connections off, so a
/// caller bounds the drain with a timeout.
///
/// Each connection's preamble is read on its own task, then `serve_conn` gets the
/// service it asked for and the connection. At most [`MAX_CONNECTIONS`] are served
/// at once; further ones wait in the backlog.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => log_conn_end(done),
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((mut stream, peer)) => {
                    let serve_conn = serve_conn.clone();
                    let drain = drain.clone();
                    conns.spawn(async move {
                        let preamble = tokio::select! {
                            p = read_preamble(&mut stream) => p,
                            // Not a request yet: nothing is owed to it.
                            _ = drain.cancelled() => return,
                        };
                        match preamble {
                            Ok(service) => serve_conn(service, Accepted { stream, drain }, peer).await,
                            Err(e) => tracing::debug!(%peer, error = %e, "connection refused"),
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
