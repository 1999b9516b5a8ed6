//! The node's configuration: what `reckon-node` reads at start-up, and from where.
//!
//! [`load`] layers four sources, each overriding the one before:
//!
//! ```text
//!   built-in defaults      NodeConfig::default(): one local node, ready to use
//! < TOML file              only when --config FILE is given; it must exist
//! < environment            RECKON_NODE_<KEY>, nested keys joined by `__`
//!                          (RECKON_NODE_DISCOVERY__METHOD=static)
//! < command-line flags     only the flags given; --dev is a preset at this level
//! ```
//!
//! then [`NodeConfig::validate`] checks what serde cannot: ranges, store names,
//! the keys a discovery method needs. Every error names the key it is about, as
//! it is spelled in the file. The keys are part of the outside interface
//! (the README and `config/node.toml` document them): add to them, never rename one.
//!
//! This module reads the config file and the environment and nothing else; it
//! starts nothing and knows nothing of openraft, redb or tarpc.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use reckon_gater::logging::LogConfig;
pub use reckon_gater::settings::ConfigError;
use reckon_gater::settings::{check_readable_file, insecure_listen, EnvNaming};
use reckon_gater::tls::TlsFiles;
use serde::{Deserialize, Serialize};

use crate::domain::Limits;

/// Prefix of the environment variables that set config keys.
pub const ENV_PREFIX: &str = "RECKON_NODE_";
/// Joins the parts of a nested key in an environment variable name:
/// `RECKON_NODE_DISCOVERY__METHOD` sets `discovery.method`.
pub const ENV_NESTING: &str = "__";
/// Default node RPC address: raft between nodes, worker calls from gaters.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7600));
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./reckon-data";
/// The store a node serves when none is configured, and the one `--dev` serves.
pub const DEFAULT_STORE: &str = "default";
/// Default IPv4 multicast group for discovery.
pub const DEFAULT_MULTICAST_ADDR: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 1);
/// Default UDP port for multicast discovery.
pub const DEFAULT_DISCOVERY_PORT: u16 = 45892;
/// Longest store name, in bytes.
pub const STORE_NAME_BYTES_MAX: usize = 64;
/// Shortest multicast discovery secret, in bytes.
pub const DISCOVERY_SECRET_BYTES_MIN: usize = 32;
/// Default interval between multicast announcements, in milliseconds.
pub const DEFAULT_ANNOUNCE_MS: u64 = 1000;
/// Default time a multicast peer stays known after its last announcement, in
/// milliseconds.
pub const DEFAULT_PEER_TTL_MS: u64 = 5000;
/// Default interval between resolutions of the `k8s_dns` service, in milliseconds.
pub const DEFAULT_RESOLVE_MS: u64 = 5000;
/// Default time in-flight requests get to finish on SIGTERM, in milliseconds.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5000;
/// Longest shutdown grace accepted, in milliseconds: well inside systemd's
/// `TimeoutStopSec` of the shipped units (30 s), after which systemd kills.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 20_000;
/// What [`NodeConfig::masked`] shows instead of a secret.
pub const MASK: &str = "***";

/// How the node runs its stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One node, no peers: the node is the only voter of every store.
    #[default]
    Single,
    /// Several nodes replicating every store with Raft; peers are found
    /// through [`DiscoveryConfig`].
    Cluster,
}

/// How a node in cluster mode finds its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMethod {
    /// A fixed list of peer addresses, `discovery.seeds`.
    #[default]
    Static,
    /// UDP announcements on `discovery.multicast_addr:discovery.port`,
    /// authenticated with `discovery.secret`.
    Multicast,
    /// The DNS records of a Kubernetes headless service, `discovery.service`.
    K8sDns,
}

/// The `[discovery]` table: how nodes in cluster mode find each other.
/// Ignored in single mode.
///
/// `Debug` shows the secret as `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Which way peers are found (`static | multicast | k8s_dns`).
    pub method: DiscoveryMethod,
    /// `static`: peers' node RPC addresses, `HOST:PORT` each.
    pub seeds: Vec<String>,
    /// `multicast`: the IPv4 multicast group announcements are sent to.
    pub multicast_addr: Ipv4Addr,
    /// `multicast`: the UDP port announcements are sent to.
    pub port: u16,
    /// `multicast`: shared secret that authenticates announcements, at least
    /// [`DISCOVERY_SECRET_BYTES_MIN`] bytes. Best set through
    /// `RECKON_NODE_DISCOVERY__SECRET` rather than written in a file.
    pub secret: Option<String>,
    /// `multicast`: IPv4 address of the local interface announcements are sent
    /// and heard on. `None` means `listen`'s address when that is a specific
    /// IPv4 address (so a node on 127.0.0.1 stays on the loopback interface),
    /// else the system's choice for the group.
    pub multicast_interface: Option<Ipv4Addr>,
    /// `multicast`: interval between this node's announcements, in
    /// milliseconds; above 0 and below `ttl_ms`.
    pub announce_ms: u64,
    /// `multicast`: how long a peer stays known after its last announcement,
    /// in milliseconds; above `announce_ms`, so one lost datagram does not
    /// drop a live peer.
    pub ttl_ms: u64,
    /// `k8s_dns`: DNS name of the headless service whose records list the
    /// peers, e.g. `reckon.reckon.svc.cluster.local`. SRV records of
    /// `_reckon._tcp.<service>` give host and port; without any, the A/AAAA
    /// records of `<service>` give hosts on this node's `listen` port.
    pub service: Option<String>,
    /// `k8s_dns`: interval between resolutions of `service`, in milliseconds;
    /// above 0.
    pub resolve_ms: u64,
    /// `k8s_dns`: `IP:PORT` of a DNS server to ask instead of the system's
    /// resolver configuration (`/etc/resolv.conf`); for tests and special
    /// setups.
    pub dns_server: Option<SocketAddr>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            method: DiscoveryMethod::Static,
            seeds: Vec::new(),
            multicast_addr: DEFAULT_MULTICAST_ADDR,
            port: DEFAULT_DISCOVERY_PORT,
            secret: None,
            multicast_interface: None,
            announce_ms: DEFAULT_ANNOUNCE_MS,
            ttl_ms: DEFAULT_PEER_TTL_MS,
            service: None,
            resolve_ms: DEFAULT_RESOLVE_MS,
            dns_server: None,
        }
    }
}

impl fmt::Debug for DiscoveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryConfig")
            .field("method", &self.method)
            .field("seeds", &self.seeds)
            .field("multicast_addr", &self.multicast_addr)
            .field("port", &self.port)
            .field("secret", &self.secret.as_ref().map(|_| MASK))
            .field("multicast_interface", &self.multicast_interface)
            .field("announce_ms", &self.announce_ms)
            .field("ttl_ms", &self.ttl_ms)
            .field("service", &self.service)
            .field("resolve_ms", &self.resolve_ms)
            .field("dns_server", &self.dns_server)
            .finish()
    }
}

/// The slowest rate, network and a follower's disk together, at which a Raft entry
/// is assumed to be moved and fsynced: `raft.heartbeat_ms` (the deadline of every
/// AppendEntries message) must give the largest entry time at this rate.
pub const REPLICATION_FLOOR_BYTES_PER_SEC: u64 = 32 * 1024 * 1024;

/// The `[raft]` table: timing and log compaction of every store's Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    /// Interval between a leader's heartbeats to its followers, in milliseconds;
    /// also the deadline openraft gives every AppendEntries message, so it must fit
    /// the largest entry (see [`REPLICATION_FLOOR_BYTES_PER_SEC`]).
    pub heartbeat_ms: u64,
    /// Lower bound of the random election timeout, in milliseconds: a follower
    /// that hears from no leader for that long starts an election.
    pub election_timeout_min_ms: u64,
    /// Upper bound (exclusive) of the random election timeout, in milliseconds.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many log entries were applied since the
    /// last one, in entries.
    pub snapshot_logs_since_last: u64,
    /// Log entries already covered by a snapshot that are kept for lagging
    /// followers before being purged, in entries.
    pub max_in_snapshot_log_to_keep: u64,
    /// Build a snapshot once the log entries since the last one hold this many
    /// MiB (whichever of this and `snapshot_logs_since_last` comes first).
    pub snapshot_log_mib: u64,
    /// MiB of log entries already covered by a snapshot kept for lagging
    /// followers; older ones are purged even within `max_in_snapshot_log_to_keep`.
    pub log_keep_mib: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs_since_last: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            snapshot_log_mib: SNAPSHOT_LOG_MIB,
            log_keep_mib: LOG_KEEP_MIB,
        }
    }
}

/// The `[write]` table: limits of the group-commit batcher, which merges
/// concurrent writes to a store into one Raft proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteTuning {
    /// Most write commands merged into one batch, in commands.
    pub batch_commands_max: usize,
    /// Most bytes of write commands merged into one batch, which is one Raft entry,
    /// in bytes; a single command larger than this (one append of up to
    /// `limits.batch_bytes_max`, a different limit: the events of one append) still
    /// goes, alone. The node calls it the entry limit (`entry_bytes_max`).
    pub batch_bytes_max: usize,
    /// Most batches proposed and not yet applied at once, per store, in batches.
    pub pipeline_max: usize,
    /// Most write commands waiting for a batch, per store, in commands; past it
    /// a new write waits for room, within its caller's deadline (then `Timeout`).
    pub queue_max: usize,
}

impl Default for WriteTuning {
    fn default() -> Self {
        WriteTuning {
            batch_commands_max: 1024,
            batch_bytes_max: 4 * 1024 * 1024,
            pipeline_max: 2,
            queue_max: 65_536,
        }
    }
}

/// The `[scavenge]` table: how fast a store's scavenge goes. A scavenge is a run of
/// steps the leader proposes, each looking at `step_positions` positions of the
/// global log in one Raft entry; after each, the leader waits as long as the step
/// took plus `pause_ms`, so a scavenge takes at most half of the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScavengeTuning {
    /// Positions one step looks at, in positions.
    pub step_positions: u64,
    /// Pause after each step on top of the step's own time, in milliseconds.
    pub pause_ms: u64,
}

impl Default for ScavengeTuning {
    fn default() -> Self {
        ScavengeTuning {
            step_positions: 1000,
            pause_ms: 0,
        }
    }
}

/// Most positions `[scavenge] step_positions` may say: a step is one Raft entry
/// applied in one transaction.
pub const SCAVENGE_STEP_POSITIONS_MAX: u64 = 100_000;

/// Most milliseconds `[scavenge] pause_ms` may say.
pub const SCAVENGE_PAUSE_MS_MAX: u64 = 60_000;

/// Most memory one store's state file may cache, in MiB: 64 GiB.
pub const STATE_CACHE_MIB_MAX: u64 = 64 * 1024;

/// Default of `[raft] snapshot_log_mib`: a snapshot once the log since the last one
/// holds this many MiB.
pub const SNAPSHOT_LOG_MIB: u64 = 64;

/// Default of `[raft] log_keep_mib`: MiB of log kept behind a snapshot.
pub const LOG_KEEP_MIB: u64 = 16;

/// Most MiB `[raft] snapshot_log_mib` and `log_keep_mib` may say.
pub const LOG_MIB_MAX: u64 = 64 * 1024;

/// The `[storage]` table: memory the node gives the stores' files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageTuning {
    /// Memory that caches each store's state file (events and indexes), per store,
    /// in MiB. Reads of what fits are served from memory: a whole-log read of a
    /// store whose state outgrew a 256 MiB cache ran at half the speed it had with
    /// 1 GiB (redb's own default).
    pub state_cache_mib: u64,
}

impl Default for StorageTuning {
    fn default() -> Self {
        StorageTuning {
            state_cache_mib: (crate::storage::state::STATE_CACHE_BYTES / (1024 * 1024)) as u64,
        }
    }
}

/// The `[faults]` table: faults injected on purpose, for tests that prove the node
/// copes with a slow disk. Every value is 0 (no fault) unless set; never set them in
/// production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultInjection {
    /// Extra time each received chunk of a Raft snapshot takes to be stored, in
    /// milliseconds: a slow disk on the receiving side.
    pub snapshot_chunk_delay_ms: u64,
    /// Extra time the installation of a received Raft snapshot takes before it
    /// starts, in milliseconds: a large store on a slow disk.
    pub snapshot_install_delay_ms: u64,
    /// Extra time each batch of committed Raft entries takes to be applied to the
    /// state file, in milliseconds: a replica whose state lags its log.
    pub apply_delay_ms: u64,
    /// Extra time each chunk of a backup takes to be read on the node, in
    /// milliseconds: a large store backed up over a slow link.
    pub backup_chunk_delay_ms: u64,
}

/// The `[otel]` table: OpenTelemetry export of the metrics (needs a build with the
/// `otel` feature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelConfig {
    /// Full URL of the collector's OTLP/HTTP metrics receiver, e.g.
    /// `http://127.0.0.1:4318/v1/metrics`; `None` exports nothing.
    pub endpoint: Option<String>,
    /// How often the metrics are exported, in milliseconds; at least 1000.
    pub interval_ms: u64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            endpoint: None,
            interval_ms: 10_000,
        }
    }
}

/// Everything a node is configured with; see `config/node.toml` for an example
/// of every key.
///
/// Built with [`load`]; a value obtained otherwise should go through
/// [`NodeConfig::validate`] before use. `Debug` hides the discovery secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster and never reused; at least 1.
    pub node_id: u64,
    /// Address the node RPC server binds: raft between nodes, worker calls
    /// from gaters.
    pub listen: SocketAddr,
    /// `HOST:PORT` that peers and gaters dial to reach this node; `None` means
    /// `listen`. See [`NodeConfig::advertise_addr`].
    pub advertise: Option<String>,
    /// Directory where the node keeps its stores on disk.
    pub data_dir: PathBuf,
    /// Single node or Raft cluster.
    pub mode: Mode,
    /// Cluster mode: how many voters must have found each other before a store
    /// is first initialised, in nodes; at least 1.
    pub bootstrap_expect: u32,
    /// Names of the stores this node serves, each 1 to
    /// [`STORE_NAME_BYTES_MAX`] of `A-Z a-z 0-9 _ -`; at least one.
    pub stores: Vec<String>,
    /// `HOST:PORT` of the gaters this node registers its workers with.
    pub gaters: Vec<String>,
    /// Deadline of each RPC this node makes, in milliseconds; above 0.
    pub timeout_ms: u64,
    /// On SIGTERM or SIGINT, how long requests already taken may run before they
    /// are cut off, in milliseconds; 0 cuts them off at once. The Raft groups stop
    /// after it either way.
    pub shutdown_grace_ms: u64,
    /// Address of the metrics endpoint: Prometheus text on
    /// `http://ADDR/metrics` when set; `None` serves no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// `[discovery]`: how cluster peers are found.
    pub discovery: DiscoveryConfig,
    /// `[log]`: where and how much to log.
    pub log: LogConfig,
    /// `[otel]`: OpenTelemetry export.
    pub otel: OtelConfig,
    /// `[limits]`: sizes and counts a client may write or read at once.
    pub limits: Limits,
    /// `[raft]`: Raft timing and log compaction.
    pub raft: RaftTuning,
    /// `[write]`: group-commit batcher limits.
    pub write: WriteTuning,
    /// `[storage]`: memory for the stores' files.
    pub storage: StorageTuning,
    /// `[scavenge]`: how fast a scavenge goes.
    pub scavenge: ScavengeTuning,
    /// `[faults]`: faults injected on purpose by tests; none by default.
    pub faults: FaultInjection,
    /// `[tls]`: TLS between nodes and with gaters (see [`TlsFiles`]).
    pub tls: Option<TlsFiles>,
    /// Serve without TLS on an address other than loopback. Off: such a node
    /// refuses to start.
    pub insecure: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            listen: DEFAULT_LISTEN,
            advertise: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            mode: Mode::Single,
            bootstrap_expect: 1,
            stores: vec![DEFAULT_STORE.to_owned()],
            gaters: Vec::new(),
            timeout_ms: 5000,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            metrics_listen: None,
            discovery: DiscoveryConfig::default(),
            log: LogConfig::default(),
            otel: OtelConfig::default(),
            limits: Limits::default(),
            raft: RaftTuning::default(),
            write: WriteTuning::default(),
            storage: StorageTuning::default(),
            scavenge: ScavengeTuning::default(),
            faults: FaultInjection::default(),
            tls: None,
            insecure: false,
        }
    }
}

impl NodeConfig {
    /// The address peers and gaters dial: `advertise` if set, else `listen`.
    pub fn advertise_addr(&self) -> String {
        match &self.advertise {
            Some(advertise) => advertise.clone(),
            None => self.listen.to_string(),
        }
    }

    /// `timeout_ms` as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `shutdown_grace_ms` as a [`Duration`].
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// A copy fit for printing or logging: `discovery.secret`, when set, reads
    /// [`MASK`].
    pub fn masked(&self) -> NodeConfig {
        let mut masked = self.clone();
        if masked.discovery.secret.is_some() {
            masked.discovery.secret = Some(MASK.to_owned());
        }
        masked
    }

    /// The effective config as TOML, secret masked: what `--print-config` prints.
    /// Keys left unset (`advertise`, `log.dir`, ...) are left out.
    pub fn masked_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(&self.masked()).map_err(ConfigError::Print)
    }

    /// Checks what deserialising cannot: ranges, store names, and that a
    /// cluster's discovery method has the keys it needs. The first problem
    /// found is returned as [`ConfigError::Invalid`] naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        if let Some(advertise) = &self.advertise {
            check_host_port("advertise", advertise)?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.bootstrap_expect == 0 {
            return Err(invalid("bootstrap_expect", "must be at least 1"));
        }
        self.validate_stores()?;
        for (i, gater) in self.gaters.iter().enumerate() {
            check_host_port(&format!("gaters[{i}]"), gater)?;
        }
        if self.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be above 0 milliseconds"));
        }
        if self.shutdown_grace_ms > SHUTDOWN_GRACE_MS_MAX {
            return Err(invalid(
                "shutdown_grace_ms",
                format!(
                    "{} ms is more than {SHUTDOWN_GRACE_MS_MAX} ms; a service manager \
                     kills a node that takes that long to stop",
                    self.shutdown_grace_ms
                ),
            ));
        }
        if let Some(endpoint) = &self.otel.endpoint {
            if !cfg!(feature = "otel") {
                return Err(invalid(
                    "otel.endpoint",
                    "this reckon-node was built without OpenTelemetry export (cargo feature `otel`)",
                ));
            }
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(invalid(
                    "otel.endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if self.otel.interval_ms < 1000 {
            return Err(invalid(
                "otel.interval_ms",
                "must be at least 1000 milliseconds",
            ));
        }
        if let Some(reason) = insecure_listen(self.listen, self.tls.is_some(), self.insecure) {
            return Err(invalid("tls", reason));
        }
        self.validate_discovery()?;
        self.log.validate().map_err(|e| invalid(e.key, e.reason))?;
        self.validate_raft()?;
        self.validate_storage()?;
        self.validate_scavenge()?;
        self.validate_write()
    }

    fn validate_scavenge(&self) -> Result<(), ConfigError> {
        let s = &self.scavenge;
        if !(1..=SCAVENGE_STEP_POSITIONS_MAX).contains(&s.step_positions) {
            return Err(invalid(
                "scavenge.step_positions",
                format!(
                    "{} is not between 1 and {SCAVENGE_STEP_POSITIONS_MAX}",
                    s.step_positions
                ),
            ));
        }
        if s.pause_ms > SCAVENGE_PAUSE_MS_MAX {
            return Err(invalid(
                "scavenge.pause_ms",
                format!("{} ms is above {SCAVENGE_PAUSE_MS_MAX}", s.pause_ms),
            ));
        }
        Ok(())
    }

    fn validate_stores(&self) -> Result<(), ConfigError> {
        if self.stores.is_empty() {
            return Err(invalid(
                "stores",
                format!("must name at least one store, e.g. [\"{DEFAULT_STORE}\"]"),
            ));
        }
        for (i, name) in self.stores.iter().enumerate() {
            let key = format!("stores[{i}]");
            if !is_valid_store_name(name) {
                return Err(invalid(
                    key,
                    format!(
                        "{name:?} is not a store name: use 1 to {STORE_NAME_BYTES_MAX} \
                         of A-Z a-z 0-9 _ -"
                    ),
                ));
            }
            if let Some(first) = self.stores[..i].iter().position(|s| s == name) {
                return Err(invalid(
                    key,
                    format!("{name:?} is listed twice (also stores[{first}])"),
                ));
            }
        }
        Ok(())
    }

    fn validate_discovery(&self) -> Result<(), ConfigError> {
        let discovery = &self.discovery;
        if let Some(secret) = &discovery.secret {
            // The secret itself never goes into the message.
            if secret.len() < DISCOVERY_SECRET_BYTES_MIN {
                return Err(invalid(
                    "discovery.secret",
                    format!(
                        "is {} bytes; it must be at least {DISCOVERY_SECRET_BYTES_MIN}",
                        secret.len()
                    ),
                ));
            }
        }
        for (i, seed) in discovery.seeds.iter().enumerate() {
            check_host_port(&format!("discovery.seeds[{i}]"), seed)?;
        }
        if let Some(service) = &discovery.service {
            if service.trim().is_empty() {
                return Err(invalid(
                    "discovery.service",
                    "must not be empty; leave it out instead",
                ));
            }
        }
        if discovery.announce_ms == 0 {
            return Err(invalid(
                "discovery.announce_ms",
                "must be above 0 milliseconds",
            ));
        }
        if discovery.ttl_ms <= discovery.announce_ms {
            return Err(invalid(
                "discovery.ttl_ms",
                format!(
                    "{} ms must be above discovery.announce_ms ({} ms), or live peers \
                     are forgotten between two announcements",
                    discovery.ttl_ms, discovery.announce_ms
                ),
            ));
        }
        if discovery.resolve_ms == 0 {
            return Err(invalid(
                "discovery.resolve_ms",
                "must be above 0 milliseconds",
            ));
        }
        if let Some(server) = discovery.dns_server {
            if server.port() == 0 || server.ip().is_unspecified() {
                return Err(invalid(
                    "discovery.dns_server",
                    format!("{server} is not a DNS server address; expected IP:PORT, e.g. \"10.96.0.10:53\""),
                ));
            }
        }
        if let Some(interface) = discovery.multicast_interface {
            if interface.is_multicast() || interface.is_broadcast() {
                return Err(invalid(
                    "discovery.multicast_interface",
                    format!("{interface} is not the address of a local interface"),
                ));
            }
        }
        if self.mode != Mode::Cluster {
            return Ok(());
        }
        if discovery.method == DiscoveryMethod::Multicast {
            if !discovery.multicast_addr.is_multicast() {
                return Err(invalid(
                    "discovery.multicast_addr",
                    format!(
                        "{} is not an IPv4 multicast address (224.0.0.0/4), e.g. \
                         {DEFAULT_MULTICAST_ADDR}",
                        discovery.multicast_addr
                    ),
                ));
            }
            if discovery.port == 0 {
                return Err(invalid("discovery.port", "must be a UDP port above 0"));
            }
        }
        // With one expected voter a node can start a cluster alone; others
        // join it later, so it needs nothing to find them with.
        if self.bootstrap_expect > 1 {
            let needs = format!(
                "mode \"cluster\" with bootstrap_expect = {} needs it to find its peers",
                self.bootstrap_expect
            );
            match discovery.method {
                DiscoveryMethod::Static if discovery.seeds.is_empty() => {
                    return Err(invalid(
                        "discovery.seeds",
                        format!(
                            "is empty, but method \"static\" in {needs}: list the peers' \
                             HOST:PORT or choose another discovery.method"
                        ),
                    ));
                }
                DiscoveryMethod::K8sDns if discovery.service.is_none() => {
                    return Err(invalid(
                        "discovery.service",
                        format!(
                            "is not set, but method \"k8s_dns\" in {needs}: set the \
                             headless service's DNS name"
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_raft(&self) -> Result<(), ConfigError> {
        let raft = &self.raft;
        if raft.heartbeat_ms == 0 {
            return Err(invalid("raft.heartbeat_ms", "must be above 0 milliseconds"));
        }
        // openraft gives every AppendEntries message the heartbeat interval as its
        // deadline: the largest entry must be moved and fsynced by a follower within
        // it, or it is sent again and again and never acknowledged.
        let entry_max = self.write.batch_bytes_max.max(self.limits.batch_bytes_max) as u64;
        let needed_ms = entry_max * 1000 / REPLICATION_FLOOR_BYTES_PER_SEC;
        if raft.heartbeat_ms < needed_ms {
            return Err(invalid(
                "raft.heartbeat_ms",
                format!(
                    "{} ms is the deadline of every AppendEntries message, and the largest \
                     Raft entry (write.batch_bytes_max or limits.batch_bytes_max, {entry_max} \
                     bytes) needs at least {needed_ms} ms at {} MiB/s: raise \
                     raft.heartbeat_ms or lower the batch limits",
                    raft.heartbeat_ms,
                    REPLICATION_FLOOR_BYTES_PER_SEC / (1024 * 1024)
                ),
            ));
        }
        if raft.election_timeout_min_ms <= raft.heartbeat_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                format!(
                    "{} ms must be above raft.heartbeat_ms ({} ms), or followers \
                     start elections against a live leader",
                    raft.election_timeout_min_ms, raft.heartbeat_ms
                ),
            ));
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                format!(
                    "{} ms must be above raft.election_timeout_min_ms ({} ms)",
                    raft.election_timeout_max_ms, raft.election_timeout_min_ms
                ),
            ));
        }
        if raft.snapshot_logs_since_last == 0 {
            return Err(invalid(
                "raft.snapshot_logs_since_last",
                "must be at least 1 entry",
            ));
        }
        if !(1..=LOG_MIB_MAX).contains(&raft.snapshot_log_mib) {
            return Err(invalid(
                "raft.snapshot_log_mib",
                format!(
                    "{} MiB is not between 1 and {LOG_MIB_MAX}",
                    raft.snapshot_log_mib
                ),
            ));
        }
        if raft.log_keep_mib > LOG_MIB_MAX {
            return Err(invalid(
                "raft.log_keep_mib",
                format!("{} MiB is above {LOG_MIB_MAX}", raft.log_keep_mib),
            ));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let mib = self.storage.state_cache_mib;
        if !(1..=STATE_CACHE_MIB_MAX).contains(&mib) {
            return Err(invalid(
                "storage.state_cache_mib",
                format!("{mib} MiB is not between 1 and {STATE_CACHE_MIB_MAX}"),
            ));
        }
        Ok(())
    }

    fn validate_write(&self) -> Result<(), ConfigError> {
        let write = &self.write;
        let at_least_one = [
            ("write.batch_commands_max", write.batch_commands_max),
            ("write.batch_bytes_max", write.batch_bytes_max),
            ("write.pipeline_max", write.pipeline_max),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if write.queue_max < write.batch_commands_max {
            return Err(invalid(
                "write.queue_max",
                format!(
                    "{} commands is less than write.batch_commands_max ({}), so no \
                     batch could ever fill",
                    write.queue_max, write.batch_commands_max
                ),
            ));
        }
        Ok(())
    }
}

/// Whether `name` is a valid store name: 1 to [`STORE_NAME_BYTES_MAX`] of
/// `A-Z a-z 0-9 _ -`.
pub fn is_valid_store_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= STORE_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a `HOST:PORT` address: a host, then a port from 1 to 65535. The
/// host is not resolved here.
fn check_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let problem = match value.rsplit_once(':') {
        _ if value.trim() != value => Some("has leading or trailing spaces"),
        None => Some("has no port"),
        Some(("", _)) => Some("has no host"),
        Some((_, port)) => match port.parse::<u16>() {
            Ok(0) | Err(_) => Some("has no port from 1 to 65535"),
            Ok(_) => None,
        },
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(invalid(
            key,
            format!("{value:?} {problem}; expected HOST:PORT, e.g. \"127.0.0.1:7600\""),
        )),
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, reason)
}

/// Command line of `reckon-node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "reckon-node",
    version,
    about = "reckon-node: the reckon-db node that holds the data.\n\n\
             It keeps the event stores on disk, replicates them with Raft in \
             cluster mode, and serves reads and writes to the gaters that \
             clients talk to.",
    after_help = "Config layers, lowest first: built-in defaults, the --config file, \
                  RECKON_NODE_<KEY> environment variables (nested keys joined by \
                  `__`, e.g. RECKON_NODE_DISCOVERY__METHOD=static), then these flags."
)]
pub struct NodeArgs {
    /// TOML config file; it must exist when given.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// This node's id (key `node_id`), unique in the cluster, at least 1.
    #[arg(long, value_name = "N", global = true)]
    pub node_id: Option<u64>,
    /// Address to serve node RPC on (key `listen`).
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<SocketAddr>,
    /// Directory for this node's data (key `data_dir`).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// A gater to register with, HOST:PORT; repeat for several. Replaces the
    /// `gaters` key when given.
    #[arg(long = "gater", value_name = "ADDR")]
    pub gaters: Vec<String>,
    /// A store to serve; repeat for several. Replaces the `stores` key when given.
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
    /// One node in single mode with store `default`, data under ./reckon-data
    /// and listening on 127.0.0.1:7600 unless --data-dir, --listen or --store
    /// say otherwise. Ready to use with no config file.
    #[arg(long)]
    pub dev: bool,
    /// With --dev: where the embedded gater listens (default 127.0.0.1:7700).
    #[arg(long, value_name = "ADDR", requires = "dev")]
    pub dev_gater_listen: Option<SocketAddr>,
    /// Print the effective config as TOML (secret masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Something to do instead of running the node.
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
}

/// What `reckon-node` can do instead of running.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum NodeCommand {
    /// Seed a new data directory from backups (`reckon backup`), then exit.
    ///
    /// Each store of the backups becomes a group of one: this node (the --node-id
    /// and the address, --listen or `advertise`, it will run with; from the same
    /// --config and RECKON_NODE_ variables) as its only voter, holding the backup's
    /// state at its position. Start the node on the directory afterwards: alone
    /// (mode single), or as the first member of a new cluster (mode cluster), whose
    /// other members join it and catch up from it by snapshot.
    ///
    /// Every file is checked whole first; a damaged, truncated or other-format
    /// file, or a data directory that is not empty, is refused with nothing
    /// written.
    #[command(
        after_help = "Example: reckon-node restore --from /backups/default.rbk \
                            --data-dir /var/lib/reckon --node-id 1 --listen 10.0.0.1:7600"
    )]
    Restore(RestoreArgs),
}

/// `reckon-node restore`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RestoreArgs {
    /// A backup file, or a directory of STORE.rbk files (`reckon backup
    /// --all-stores`); repeat for more stores.
    #[arg(long = "from", value_name = "FILE", required = true)]
    pub from: Vec<PathBuf>,
}

/// The flag layer: only the keys whose flags were given, `--dev` included.
#[derive(Debug, Default, Serialize)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stores: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gaters: Option<Vec<String>>,
}

impl FlagOverrides {
    fn from_args(args: &NodeArgs) -> Self {
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let mut flags = FlagOverrides {
            node_id: args.node_id,
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            mode: None,
            stores: non_empty(&args.stores),
            gaters: non_empty(&args.gaters),
        };
        if args.dev {
            flags.mode = Some(Mode::Single);
            flags.listen.get_or_insert(DEFAULT_LISTEN);
            flags
                .data_dir
                .get_or_insert_with(|| PathBuf::from(DEFAULT_DATA_DIR));
            flags
                .stores
                .get_or_insert_with(|| vec![DEFAULT_STORE.to_owned()]);
        }
        flags
    }
}

/// Builds the effective config from defaults, the `--config` file, the
/// `RECKON_NODE_` environment and the flags in `args`, in that order, then
/// validates it.
///
/// Errors: the file given cannot be read ([`ConfigError::File`]); a key is
/// unknown, has the wrong type, or a source does not parse
/// ([`ConfigError::Figment`]); a value is out of range ([`ConfigError::Invalid`]).
pub fn load(args: &NodeArgs) -> Result<NodeConfig, ConfigError> {
    let config: NodeConfig = layers(args)?
        .extract()
        .map_err(|e| ConfigError::figment(e, ENV))?;
    config.validate()?;
    Ok(config)
}

fn layers(args: &NodeArgs) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(NodeConfig::default()));
    if let Some(path) = &args.config {
        // A file named on the command line must be there: figment would read a
        // missing one as empty, and the node would start on defaults.
        check_readable_file(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment
        .merge(Env::prefixed(ENV_PREFIX).split(ENV_NESTING))
        .merge(Serialized::defaults(FlagOverrides::from_args(args))))
}

/// How this binary's environment variables are named, for errors.
const ENV: EnvNaming = EnvNaming {
    prefix: ENV_PREFIX,
    nesting: ENV_NESTING,
    unprefixed: None,
};

#[cfg(test)]
// figment::Jail fixes the closures' error type to figment::Error, which is large.
#[allow(clippy::result_large_err)]
mod tests;
