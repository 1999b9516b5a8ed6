//! A server's drain over real loopback TCP ([`transport::accept_loop`]): once its
//! shutdown future resolves, requests already read are answered, requests sent
//! afterwards fail instead of hanging, new connections are refused, and the loop
//! returns when nothing is owed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// Counts the holding requests (`ms` > 0) it has started.
#[derive(Clone)]
struct Holder {
    holding: Arc<AtomicUsize>,
}

impl Probe for Holder {
    async fn hold(self, _: Context, ms: u64) -> u64 {
        if ms > 0 {
            self.holding.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

/// Waits until the server has read `n` holding requests (it runs them).
async fn holding(counter: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + PROMPT;
    while counter.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "the server never read the request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `addr` refuses connections: the server has begun its drain (it
/// closes its listener and starts draining in one step).
async fn refusing(addr: &str) {
    let deadline = Instant::now() + PROMPT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ctx() -> Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + PROMPT * 2;
    c
}

async fn serve(listener: TcpListener, shutdown: oneshot::Receiver<()>, holding: Arc<AtomicUsize>) {
    transport::accept_loop(
        listener,
        async move {
            let _ = shutdown.await;
        },
        move |_, conn, _| {
            let holder = Holder {
                holding: holding.clone(),
            };
            async move {
                let channel = BaseChannel::with_defaults(transport::wrap(conn));
                transport::spawn_requests(channel.execute(holder.serve())).await;
            }
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
    let counter = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(serve(listener, stopped, counter.clone()));

    let busy = client(&addr).await;
    let idle = client(&addr).await;
    // The idle connection is served before the drain: it is really open.
    assert_eq!(idle.hold(ctx(), 0).await.unwrap(), 0);
    let held = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.hold(ctx(), HOLD.as_millis() as u64).await })
    };
    // The request has reached the server and been read.
    holding(&counter, 1).await;
    let drain_started = Instant::now();
    stop.send(()).unwrap();
    refusing(&addr).await;

    // A request after the drain began gets an error, promptly, on either connection.
    let late = tokio::time::timeout(PROMPT, busy.hold(ctx(), 0)).await;
    assert!(
        matches!(late, Ok(Err(_))),
        "a request sent while draining fails: {late:?}"
    );
    let late = tokio::time::timeout(PROMPT, idle.hold(ctx(), 0)).await;
    assert!(matches!(late, Ok(Err(_))), "{late:?}");
    // No new connection (still).
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
    let counter = Arc::new(AtomicUsize::new(0));
    // Not spawned: the server runs while this test polls it, and dropping it is
    // what the binaries do when their grace runs out.
    let mut server = Box::pin(serve(listener, stopped, counter.clone()));
    let busy = client(&addr).await;
    let held = tokio::spawn(async move { busy.hold(ctx(), 60_000).await });
    tokio::select! {
        _ = &mut server => panic!("the server stopped before it was told to"),
        _ = holding(&counter, 1) => {}
    }
    stop.send(()).unwrap();
    // A grace shorter than the held request: the server is dropped mid-drain. It
    // cannot finish before the held request (60 s) ends, on any machine.
    let drained = tokio::time::timeout(HOLD, &mut server).await;
    assert!(drained.is_err(), "the drain waits for the held request");
    drop(server);
    let answer = tokio::time::timeout(PROMPT, held).await.unwrap().unwrap();
    assert!(
        answer.is_err(),
        "a request cut off gets an error: {answer:?}"
    );
}
