//! `k8s_dns` discovery: the peers are the records of a Kubernetes headless Service,
//! resolved with hickory-resolver every `discovery.resolve_ms` in a background task.
//!
//! Each round asks for the SRV records of `_reckon._tcp.<service>` (what Kubernetes
//! publishes for a Service port named `reckon` over TCP; a `service` that starts with
//! `_` is taken as the full SRV name). Each SRV target gives `IP:PORT` with the
//! record's port, its addresses taken from the answer's additional section or
//! looked up. When there is no SRV record, the A/AAAA records of `<service>` give
//! `IP:PORT` with this node's own `listen` port (every pod listens on the same one).
//!
//! [`DnsDiscovery::peers`] returns the latest successful round and never waits for
//! DNS; a failing round keeps the previous list, so a DNS outage does not make a
//! node forget its peers. The list may include this node itself.
//!
//! The mapping from records to addresses ([`srv_targets`], [`addresses_by_name`],
//! [`srv_addresses`], [`ip_addresses`]) is plain functions, tested without DNS.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, Record};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::watch;

use crate::config::NodeConfig;

/// What `<service>` is prefixed with to name its SRV records.
pub const SRV_PREFIX: &str = "_reckon._tcp.";
/// Most peer addresses one round yields; further records are ignored.
pub const PEERS_MAX: usize = 1024;
/// Deadline of one whole round (the SRV query and the lookups of its targets).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one DNS query; the resolver tries [`QUERY_ATTEMPTS`] times.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one DNS query.
pub const QUERY_ATTEMPTS: usize = 2;

/// What `k8s_dns` discovery runs with; see [`Settings::from_config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The headless Service's DNS name.
    pub service: String,
    /// The port paired with A/AAAA records: this node's `listen` port.
    pub port: u16,
    /// Interval between rounds.
    pub interval: Duration,
    /// A DNS server to ask instead of the system's configuration.
    pub server: Option<SocketAddr>,
}

impl Settings {
    /// The settings of the `[discovery]` table and this node's `listen` port;
    /// `None` when `discovery.service` is not set.
    pub fn from_config(config: &NodeConfig) -> Option<Settings> {
        let d = &config.discovery;
        Some(Settings {
            service: d.service.clone()?,
            port: config.listen.port(),
            interval: Duration::from_millis(d.resolve_ms),
            server: d.dns_server,
        })
    }
}

/// `k8s_dns` discovery: a cheap `Clone` handle on the latest resolution, which a
/// background task refreshes.
#[derive(Clone, Default)]
pub struct DnsDiscovery {
    latest: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for DnsDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscovery")
            .field("peers", &self.peers())
            .finish()
    }
}

impl DnsDiscovery {
    /// Starts resolving in a background task that ends when `stop` turns true (or
    /// its sender is dropped). The first round starts at once.
    ///
    /// Must be called within a Tokio runtime.
    pub fn start(settings: Settings, stop: watch::Receiver<bool>) -> DnsDiscovery {
        let discovery = DnsDiscovery::default();
        tokio::spawn(run(discovery.clone(), settings, stop));
        discovery
    }

    /// An instance that knows no peer and resolves nothing (`discovery.service`
    /// unset, which validation allows only with `bootstrap_expect = 1`).
    pub fn idle() -> DnsDiscovery {
        DnsDiscovery::default()
    }

    /// The addresses of the latest successful round, sorted.
    pub fn peers(&self) -> Vec<String> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, peers: Vec<String>) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = peers;
    }
}

/// The SRV name asked for `service`: `_reckon._tcp.<service>`, or `service` itself
/// when it starts with `_`.
pub fn srv_name(service: &str) -> String {
    if service.starts_with('_') {
        service.to_owned()
    } else {
        format!("{SRV_PREFIX}{service}")
    }
}

/// The `(target, port)` of every SRV record among `records`, in order, without
/// duplicates, at most [`PEERS_MAX`]. A target of `.` ("no such service") is left out.
pub fn srv_targets(records: &[Record]) -> Vec<(Name, u16)> {
    let mut out: Vec<(Name, u16)> = Vec::new();
    for record in records {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        if srv.target.is_root() {
            continue;
        }
        let target = (srv.target.clone(), srv.port);
        if !out.contains(&target) {
            out.push(target);
        }
        if out.len() == PEERS_MAX {
            break;
        }
    }
    out
}

/// The addresses of the A and AAAA records among `records`, by owner name.
pub fn addresses_by_name(records: &[Record]) -> HashMap<Name, Vec<IpAddr>> {
    let mut out: HashMap<Name, Vec<IpAddr>> = HashMap::new();
    for record in records {
        let ip = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        out.entry(record.name.clone()).or_default().push(ip);
    }
    out
}

/// `IP:PORT` for every address of every SRV target found in `ips`, sorted, without
/// duplicates, at most [`PEERS_MAX`]. Targets without addresses are left out.
pub fn srv_addresses(targets: &[(Name, u16)], ips: &HashMap<Name, Vec<IpAddr>>) -> Vec<String> {
    let set: BTreeSet<String> = targets
        .iter()
        .flat_map(|(name, port)| {
            ips.get(name)
                .into_iter()
                .flatten()
                .map(|ip| SocketAddr::new(*ip, *port).to_string())
        })
        .collect();
    set.into_iter().take(PEERS_MAX).collect()
}

/// `IP:PORT` for every address with the one `port`, sorted, without duplicates, at
/// most [`PEERS_MAX`].
pub fn ip_addresses(ips: &[IpAddr], port: u16) -> Vec<String> {
    let set: BTreeSet<String> = ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, port).to_string())
        .collect();
    set.into_iter().take(PEERS_MAX).collect()
}

/// Which records one round used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Srv,
    Address,
}

fn build_resolver(settings: &Settings) -> Result<TokioResolver, NetError> {
    let mut builder = match settings.server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_ATTEMPTS;
    builder.build()
}

/// One round: SRV first, else A/AAAA; see the module docs.
async fn resolve(
    resolver: &TokioResolver,
    settings: &Settings,
) -> Result<(Source, Vec<String>), NetError> {
    let srv = srv_name(&settings.service);
    match resolver.srv_lookup(srv.as_str()).await {
        Ok(lookup) => {
            let targets = srv_targets(lookup.answers());
            if !targets.is_empty() {
                let mut ips = addresses_by_name(lookup.additionals());
                for (target, _) in &targets {
                    if ips.contains_key(target) {
                        continue;
                    }
                    match resolver.lookup_ip(target.clone()).await {
                        Ok(found) => {
                            ips.insert(target.clone(), found.iter().collect());
                        }
                        Err(e) => {
                            tracing::debug!(
                                %target,
                                error = %e,
                                "k8s_dns discovery cannot resolve an SRV target"
                            );
                        }
                    }
                }
                return Ok((Source::Srv, srv_addresses(&targets, &ips)));
            }
        }
        Err(e) if e.is_no_records_found() => {}
        Err(e) => return Err(e),
    }
    match resolver.lookup_ip(settings.service.as_str()).await {
        Ok(found) => {
            let ips: Vec<IpAddr> = found.iter().collect();
            Ok((Source::Address, ip_addresses(&ips, settings.port)))
        }
        Err(e) if e.is_no_records_found() => Ok((Source::Address, Vec::new())),
        Err(e) => Err(e),
    }
}

async fn run(discovery: DnsDiscovery, settings: Settings, mut stop: watch::Receiver<bool>) {
    let resolver = loop {
        match build_resolver(&settings) {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "k8s_dns discovery cannot read the system's DNS configuration (set \
                     discovery.dns_server to choose a server); trying again in {:?}",
                    settings.interval
                );
                tokio::select! {
                    _ = super::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(settings.interval) => {}
                }
            }
        }
    };
    tracing::info!(
        service = %settings.service, srv = %srv_name(&settings.service),
        server = ?settings.server, resolve_ms = settings.interval.as_millis() as u64,
        "k8s_dns discovery started"
    );
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = super::stopped(&mut stop) => return,
            _ = tick.tick() => {}
        }
        // Every round asks afresh: the point is to see pods come and go.
        resolver.clear_cache();
        let round = tokio::time::timeout(ROUND_TIMEOUT, resolve(&resolver, &settings));
        let outcome = tokio::select! {
            _ = super::stopped(&mut stop) => return,
            outcome = round => outcome,
        };
        let error = match outcome {
            Ok(Ok((source, peers))) => {
                if failing {
                    tracing::info!(service = %settings.service, "k8s_dns discovery resolves again");
                    failing = false;
                }
                update(&discovery, &settings.service, source, peers);
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {ROUND_TIMEOUT:?}"),
        };
        if failing {
            tracing::debug!(service = %settings.service, error, "k8s_dns discovery cannot resolve");
        } else {
            tracing::warn!(
                service = %settings.service,
                error,
                "k8s_dns discovery cannot resolve discovery.service; keeping the peers found before"
            );
            failing = true;
        }
    }
}

/// Stores a round's result and logs what changed.
fn update(discovery: &DnsDiscovery, service: &str, source: Source, peers: Vec<String>) {
    let before: BTreeSet<String> = discovery.peers().into_iter().collect();
    let records = match source {
        Source::Srv => "SRV",
        Source::Address => "A/AAAA",
    };
    tracing::debug!(service, records, ?peers, "k8s_dns discovery resolved");
    for peer in peers.iter().filter(|p| !before.contains(*p)) {
        tracing::info!(service, records, peer = %peer, "k8s_dns discovery found a new peer");
    }
    for gone in before.iter().filter(|p| !peers.contains(*p)) {
        tracing::info!(
            service,
            peer = %gone,
            "k8s_dns discovery: a peer left the service's records"
        );
    }
    discovery.set(peers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("a DNS name")
    }

    fn srv(owner: &str, target: &str, port: u16) -> Record {
        Record::from_rdata(
            name(owner),
            5,
            RData::SRV(SRV::new(0, 50, port, name(target))),
        )
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), 5, RData::A(A(Ipv4Addr::from(ip))))
    }

    #[test]
    fn srv_name_prefixes_unless_given_in_full() {
        assert_eq!(
            srv_name("reckon.reckon.svc.cluster.local"),
            "_reckon._tcp.reckon.reckon.svc.cluster.local"
        );
        assert_eq!(srv_name("_db._tcp.example.org."), "_db._tcp.example.org.");
    }

    #[test]
    fn srv_records_map_to_their_targets_addresses_and_ports() {
        let owner = "_reckon._tcp.reckon.test.";
        let answers = vec![
            srv(owner, "n1.reckon.test.", 7601),
            srv(owner, "n2.reckon.test.", 7602),
            srv(owner, "n2.reckon.test.", 7602),
            srv(owner, "gone.reckon.test.", 7604),
            srv(owner, ".", 7605),
            a("noise.reckon.test.", [10, 0, 0, 9]),
        ];
        let targets = srv_targets(&answers);
        assert_eq!(
            targets,
            vec![
                (name("n1.reckon.test."), 7601),
                (name("n2.reckon.test."), 7602),
                (name("gone.reckon.test."), 7604),
            ]
        );
        let additionals = vec![
            a("N1.reckon.test.", [127, 0, 0, 1]),
            a("n2.reckon.test.", [127, 0, 0, 2]),
            Record::from_rdata(
                name("n2.reckon.test."),
                5,
                RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            ),
        ];
        let ips = addresses_by_name(&additionals);
        assert_eq!(
            srv_addresses(&targets, &ips),
            vec!["127.0.0.1:7601", "127.0.0.2:7602", "[::1]:7602"]
        );
    }

    #[test]
    fn address_records_take_the_given_port() {
        let ips: Vec<IpAddr> = vec![
            IpAddr::from([127, 0, 0, 3]),
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([127, 0, 0, 3]),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        assert_eq!(
            ip_addresses(&ips, 7600),
            vec!["127.0.0.1:7600", "127.0.0.3:7600", "[::1]:7600"]
        );
        assert!(ip_addresses(&[], 7600).is_empty());
    }

    #[test]
    fn results_are_bounded() {
        let owner = "_reckon._tcp.big.test.";
        let answers: Vec<Record> = (0..PEERS_MAX + 10)
            .map(|i| srv(owner, &format!("n{i}.big.test."), 7600))
            .collect();
        assert_eq!(srv_targets(&answers).len(), PEERS_MAX);
        let ips: Vec<IpAddr> = (0..(PEERS_MAX as u32 + 10))
            .map(|i| IpAddr::from(Ipv4Addr::from(0x7f00_0000 + i)))
            .collect();
        assert_eq!(ip_addresses(&ips, 1).len(), PEERS_MAX);
    }
}
