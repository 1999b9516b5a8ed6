//! A server's drain over real loopback TCP ([`transport::accept_loop`]): once its
//! shutdown future resolves, requests already read are answered, requests sent
//! afterwards fail instead of hanging, new connections are refused, and the loop
//! returns when nothing is owed.

use std::time::{Duration, Instant};

use reckon_gater::transport::{self, Service};
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a held request takes.
const HOLD: Duration = Duration::from_millis(300);
/// Generous bound on anything that should be prompt.
const PROMPT: Duration = Duration::from_secs(5);

#[tarpc::service]
trait Probe {
    /// Answers `ms` after waiting that many milliseconds.
    async fn hold(ms: u64) -> u64;
}

#[derive(Clone)]
struct Holder;

impl Probe for Holder {
    async fn hold(self, _: Context, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

fn ctx() -> Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + PROMPT * 2;
    c
}

async fn serve(listener: TcpListener, shutdown: oneshot::Receiver<()>) {
    transport::accept_loop(
        listener,
        async move {
            let _ = shutdown.await;
        },
        |_, conn, _| async move {
            let channel = BaseChannel::with_defaults(transport::wrap(conn));
            transport::spawn_requests(channel.execute(Holder.serve())).await;
        },
    )
    .await;
}

async fn client(addr: &str) -> ProbeClient {
    let t = transport::dial(addr, Service::Worker).await.expect("dial");
    ProbeClient::new(tarpc::client::Config::default(), t).spawn()
}

#[tokio::test]
async fn a_drain_answers_what_was_read_and_refuses_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(serve(listener, stopped));

    let busy = client(&addr).await;
    let idle = client(&addr).await;
    // The idle connection is served before the drain: it is really open.
    assert_eq!(idle.hold(ctx(), 0).await.unwrap(), 0);
    let held = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.hold(ctx(), HOLD.as_millis() as u64).await })
    };
    // Let the request reach the server and be read.
    tokio::time::sleep(HOLD / 3).await;
    let drain_started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // A request after the drain began gets an error, promptly, on either connection.
    let late = tokio::time::timeout(PROMPT, busy.hold(ctx(), 0)).await;
    assert!(
        matches!(late, Ok(Err(_))),
        "a request sent while draining fails: {late:?}"
    );
    let late = tokio::time::timeout(PROMPT, idle.hold(ctx(), 0)).await;
    assert!(matches!(late, Ok(Err(_))), "{late:?}");
    // No new connection.
    let refused = tokio::time::timeout(PROMPT, tokio::net::TcpStream::connect(&addr)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "the listener is closed while draining"
    );

    // The request read before the drain is answered.
    let answer = tokio::time::timeout(PROMPT, held).await.unwrap().unwrap();
    assert_eq!(answer.unwrap(), HOLD.as_millis() as u64);
    // And the server is done once it was.
    tokio::time::timeout(PROMPT, server)
        .await
        .expect("the accept loop returns once nothing is owed")
        .unwrap();
    assert!(drain_started.elapsed() < PROMPT);
}

#[tokio::test]
async fn dropping_a_draining_server_cuts_its_requests_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel();
    let server = serve(listener, stopped);
    let busy = client(&addr).await;
    let held = tokio::spawn(async move { busy.hold(ctx(), 60_000).await });
    tokio::spawn(async move {
        tokio::time::sleep(HOLD / 3).await;
        let _ = stop.send(());
    });
    // A grace shorter than the held request: the server is dropped mid-drain.
    let drained = tokio::time::timeout(HOLD, server).await;
    assert!(drained.is_err(), "the drain waits for the held request");
    let answer = tokio::time::timeout(PROMPT, held).await.unwrap().unwrap();
    assert!(
        answer.is_err(),
        "a request cut off gets an error: {answer:?}"
    );
}
