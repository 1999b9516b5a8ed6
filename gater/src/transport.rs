//! Serving and dialling tarpc services over TCP.
//!
//! Frames are length-delimited bincode with a finite [`MAX_FRAME_BYTES`], and sockets
//! set `TCP_NODELAY` so that small requests are not held back by Nagle's algorithm.
//!
//! Every connection opens with a 5-byte preamble: the magic `RKN1` and the byte of the
//! [`Service`] it wants. One port can so serve several services (a node serves its
//! worker service and the node-to-node Raft service on one port), and a stray or
//! mismatched peer is turned away at once instead of failing inside a decoder.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// Wraps an accepted or dialled stream into a framed bincode transport.
pub fn wrap<In, Out>(stream: TcpStream) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let _ = stream.set_nodelay(true);
    let framed = tokio_util_framed(stream);
    tarpc::serde_transport::new(framed, Bincode::default())
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
    Ok(wrap(stream))
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

/// Accepts connections on `listener` until `shutdown` resolves. Each connection's
/// preamble is read on its own task, then `serve_conn` gets the service it asked for
/// and the stream. At most [`MAX_CONNECTIONS`] are served at once.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serve_conn: F,
) where
    F: Fn(Service, TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve_conn = std::sync::Arc::new(serve_conn);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                let serve_conn = serve_conn.clone();
                tokio::spawn(async move {
                    match read_preamble(&mut stream).await {
                        Ok(service) => serve_conn(service, stream, peer).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "connection refused"),
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
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
