//! Support for the discovery tests: multicast sockets confined to the loopback
//! interface, a small DNS responder on loopback, and clusters of real `reckon-node`
//! processes that find each other by multicast or DNS.
//!
//! Every multicast socket here sends and joins on 127.0.0.1 with a time-to-live of
//! 0, so no datagram leaves the host; each test takes its own UDP port.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};

use crate::gater::GaterProc;
use crate::{after_marker, bin, clear_env, forward_lines, NodeProc};

/// The multicast group the tests use: the default one, on loopback only.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 1);
/// The interface every test socket and node uses.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Secret shared by the nodes of a test cluster (at least 32 bytes).
pub const SECRET: &str = "reckon-tests discovery secret, 32+ bytes long";

/// A UDP port free for the test group, found by binding the group on port 0.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind(SocketAddrV4::new(GROUP, 0)).expect("bind the group on port 0");
    s.local_addr().expect("addr").port()
}

/// A socket that sends to the group through the loopback interface only.
pub fn loopback_sender() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_multicast_if_v4(&LOOPBACK).expect("multicast_if");
    s.set_multicast_loop_v4(true).expect("multicast_loop");
    s.set_multicast_ttl_v4(0).expect("multicast_ttl");
    s.bind(&SocketAddrV4::new(LOOPBACK, 0).into())
        .expect("bind 127.0.0.1:0");
    s.into()
}

/// Sends `datagram` to the group on `port`, through loopback.
pub fn send_to_group(sender: &UdpSocket, port: u16, datagram: &[u8]) {
    sender
        .send_to(datagram, SocketAddrV4::new(GROUP, port))
        .expect("send to the group");
}

/// A socket that hears the group on `port` on the loopback interface, sharing the
/// port with nodes on this host; reads time out after `timeout`.
pub fn loopback_listener(port: u16, timeout: Duration) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_reuse_address(true).expect("reuse_address");
    s.set_reuse_port(true).expect("reuse_port");
    s.bind(&SocketAddrV4::new(GROUP, port).into())
        .expect("bind the group");
    s.join_multicast_v4(&GROUP, &LOOPBACK).expect("join on lo");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(timeout)).expect("read timeout");
    s
}

/// Polls `f` every 20 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A DNS server on 127.0.0.1 that answers UDP queries from a fixed set of records:
/// the records whose name and type match, NOERROR with no answer when the name has
/// records of other types only, NXDOMAIN otherwise. Stops on drop.
pub struct DnsResponder {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Queries answered so far, as `NAME TYPE`.
    pub queries: Arc<Mutex<Vec<String>>>,
    /// The ids of the SRV queries it left unanswered ([`DnsResponder::fall_silent`]),
    /// in order: a resolver sends its retries of one lookup under one id.
    pub unanswered_srv_ids: Arc<Mutex<Vec<u16>>>,
    records: Arc<Mutex<Vec<Record>>>,
    silence: Arc<Mutex<Silence>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Whether a [`DnsResponder`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silence {
    Answering,
    FromNextSrv,
    Silent,
}

impl DnsResponder {
    /// Starts answering from `records`.
    pub fn start(records: Vec<Record>) -> DnsResponder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS responder");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let unanswered_srv_ids = Arc::new(Mutex::new(Vec::new()));
        let records = Arc::new(Mutex::new(records));
        let silence = Arc::new(Mutex::new(Silence::Answering));
        let thread = {
            let served = Served {
                records: records.clone(),
                silence: silence.clone(),
                stop: stop.clone(),
                queries: queries.clone(),
                unanswered_srv_ids: unanswered_srv_ids.clone(),
            };
            std::thread::spawn(move || serve_dns(socket, served))
        };
        DnsResponder {
            addr,
            queries,
            unanswered_srv_ids,
            records,
            silence,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering from the next SRV query on: what a resolver sees over UDP of
    /// a server that went away (it gets no answer either way), while the queries
    /// still show. Starting at an SRV query, which opens each k8s_dns round, the
    /// outage never cuts a round between its SRV answer and its address lookups.
    pub fn fall_silent(&self) {
        *self.silence.lock().expect("silence") = Silence::FromNextSrv;
    }

    /// Answers from `records` from now on.
    pub fn set_records(&self, records: Vec<Record>) {
        *self.records.lock().expect("records") = records;
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`serve_dns`] shares with its [`DnsResponder`].
struct Served {
    records: Arc<Mutex<Vec<Record>>>,
    silence: Arc<Mutex<Silence>>,
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<String>>>,
    unanswered_srv_ids: Arc<Mutex<Vec<u16>>>,
}

fn serve_dns(socket: UdpSocket, served: Served) {
    let Served {
        records,
        silence,
        stop,
        queries,
        unanswered_srv_ids,
    } = served;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if request.metadata.message_type != MessageType::Query {
            continue;
        }
        let srv = request
            .queries
            .first()
            .is_some_and(|q| q.query_type() == RecordType::SRV);
        {
            let mut silence = silence.lock().expect("silence");
            if *silence == Silence::FromNextSrv && srv {
                *silence = Silence::Silent;
            }
            if *silence == Silence::Silent {
                if srv {
                    unanswered_srv_ids
                        .lock()
                        .expect("unanswered ids")
                        .push(request.metadata.id);
                }
                continue;
            }
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        if let Some(query) = request.queries.first() {
            queries.lock().expect("queries").push(format!(
                "{} {}",
                query.name(),
                query.query_type()
            ));
            response.add_query(query.clone());
            let records = records.lock().expect("records").clone();
            let named: Vec<&Record> = records.iter().filter(|r| &r.name == query.name()).collect();
            if named.is_empty() {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            for r in named {
                if r.record_type() == query.query_type() {
                    response.add_answer(r.clone());
                }
            }
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

/// A DNS name; panics if `s` is not one.
pub fn dns_name(s: &str) -> Name {
    Name::from_ascii(s).expect("a DNS name")
}

/// An SRV record `owner -> target:port`.
pub fn srv_record(owner: &str, target: &str, port: u16) -> Record {
    Record::from_rdata(
        dns_name(owner),
        5,
        RData::SRV(SRV::new(0, 10, port, dns_name(target))),
    )
}

/// An A record `owner -> ip`.
pub fn a_record(owner: &str, ip: Ipv4Addr) -> Record {
    Record::from_rdata(dns_name(owner), 5, RData::A(A(ip)))
}

/// Free loopback TCP ports, as [`crate::ports::free_ports`].
pub fn free_tcp_ports(n: usize) -> Vec<u16> {
    crate::ports::free_ports(n)
}

/// Nodes in cluster mode that find each other through discovery, and a gater they
/// register with.
pub struct DiscoveredCluster {
    /// The nodes, node id = index + 1.
    pub nodes: Vec<NodeProc>,
    /// The gater.
    pub gater: GaterProc,
    _root: tempfile::TempDir,
}

impl DiscoveredCluster {
    /// Starts a gater, then `n` nodes with `mode = "cluster"`, `bootstrap_expect =
    /// n` and store `default`; node `i` listens on `listen(i)` and gets the
    /// environment `env(i)` (the discovery keys).
    pub fn start(
        n: usize,
        listen: impl Fn(usize) -> String,
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> DiscoveredCluster {
        let root = tempfile::tempdir().expect("tempdir");
        let gater = GaterProc::start("127.0.0.1:0", &[("RECKON_GATER_LEASE_MS", "1500")]);
        let nodes = (0..n)
            .map(|i| {
                let dir = root.path().join(format!("node{}", i + 1));
                let mut cmd = Command::new(bin("reckon-node"));
                cmd.arg("--node-id")
                    .arg((i + 1).to_string())
                    .arg("--listen")
                    .arg(listen(i))
                    .arg("--data-dir")
                    .arg(&dir)
                    .arg("--gater")
                    .arg(&gater.addr)
                    .env("RECKON_NODE_MODE", "cluster")
                    .env("RECKON_NODE_BOOTSTRAP_EXPECT", n.to_string());
                for (k, v) in env(i) {
                    cmd.env(k, v);
                }
                NodeProc::spawn(cmd, &dir)
            })
            .collect();
        DiscoveredCluster {
            nodes,
            gater,
            _root: root,
        }
    }
}

/// A `reckon-node` whose stderr (its log) is kept for the test to read; killed on
/// drop.
pub struct LoggedNode {
    child: Child,
    /// Its node RPC address.
    pub addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: PathBuf,
}

impl LoggedNode {
    /// Starts `reckon-node --node-id 1 --listen 127.0.0.1:0 --data-dir DIR` with
    /// `env` (and no other `RECKON_NODE_` variable), and waits for its ready line.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> LoggedNode {
        let mut cmd = Command::new(bin("reckon-node"));
        cmd.args(["--node-id", "1", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir);
        clear_env(&mut cmd, "RECKON_NODE_");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn reckon-node");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("stderr lines").push(line);
                }
            });
        }
        let rx = forward_lines(stdout);
        let Some(rest) = after_marker(&rx, " listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "reckon-node did not become ready; stderr: {:?}",
                lines.lock().expect("stderr lines")
            );
        };
        let addr = rest.split_whitespace().next().expect("addr").to_string();
        LoggedNode {
            child,
            addr,
            stderr: lines,
            _dir: dir.to_path_buf(),
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lines").clone()
    }
}

impl Drop for LoggedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a multicast node: method, port, secret and a quick announce
/// interval.
pub fn multicast_env(port: u16, secret: Option<&str>) -> Vec<(String, String)> {
    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("RECKON_NODE_DISCOVERY__METHOD", "multicast".into());
    env.insert("RECKON_NODE_DISCOVERY__PORT", port.to_string());
    env.insert("RECKON_NODE_DISCOVERY__ANNOUNCE_MS", "250".into());
    if let Some(secret) = secret {
        env.insert("RECKON_NODE_DISCOVERY__SECRET", secret.into());
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
