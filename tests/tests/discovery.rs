//! Discovery, each method on loopback: three real nodes form a cluster by signed
//! multicast and by DNS (SRV records from a DNS server the test runs); the multicast
//! receiver drops and counts every kind of bad datagram; without a secret multicast
//! stays passive; DNS resolution maps A records to the listen port and follows
//! changes.
//!
//! Multicast never leaves the loopback interface: nodes listen on 127.0.0.1, so they
//! send and join there, and the test's own sockets do too, with a TTL of 0. Each test
//! takes its own UDP port, so tests run in parallel.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reckon_node::config::{DiscoveryMethod, Mode, NodeConfig};
use reckon_node::discovery::multicast::{self, Announcement, Key, DATAGRAM_BYTES_MAX};
use reckon_node::discovery::{dns, Discovery, MulticastStats};
use reckon_tests::discovery::{
    a_record, free_tcp_ports, free_udp_port, loopback_listener, loopback_sender, multicast_env,
    send_to_group, srv_record, DiscoveredCluster, DnsResponder, LoggedNode, SECRET,
};
use reckon_tests::{cluster::three_workers_and_a_leader, wait::wait_until};
use tokio::sync::watch;

/// How long a cluster may take to form from cold start.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the gater sees store `default` with three workers and a leader.
async fn wait_formed(c: &DiscoveredCluster) {
    three_workers_and_a_leader(
        &c.gater.addr,
        "store default with three workers and a leader",
        FORM_TIMEOUT,
    )
    .await;
}

/// A node config for in-process discovery: node 1, cluster mode, `method`.
fn config(method: DiscoveryMethod, listen: &str) -> NodeConfig {
    let mut c = NodeConfig {
        node_id: 1,
        mode: Mode::Cluster,
        bootstrap_expect: 3,
        listen: listen.parse().expect("listen address"),
        ..NodeConfig::default()
    };
    c.discovery.method = method;
    c
}

fn key() -> Key {
    Key::new(SECRET.as_bytes()).expect("the test secret is long enough")
}

fn signed(node_id: u64, advertise: &str, timestamp_us: u64, key: &Key) -> Vec<u8> {
    let a = Announcement {
        timestamp_us,
        node_id,
        advertise: advertise.into(),
    };
    multicast::encode(&a, key).expect("encodes")
}

/// The node id of [`control`].
const CONTROL_ID: u64 = 9;

/// Announcements of [`control`] that make the window in which a passive node must
/// stay silent.
const CONTROL_ANNOUNCEMENTS: usize = 10;

/// An active multicast discovery on `port` (node [`CONTROL_ID`], with the secret),
/// announcing every 100 ms like the passive nodes under test would if they were
/// active. A window in which something must not happen is counted in its
/// announcements rather than in milliseconds: on a slower machine it lasts as much
/// longer as the node under test would take to send.
fn control(port: u16, stop: watch::Receiver<bool>) -> Discovery {
    let mut cfg = config(DiscoveryMethod::Multicast, "127.0.0.1:7609");
    cfg.node_id = CONTROL_ID;
    cfg.discovery.port = port;
    cfg.discovery.secret = Some(SECRET.into());
    cfg.discovery.announce_ms = 100;
    Discovery::start(&cfg, stop)
}

/// Everything `listener` hears, the control's announcements aside, until it has
/// heard [`CONTROL_ANNOUNCEMENTS`] of them. Blocks the thread.
fn heard_besides_the_control(listener: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    // Ten announcements 100 ms apart take a second here.
    let deadline = Instant::now() + reckon_tests::wait::BASE;
    let mut buf = [0u8; DATAGRAM_BYTES_MAX + 1];
    let (mut control, mut others) = (0, Vec::new());
    while control < CONTROL_ANNOUNCEMENTS {
        assert!(
            Instant::now() < deadline,
            "the control announced only {control} times"
        );
        // A read that times out only sends us round the loop.
        if let Ok((n, _)) = listener.recv_from(&mut buf) {
            let from_control = multicast::decode(&buf[..n], &key(), multicast::now_us())
                .is_ok_and(|a| a.node_id == CONTROL_ID);
            if from_control {
                control += 1;
            } else {
                others.push(buf[..n].to_vec());
            }
        }
    }
    others
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multicast_three_nodes_form_a_cluster() {
    let port = free_udp_port();
    let c = DiscoveredCluster::start(
        3,
        |_| "127.0.0.1:0".into(),
        |_| multicast_env(port, Some(SECRET)),
    );
    wait_formed(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_receiver_drops_and_counts_each_bad_datagram() {
    let port = free_udp_port();
    let mut cfg = config(DiscoveryMethod::Multicast, "127.0.0.1:7600");
    cfg.discovery.port = port;
    cfg.discovery.secret = Some(SECRET.into());
    cfg.discovery.announce_ms = 100;
    // Node 2 announces only at the start: it must stay known to the end.
    cfg.discovery.ttl_ms = 600_000;
    let (stop_tx, stop) = watch::channel(false);
    let discovery = Discovery::start(&cfg, stop);
    let stats = || discovery.multicast_stats().expect("multicast stats");
    let sender = loopback_sender();
    let key = key();

    // A good announcement from node 2, repeated until the receiver is up.
    let good = "127.0.0.1:7602";
    wait_until("node 2 to be discovered", Duration::from_secs(10), || {
        send_to_group(&sender, port, &signed(2, good, multicast::now_us(), &key));
        let d = discovery.clone();
        async move { d.peers().await == vec![good.to_string()] }
    })
    .await;
    // Some of those may still wait in the socket. The receiver reads its datagrams
    // in order: once a marker sent after them is counted (a datagram of a wrong
    // version), they are all counted too.
    let mut marker = signed(2, good, multicast::now_us(), &key);
    marker[0] = multicast::VERSION + 1;
    send_to_group(&sender, port, &marker);
    wait_until("the marker to be counted", Duration::from_secs(10), || {
        let s = stats();
        async move { s.wrong_version == 1 }
    })
    .await;
    let before = stats();
    assert!(before.accepted >= 1, "{before:?}");
    assert_eq!(
        before,
        MulticastStats {
            accepted: before.accepted,
            wrong_version: 1,
            ..MulticastStats::default()
        },
        "nothing but the marker dropped"
    );

    // Every bad one claims to be node 3.
    let bad = "127.0.0.1:7603";
    let now = multicast::now_us();
    let window = multicast::TIMESTAMP_SKEW_MAX.as_micros() as u64;
    let other = Key::new(&[b'z'; 48]).expect("48 bytes");
    let fresh = signed(3, bad, now, &key);
    let mut wrong_version = fresh.clone();
    wrong_version[0] = multicast::VERSION + 1;
    let mut flipped = fresh.clone();
    flipped[20] ^= 0x40;
    let mut oversize = fresh.clone();
    oversize.resize(DATAGRAM_BYTES_MAX + 100, 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Random bytes behind a valid version byte: the length field cannot match 41 bytes.
    let mut random = vec![multicast::VERSION];
    random.extend((0..40).map(|_| rng.gen::<u8>()));
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        ("other secret", signed(3, bad, now, &other)),
        ("flipped bit", flipped),
        ("stale", signed(3, bad, now - 2 * window, &key)),
        ("from the future", signed(3, bad, now + 2 * window, &key)),
        ("truncated", fresh[..fresh.len() - 5].to_vec()),
        ("empty", Vec::new()),
        ("oversize", oversize),
        ("random bytes", random),
        ("wrong version", wrong_version),
    ];
    for (_, d) in &datagrams {
        send_to_group(&sender, port, d);
    }
    let want = MulticastStats {
        accepted: before.accepted,
        wrong_secret: 2,
        stale: 2,
        malformed: 4,
        // And the marker.
        wrong_version: 1 + 1,
        table_full: 0,
    };
    wait_until(
        "every bad datagram to be counted",
        Duration::from_secs(10),
        || {
            let s = stats();
            async move { s.dropped() >= want.dropped() }
        },
    )
    .await;
    let after = stats();
    assert_eq!(
        after,
        want,
        "bad datagrams: {:?}",
        datagrams.iter().map(|d| d.0).collect::<Vec<_>>()
    );
    assert_eq!(discovery.peers().await, vec![good.to_string()]);

    // A good one from node 3 is accepted and makes it a peer.
    send_to_group(&sender, port, &signed(3, bad, multicast::now_us(), &key));
    wait_until("node 3 to be discovered", Duration::from_secs(10), || {
        let d = discovery.clone();
        async move { d.peers().await.len() == 2 }
    })
    .await;
    assert_eq!(
        discovery.peers().await,
        vec![good.to_string(), bad.to_string()]
    );
    assert_eq!(stats().accepted, before.accepted + 1);
    assert_eq!(stats().dropped(), want.dropped());
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_peers_expire_after_ttl() {
    let port = free_udp_port();
    let mut cfg = config(DiscoveryMethod::Multicast, "127.0.0.1:7600");
    cfg.discovery.port = port;
    cfg.discovery.secret = Some(SECRET.into());
    cfg.discovery.announce_ms = 100;
    cfg.discovery.ttl_ms = 500;
    let (stop_tx, stop) = watch::channel(false);
    let discovery = Discovery::start(&cfg, stop);
    let sender = loopback_sender();
    let key = key();
    wait_until("node 2 to be discovered", Duration::from_secs(10), || {
        send_to_group(
            &sender,
            port,
            &signed(2, "127.0.0.1:7602", multicast::now_us(), &key),
        );
        let d = discovery.clone();
        async move { !d.peers().await.is_empty() }
    })
    .await;
    // Silent for longer than ttl_ms: forgotten (after 500 ms and the next expiry
    // tick, 100 ms later; a node never forgotten would time this out).
    wait_until("node 2 to be forgotten", Duration::from_secs(10), || {
        let d = discovery.clone();
        async move { d.peers().await.is_empty() }
    })
    .await;
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_without_secret_neither_sends_nor_accepts() {
    let port = free_udp_port();
    let listener = loopback_listener(port, Duration::from_millis(200));
    let mut cfg = config(DiscoveryMethod::Multicast, "127.0.0.1:7600");
    cfg.discovery.port = port;
    cfg.discovery.announce_ms = 100;
    let (stop_tx, stop) = watch::channel(false);
    let discovery = Discovery::start(&cfg, stop);
    let Discovery::Multicast(m) = &discovery else {
        panic!("multicast discovery expected, got {discovery:?}");
    };
    assert!(m.is_passive());

    // A correctly signed announcement is not taken: nothing listens.
    let sender = loopback_sender();
    for _ in 0..5 {
        send_to_group(
            &sender,
            port,
            &signed(2, "127.0.0.1:7602", multicast::now_us(), &key()),
        );
    }
    // An active node beside it, announcing as the passive one would: the window
    // lasts while it announces CONTROL_ANNOUNCEMENTS times, and its signed
    // announcements are not taken either.
    let _control = control(port, stop_tx.subscribe());
    // The listener hears the test's own datagrams (it shares the port) and the
    // control's, and nothing else: the node never announces.
    let heard = tokio::task::block_in_place(|| heard_besides_the_control(&listener));
    for d in &heard {
        let from_node_1 =
            multicast::decode(d, &key(), multicast::now_us()).is_ok_and(|a| a.node_id == 1);
        assert!(!from_node_1, "a passive node announced itself");
    }
    assert_eq!(
        heard.len(),
        5,
        "the listener should hear exactly the test's datagrams"
    );
    assert!(discovery.peers().await.is_empty());
    assert_eq!(discovery.multicast_stats(), Some(MulticastStats::default()));
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_without_secret_logs_one_clear_line() {
    let port = free_udp_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let port_s = port.to_string();
    let listener = loopback_listener(port, Duration::from_millis(200));
    let node = tokio::task::block_in_place(|| {
        LoggedNode::start(
            dir.path(),
            &[
                ("RECKON_NODE_MODE", "cluster"),
                ("RECKON_NODE_BOOTSTRAP_EXPECT", "3"),
                ("RECKON_NODE_DISCOVERY__METHOD", "multicast"),
                ("RECKON_NODE_DISCOVERY__PORT", &port_s),
                ("RECKON_NODE_DISCOVERY__ANNOUNCE_MS", "100"),
            ],
        )
    });
    // The node is up and would announce ten times a second if it were not passive:
    // nothing is heard but the control, while it announces ten times.
    let (stop_tx, stop) = watch::channel(false);
    let _control = control(port, stop);
    let heard = tokio::task::block_in_place(|| heard_besides_the_control(&listener));
    assert!(
        heard.is_empty(),
        "a node without a secret sent {} datagrams",
        heard.len()
    );
    let _ = stop_tx.send(true);
    let passive: Vec<String> = node
        .log()
        .into_iter()
        .filter(|l| l.contains("discovery.secret"))
        .collect();
    assert_eq!(passive.len(), 1, "log: {:?}", node.log());
    assert!(passive[0].contains("WARN"), "{}", passive[0]);
    assert!(passive[0].contains("passive"), "{}", passive[0]);
    assert!(passive[0].contains("is not set"), "{}", passive[0]);
    assert!(!node.addr.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn k8s_dns_srv_three_nodes_form_a_cluster() {
    let ports = free_tcp_ports(3);
    let service = "reckon.reckon.svc.test.";
    let mut records = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let target = format!("reckon-{i}.reckon.reckon.svc.test.");
        records.push(srv_record(
            &format!("_reckon._tcp.{service}"),
            &target,
            *port,
        ));
        records.push(a_record(&target, Ipv4Addr::LOCALHOST));
    }
    let dns = DnsResponder::start(records);
    let dns_addr = dns.addr.to_string();
    let c = DiscoveredCluster::start(
        3,
        |i| format!("127.0.0.1:{}", ports[i]),
        |_| {
            vec![
                ("RECKON_NODE_DISCOVERY__METHOD".into(), "k8s_dns".into()),
                ("RECKON_NODE_DISCOVERY__SERVICE".into(), service.into()),
                ("RECKON_NODE_DISCOVERY__DNS_SERVER".into(), dns_addr.clone()),
                ("RECKON_NODE_DISCOVERY__RESOLVE_MS".into(), "250".into()),
            ]
        },
    );
    wait_formed(&c).await;
    let asked = dns.queries.lock().expect("queries").clone();
    assert!(
        asked
            .iter()
            .any(|q| q == &format!("_reckon._tcp.{service} SRV")),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_dns_a_records_pair_with_the_listen_port_and_follow_changes() {
    let service = "headless.reckon.test.";
    let ips = |n: u8| {
        (1..=n)
            .map(|i| a_record(service, Ipv4Addr::new(127, 0, 0, i)))
            .collect::<Vec<_>>()
    };
    let dns = DnsResponder::start(ips(3));
    let mut cfg = config(DiscoveryMethod::K8sDns, "127.0.0.1:7777");
    cfg.discovery.service = Some(service.into());
    cfg.discovery.dns_server = Some(dns.addr);
    cfg.discovery.resolve_ms = 100;
    let (stop_tx, stop) = watch::channel(false);
    let discovery = Discovery::start(&cfg, stop);
    assert_eq!(discovery.multicast_stats(), None);
    let expect = |n: u8| {
        (1..=n)
            .map(|i| format!("127.0.0.{i}:7777"))
            .collect::<Vec<_>>()
    };
    wait_until("three A records", Duration::from_secs(10), || {
        let d = discovery.clone();
        async move { d.peers().await == expect(3) }
    })
    .await;

    // A pod goes away, another comes: the next rounds see it.
    dns.set_records(ips(2));
    wait_until("two A records", Duration::from_secs(10), || {
        let d = discovery.clone();
        async move { d.peers().await == expect(2) }
    })
    .await;

    // SRV records, once published, take precedence.
    dns.set_records(vec![
        srv_record(
            &format!("_reckon._tcp.{service}"),
            "pod-a.reckon.test.",
            7601,
        ),
        a_record("pod-a.reckon.test.", Ipv4Addr::new(127, 0, 0, 9)),
    ]);
    wait_until("the SRV record", Duration::from_secs(10), || {
        let d = discovery.clone();
        async move { d.peers().await == vec!["127.0.0.9:7601".to_string()] }
    })
    .await;

    // The DNS server goes away (it answers nothing more): the last answer is kept
    // over a round that failed, not merely over a window in which a round may still
    // be waiting (a round takes seconds to fail: QUERY_TIMEOUT per attempt). A round
    // is one SRV lookup, retried under one query id: once a second id reaches the
    // server, the round before it has failed.
    let dns_addr: SocketAddr = dns.addr;
    dns.fall_silent();
    wait_until(
        "a round to fail and the next to begin",
        dns::ROUND_TIMEOUT + reckon_tests::wait::BASE,
        || {
            let mut ids = dns.unanswered_srv_ids.lock().expect("ids").clone();
            ids.dedup();
            async move { ids.len() >= 2 }
        },
    )
    .await;
    assert_eq!(
        discovery.peers().await,
        vec!["127.0.0.9:7601".to_string()],
        "server {dns_addr} gone"
    );
    let _ = stop_tx.send(true);
}
