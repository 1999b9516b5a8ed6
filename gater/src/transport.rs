//! Serving and dialling tarpc services over TCP.
//!
//! Frames are length-delimited bincode with a finite [`MAX_FRAME_BYTES`], and sockets
//! set `TCP_NODELAY` so that small requests are not held back by Nagle's algorithm.

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
use tokio::net::{TcpListener, TcpStream};

/// The largest frame either side accepts: a 4 MiB batch plus envelope, with room.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How long dialling a peer may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The connections one listener serves at once; further ones wait in the backlog.
pub const MAX_CONNECTIONS: usize = 4096;

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

/// Dials `addr` within [`CONNECT_TIMEOUT`].
pub async fn dial<In, Out>(addr: &str) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} took longer than {CONNECT_TIMEOUT:?}"),
            )
        })??;
    Ok(wrap(stream))
}

/// Accepts connections on `listener` until `shutdown` resolves, handing each one's
/// transport to `serve_conn` on its own task. At most [`MAX_CONNECTIONS`] are served at
/// once.
pub async fn accept_loop<In, Out, F, Fut>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serve_conn: F,
) where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
    F: Fn(TcpTransport<In, Out>, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
            Ok((stream, peer)) => {
                let fut = serve_conn(wrap(stream), peer);
                tokio::spawn(async move {
                    fut.await;
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
