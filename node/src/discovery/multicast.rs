//! Multicast discovery: every node announces itself on a UDP multicast group and
//! keeps the peers it heard from recently.
//!
//! An announcement is one datagram, signed with the cluster secret
//! (`discovery.secret`, at least [`DISCOVERY_SECRET_BYTES_MIN`] bytes):
//!
//! ```text
//!   offset  size  field
//!   0       1     version, VERSION (1)
//!   1       8     timestamp, microseconds since the Unix epoch, big endian
//!   9       8     node id, big endian
//!   17      1     length L of the advertise address, 1 to ADVERTISE_BYTES_MAX
//!   18      L     advertise address, UTF-8 "HOST:PORT" (the peer's node RPC)
//!   18+L    32    HMAC-SHA256 over bytes 0 .. 18+L, keyed with the secret
//! ```
//!
//! A receiver checks, in this order, and drops and counts the first failure: the
//! version byte ([`Rejection::WrongVersion`]), the layout
//! ([`Rejection::Malformed`]), the signature ([`Rejection::WrongSecret`]), then that
//! the timestamp lies within [`TIMESTAMP_SKEW_MAX`] of its own clock
//! ([`Rejection::Stale`]). The timestamp is trusted only once the signature holds.
//! A datagram replayed within the window only repeats what a genuine node said.
//!
//! Without a usable secret the method is passive: it neither announces nor
//! listens, and says so once in the log.
//!
//! The codec ([`encode`], [`decode`]) and the [`PeerTable`] are plain functions of
//! their input and an injected clock; [`Multicast`] is the shell around them that
//! owns the sockets.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::{NodeConfig, DISCOVERY_SECRET_BYTES_MIN};

/// The only datagram layout this node speaks.
pub const VERSION: u8 = 1;
/// Largest datagram accepted or sent, in bytes; anything longer is malformed.
pub const DATAGRAM_BYTES_MAX: usize = 512;
/// Longest advertise address an announcement carries, in bytes.
pub const ADVERTISE_BYTES_MAX: usize = 255;
/// Size of the HMAC-SHA256 tag that ends a datagram, in bytes.
pub const MAC_BYTES: usize = 32;
/// Version, timestamp, node id and address length, in bytes.
const HEADER_BYTES: usize = 1 + 8 + 8 + 1;
/// How far a timestamp may lie from the receiver's clock, in the past (a stale or
/// replayed datagram) or the future (a skewed clock), before it is dropped.
pub const TIMESTAMP_SKEW_MAX: Duration = Duration::from_secs(30);
/// Most peers remembered at once; announcements from further node ids are dropped
/// and counted as [`MulticastStats::table_full`] until some expire.
pub const PEERS_MAX: usize = 1024;
/// IP time-to-live of announcements: they stay on the local link.
pub const MULTICAST_TTL: u32 = 1;
/// Pause before trying again to open the sockets after a failure.
pub const SOCKET_RETRY: Duration = Duration::from_secs(5);
/// Pause after a failed receive, so a persistent error cannot spin the task.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Least time between two warnings that datagrams were dropped.
pub const DROP_WARN_INTERVAL: Duration = Duration::from_secs(60);

type HmacSha256 = Hmac<Sha256>;

/// A cluster secret ready to sign and verify announcements. `Debug` hides it.
#[derive(Clone)]
pub struct Key(HmacSha256);

impl Key {
    /// The key for `secret`; `None` when it is shorter than
    /// [`DISCOVERY_SECRET_BYTES_MIN`] bytes.
    pub fn new(secret: &[u8]) -> Option<Key> {
        if secret.len() < DISCOVERY_SECRET_BYTES_MIN {
            return None;
        }
        HmacSha256::new_from_slice(secret).ok().map(Key)
    }

    fn tag(&self, body: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.0.clone();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Compares in constant time.
    fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// What one datagram says: this node is alive and reachable at `advertise`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// When it was sent, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The sender's node id.
    pub node_id: u64,
    /// The sender's node RPC address, `HOST:PORT`.
    pub advertise: String,
}

/// Why an announcement cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The advertise address is empty or longer than [`ADVERTISE_BYTES_MAX`].
    #[error(
        "the advertise address is {0} bytes; multicast discovery carries 1 to \
         {ADVERTISE_BYTES_MAX}: set a shorter `advertise`"
    )]
    AdvertiseLength(usize),
}

/// Why a datagram was dropped; each has its own counter in [`MulticastStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The first byte is not [`VERSION`].
    WrongVersion,
    /// Empty, truncated, too long, or a field out of range.
    Malformed,
    /// The signature does not verify: another secret, or forged or damaged bytes.
    WrongSecret,
    /// The timestamp lies more than [`TIMESTAMP_SKEW_MAX`] from the receiver's clock.
    Stale,
}

impl Rejection {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::WrongVersion => "wrong version",
            Rejection::Malformed => "malformed",
            Rejection::WrongSecret => "wrong secret or bad signature",
            Rejection::Stale => "stale timestamp",
        }
    }
}

/// The signed datagram for `announcement`, at most [`DATAGRAM_BYTES_MAX`] bytes.
pub fn encode(announcement: &Announcement, key: &Key) -> Result<Vec<u8>, EncodeError> {
    let addr = announcement.advertise.as_bytes();
    let addr_len = u8::try_from(addr.len())
        .ok()
        .filter(|l| *l > 0)
        .ok_or(EncodeError::AdvertiseLength(addr.len()))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + addr.len() + MAC_BYTES);
    out.push(VERSION);
    out.extend_from_slice(&announcement.timestamp_us.to_be_bytes());
    out.extend_from_slice(&announcement.node_id.to_be_bytes());
    out.push(addr_len);
    out.extend_from_slice(addr);
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    assert!(
        out.len() <= DATAGRAM_BYTES_MAX,
        "an announcement of {} bytes exceeds DATAGRAM_BYTES_MAX {DATAGRAM_BYTES_MAX}",
        out.len()
    );
    Ok(out)
}

/// Checks and reads one datagram received at `now_us` (microseconds since the Unix
/// epoch); see the module docs for the order of the checks.
pub fn decode(datagram: &[u8], key: &Key, now_us: u64) -> Result<Announcement, Rejection> {
    if datagram.len() > DATAGRAM_BYTES_MAX {
        return Err(Rejection::Malformed);
    }
    let Some(&version) = datagram.first() else {
        return Err(Rejection::Malformed);
    };
    if version != VERSION {
        return Err(Rejection::WrongVersion);
    }
    if datagram.len() < HEADER_BYTES + MAC_BYTES {
        return Err(Rejection::Malformed);
    }
    let addr_len = usize::from(datagram[HEADER_BYTES - 1]);
    if addr_len == 0 || datagram.len() != HEADER_BYTES + addr_len + MAC_BYTES {
        return Err(Rejection::Malformed);
    }
    let (body, tag) = datagram.split_at(HEADER_BYTES + addr_len);
    if !key.verify(body, tag) {
        return Err(Rejection::WrongSecret);
    }
    let timestamp_us = be_u64(&body[1..9]);
    let node_id = be_u64(&body[9..17]);
    let advertise = std::str::from_utf8(&body[HEADER_BYTES..])
        .map_err(|_| Rejection::Malformed)?
        .to_owned();
    let skew_max_us = u64::try_from(TIMESTAMP_SKEW_MAX.as_micros()).unwrap_or(u64::MAX);
    if now_us.abs_diff(timestamp_us) > skew_max_us {
        return Err(Rejection::Stale);
    }
    Ok(Announcement {
        timestamp_us,
        node_id,
        advertise,
    })
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_be_bytes(b)
}

/// Now, in microseconds since the Unix epoch (0 if the clock is before it, which
/// makes every announcement stale rather than fresh).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Counts of the datagrams a multicast receiver handled since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MulticastStats {
    /// Valid announcements from peers (this node's own are not counted).
    pub accepted: u64,
    /// Dropped: the signature did not verify (another secret, forged or damaged).
    pub wrong_secret: u64,
    /// Dropped: the timestamp was outside [`TIMESTAMP_SKEW_MAX`].
    pub stale: u64,
    /// Dropped: empty, truncated, too long or with a field out of range.
    pub malformed: u64,
    /// Dropped: an unknown version byte.
    pub wrong_version: u64,
    /// Dropped: valid, but from a new node while [`PEERS_MAX`] peers are known.
    pub table_full: u64,
}

impl MulticastStats {
    /// Every datagram dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.wrong_secret + self.stale + self.malformed + self.wrong_version + self.table_full
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    wrong_secret: AtomicU64,
    stale: AtomicU64,
    malformed: AtomicU64,
    wrong_version: AtomicU64,
    table_full: AtomicU64,
}

impl Counters {
    fn rejected(&self, why: Rejection) {
        let counter = match why {
            Rejection::WrongVersion => &self.wrong_version,
            Rejection::Malformed => &self.malformed,
            Rejection::WrongSecret => &self.wrong_secret,
            Rejection::Stale => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MulticastStats {
        MulticastStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            wrong_secret: self.wrong_secret.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            wrong_version: self.wrong_version.load(Ordering::Relaxed),
            table_full: self.table_full.load(Ordering::Relaxed),
        }
    }
}

/// What [`PeerTable::observe`] made of an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A node not known (or forgotten) before.
    New,
    /// A known node, now at another address.
    Moved {
        /// The address it had.
        from: String,
    },
    /// A known node, same address.
    Refreshed,
    /// This node's own announcement, looped back.
    Own,
    /// A new node, but [`PEERS_MAX`] live peers are known already.
    Full,
}

#[derive(Debug, Clone)]
struct Seen {
    advertise: String,
    last: Instant,
}

/// The peers heard from within a time-to-live, by node id, at most [`PEERS_MAX`].
/// A plain data structure: the caller passes the clock.
#[derive(Debug, Clone)]
pub struct PeerTable {
    own_id: u64,
    ttl: Duration,
    peers: BTreeMap<u64, Seen>,
}

impl PeerTable {
    /// An empty table for node `own_id`, forgetting peers `ttl` after they were
    /// last heard.
    pub fn new(own_id: u64, ttl: Duration) -> PeerTable {
        PeerTable {
            own_id,
            ttl,
            peers: BTreeMap::new(),
        }
    }

    fn live(&self, seen: &Seen, now: Instant) -> bool {
        now.saturating_duration_since(seen.last) <= self.ttl
    }

    /// Records a valid announcement heard at `now`.
    pub fn observe(&mut self, announcement: &Announcement, now: Instant) -> Observed {
        if announcement.node_id == self.own_id {
            return Observed::Own;
        }
        let ttl = self.ttl;
        if let Some(seen) = self.peers.get_mut(&announcement.node_id) {
            let was_live = now.saturating_duration_since(seen.last) <= ttl;
            seen.last = now;
            if seen.advertise == announcement.advertise {
                return if was_live {
                    Observed::Refreshed
                } else {
                    Observed::New
                };
            }
            let from = std::mem::replace(&mut seen.advertise, announcement.advertise.clone());
            return if was_live {
                Observed::Moved { from }
            } else {
                Observed::New
            };
        }
        if self.peers.len() >= PEERS_MAX {
            self.expire(now);
            if self.peers.len() >= PEERS_MAX {
                return Observed::Full;
            }
        }
        self.peers.insert(
            announcement.node_id,
            Seen {
                advertise: announcement.advertise.clone(),
                last: now,
            },
        );
        Observed::New
    }

    /// Forgets the peers not heard from within the time-to-live at `now`, and
    /// returns them as `(node id, address)`.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, String)> {
        let ttl = self.ttl;
        let mut gone = Vec::new();
        self.peers.retain(|id, seen| {
            let live = now.saturating_duration_since(seen.last) <= ttl;
            if !live {
                gone.push((*id, seen.advertise.clone()));
            }
            live
        });
        gone
    }

    /// Addresses of the peers live at `now`, by node id.
    pub fn addresses(&self, now: Instant) -> Vec<String> {
        self.peers
            .values()
            .filter(|seen| self.live(seen, now))
            .map(|seen| seen.advertise.clone())
            .collect()
    }
}

/// What multicast discovery runs with; see [`Settings::from_config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The IPv4 multicast group.
    pub group: Ipv4Addr,
    /// The UDP port, the same on every node.
    pub port: u16,
    /// The local interface's address to send and join on; unspecified lets the
    /// system choose.
    pub interface: Ipv4Addr,
    /// The cluster secret; passive when missing or too short.
    pub secret: Option<String>,
    /// Interval between announcements.
    pub announce: Duration,
    /// How long a peer stays known after its last announcement.
    pub ttl: Duration,
    /// This node's id.
    pub node_id: u64,
    /// This node's advertise address.
    pub advertise: String,
}

impl Settings {
    /// The settings of the `[discovery]` table, this node's id and advertise
    /// address. The interface is `discovery.multicast_interface`, else `listen`'s
    /// IPv4 address when it is a specific one, else unspecified.
    pub fn from_config(config: &NodeConfig) -> Settings {
        let d = &config.discovery;
        let interface = d.multicast_interface.unwrap_or(match config.listen {
            SocketAddr::V4(v4) if !v4.ip().is_unspecified() => *v4.ip(),
            _ => Ipv4Addr::UNSPECIFIED,
        });
        Settings {
            group: d.multicast_addr,
            port: d.port,
            interface,
            secret: d.secret.clone(),
            announce: Duration::from_millis(d.announce_ms),
            ttl: Duration::from_millis(d.ttl_ms),
            node_id: config.node_id,
            advertise: config.advertise_addr(),
        }
    }
}

/// Multicast discovery: a cheap `Clone` handle on the peer table and counters that
/// a background task fills.
#[derive(Clone)]
pub struct Multicast {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<PeerTable>,
    counters: Counters,
    passive: bool,
}

impl fmt::Debug for Multicast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multicast")
            .field("passive", &self.shared.passive)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Multicast {
    fn new(settings: &Settings, passive: bool) -> Multicast {
        Multicast {
            shared: Arc::new(Shared {
                table: Mutex::new(PeerTable::new(settings.node_id, settings.ttl)),
                counters: Counters::default(),
                passive,
            }),
        }
    }

    /// Starts announcing and listening in a background task that ends when `stop`
    /// turns true (or its sender is dropped). Without a usable secret it starts
    /// nothing and logs one warning naming `discovery.secret`.
    ///
    /// Must be called within a Tokio runtime.
    pub fn start(settings: Settings, stop: watch::Receiver<bool>) -> Multicast {
        let Some(key) = settings
            .secret
            .as_deref()
            .and_then(|s| Key::new(s.as_bytes()))
        else {
            let why = match &settings.secret {
                None => "is not set".to_owned(),
                Some(s) => format!(
                    "is {} bytes, shorter than {DISCOVERY_SECRET_BYTES_MIN}",
                    s.len()
                ),
            };
            tracing::warn!(
                "multicast discovery is passive: discovery.secret {why}, so this node \
                 neither announces itself nor accepts announcements; set \
                 discovery.secret (or RECKON_NODE_DISCOVERY__SECRET) to the same value \
                 of at least {DISCOVERY_SECRET_BYTES_MIN} bytes on every node"
            );
            return Multicast::new(&settings, true);
        };
        let multicast = Multicast::new(&settings, false);
        tokio::spawn(run(multicast.clone(), settings, key, stop));
        multicast
    }

    /// Whether it runs without a secret, announcing and accepting nothing.
    pub fn is_passive(&self) -> bool {
        self.shared.passive
    }

    /// Addresses of the peers heard from within the time-to-live, by node id.
    pub fn peers(&self) -> Vec<String> {
        self.table().addresses(Instant::now())
    }

    /// The counters so far.
    pub fn stats(&self) -> MulticastStats {
        self.shared.counters.snapshot()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        // The table holds no invariant a panicking holder could break halfway.
        self.shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles one received datagram: counts it, and records the peer if valid.
    fn receive(&self, datagram: &[u8], from: SocketAddr, key: &Key) {
        let counters = &self.shared.counters;
        let announcement = match decode(datagram, key, now_us()) {
            Ok(a) => a,
            Err(why) => {
                counters.rejected(why);
                tracing::debug!(
                    %from,
                    bytes = datagram.len(),
                    reason = why.as_str(),
                    "multicast discovery dropped a datagram"
                );
                return;
            }
        };
        let observed = self.table().observe(&announcement, Instant::now());
        let (id, addr) = (announcement.node_id, &announcement.advertise);
        match observed {
            Observed::Own => return,
            Observed::Full => {
                counters.table_full.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    %from,
                    node_id = id,
                    "multicast discovery dropped an announcement: {PEERS_MAX} peers known"
                );
                return;
            }
            Observed::New => {
                tracing::info!(
                    node_id = id,
                    advertise = %addr,
                    %from,
                    "multicast discovery found a new peer"
                );
            }
            Observed::Moved { from: old } => {
                tracing::info!(
                    node_id = id,
                    advertise = %addr,
                    previous = %old,
                    "multicast discovery: a peer moved"
                );
            }
            Observed::Refreshed => {
                tracing::trace!(
                    node_id = id,
                    advertise = %addr,
                    "multicast discovery heard a peer"
                );
            }
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets expired peers and logs what is known now.
    fn expire(&self) {
        let now = Instant::now();
        let (gone, peers) = {
            let mut table = self.table();
            (table.expire(now), table.addresses(now))
        };
        for (id, addr) in gone {
            tracing::info!(
                node_id = id,
                advertise = %addr,
                "multicast discovery forgot a peer it no longer hears"
            );
        }
        tracing::debug!(?peers, "multicast discovery peers");
    }
}

/// The receiving socket, bound to the group's port and joined on `interface`, and
/// the sending one. Several nodes on one host share the port (SO_REUSEADDR and
/// SO_REUSEPORT), and the sender loops its datagrams back to them.
fn open_sockets(settings: &Settings) -> io::Result<(UdpSocket, UdpSocket)> {
    let recv = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    recv.set_reuse_address(true)?;
    #[cfg(all(
        unix,
        not(any(
            target_os = "solaris",
            target_os = "illumos",
            target_os = "cygwin",
            target_os = "nuttx",
            target_os = "wasi"
        ))
    ))]
    recv.set_reuse_port(true)?;
    recv.set_nonblocking(true)?;
    // Bound to the group itself, the socket hears only that group's datagrams on
    // the port; Windows cannot bind a multicast address, so it takes any.
    let bind_ip = if cfg!(windows) {
        Ipv4Addr::UNSPECIFIED
    } else {
        settings.group
    };
    recv.bind(&SocketAddrV4::new(bind_ip, settings.port).into())?;
    recv.join_multicast_v4(&settings.group, &settings.interface)?;

    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    send.set_multicast_if_v4(&settings.interface)?;
    send.set_multicast_loop_v4(true)?;
    send.set_multicast_ttl_v4(MULTICAST_TTL)?;
    send.set_nonblocking(true)?;
    send.bind(&SocketAddrV4::new(settings.interface, 0).into())?;

    Ok((
        UdpSocket::from_std(recv.into())?,
        UdpSocket::from_std(send.into())?,
    ))
}

async fn run(multicast: Multicast, settings: Settings, key: Key, mut stop: watch::Receiver<bool>) {
    let group = SocketAddr::V4(SocketAddrV4::new(settings.group, settings.port));
    let (recv, send) = loop {
        match open_sockets(&settings) {
            Ok(sockets) => break sockets,
            Err(e) => {
                tracing::warn!(
                    %group, interface = %settings.interface, error = %e,
                    "multicast discovery cannot open its sockets (discovery.multicast_addr, \
                     discovery.port, discovery.multicast_interface); trying again in \
                     {SOCKET_RETRY:?}"
                );
                tokio::select! {
                    _ = super::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(SOCKET_RETRY) => {}
                }
            }
        }
    };
    // An address that cannot be encoded is a config problem: listen, never announce.
    let announce = match encode(
        &Announcement {
            timestamp_us: now_us(),
            node_id: settings.node_id,
            advertise: settings.advertise.clone(),
        },
        &key,
    ) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("multicast discovery cannot announce this node: {e}");
            false
        }
    };
    tracing::info!(
        %group, interface = %settings.interface, advertise = %settings.advertise,
        announce_ms = settings.announce.as_millis() as u64,
        "multicast discovery started"
    );
    let mut tick = tokio::time::interval(settings.announce);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    let mut send_failing = false;
    let mut warned = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = super::stopped(&mut stop) => return,
            _ = tick.tick() => {
                if announce {
                    send_failing = announce_once(&send, group, &settings, &key, send_failing).await;
                }
                multicast.expire();
                warned = warn_drops(&multicast, warned);
            }
            received = recv.recv_from(&mut buf) => match received {
                // A datagram longer than DATAGRAM_BYTES_MAX fills the buffer and is
                // counted as malformed.
                Ok((n, from)) => multicast.receive(&buf[..n], from, &key),
                Err(e) => {
                    tracing::debug!(error = %e, "multicast discovery receive failed");
                    tokio::time::sleep(RECV_ERROR_PAUSE).await;
                }
            },
        }
    }
}

/// Sends one announcement; returns whether sending is failing now, logging only
/// the changes between failing and working.
async fn announce_once(
    send: &UdpSocket,
    group: SocketAddr,
    settings: &Settings,
    key: &Key,
    was_failing: bool,
) -> bool {
    let announcement = Announcement {
        timestamp_us: now_us(),
        node_id: settings.node_id,
        advertise: settings.advertise.clone(),
    };
    let Ok(datagram) = encode(&announcement, key) else {
        return was_failing;
    };
    match send.send_to(&datagram, group).await {
        Ok(_) => {
            if was_failing {
                tracing::info!(%group, "multicast discovery announces again");
            }
            false
        }
        Err(e) => {
            if !was_failing {
                tracing::warn!(
                    %group,
                    error = %e,
                    "multicast discovery cannot send its announcement"
                );
            }
            true
        }
    }
}

/// Warns, at most once per [`DROP_WARN_INTERVAL`], that datagrams were dropped
/// since the last warning; returns when and at which count it last warned.
fn warn_drops(multicast: &Multicast, (at, count): (Instant, u64)) -> (Instant, u64) {
    let stats = multicast.stats();
    if stats.dropped() == count || (count != 0 && at.elapsed() < DROP_WARN_INTERVAL) {
        return (at, count);
    }
    tracing::warn!(
        dropped = stats.dropped() - count,
        wrong_secret = stats.wrong_secret,
        stale = stats.stale,
        malformed = stats.malformed,
        wrong_version = stats.wrong_version,
        table_full = stats.table_full,
        "multicast discovery dropped datagrams (totals since start follow); a wrong \
         secret means a node with another discovery.secret on the same group and port"
    );
    (Instant::now(), stats.dropped())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000_000_000;

    fn key() -> Key {
        Key::new(SECRET).expect("32 bytes")
    }

    fn hello(node_id: u64, advertise: &str) -> Announcement {
        Announcement {
            timestamp_us: NOW,
            node_id,
            advertise: advertise.to_owned(),
        }
    }

    #[test]
    fn round_trips() {
        let a = hello(7, "127.0.0.1:7600");
        let datagram = encode(&a, &key()).expect("encodes");
        assert_eq!(datagram.len(), HEADER_BYTES + 14 + MAC_BYTES);
        assert_eq!(datagram[0], VERSION);
        assert_eq!(decode(&datagram, &key(), NOW), Ok(a));
    }

    #[test]
    fn longest_address_fits_and_longer_is_refused() {
        let long = "h".repeat(ADVERTISE_BYTES_MAX);
        let datagram = encode(&hello(1, &long), &key()).expect("encodes");
        assert!(datagram.len() <= DATAGRAM_BYTES_MAX);
        assert_eq!(
            decode(&datagram, &key(), NOW).map(|a| a.advertise),
            Ok(long)
        );
        let longer = "h".repeat(ADVERTISE_BYTES_MAX + 1);
        assert_eq!(
            encode(&hello(1, &longer), &key()),
            Err(EncodeError::AdvertiseLength(ADVERTISE_BYTES_MAX + 1))
        );
        assert_eq!(
            encode(&hello(1, ""), &key()),
            Err(EncodeError::AdvertiseLength(0))
        );
    }

    #[test]
    fn short_secret_makes_no_key() {
        assert!(Key::new(&SECRET[..DISCOVERY_SECRET_BYTES_MIN - 1]).is_none());
        assert!(Key::new(b"").is_none());
        assert!(!format!("{:?}", key()).contains("0123"));
    }

    #[test]
    fn each_bad_datagram_has_its_reason() {
        let good = encode(&hello(2, "127.0.0.1:7601"), &key()).expect("encodes");
        let other = Key::new(&[b'x'; 40]).expect("40 bytes");
        let skew = TIMESTAMP_SKEW_MAX.as_micros() as u64;
        let mut flipped = good.clone();
        flipped[12] ^= 1;
        let mut version = good.clone();
        version[0] = 2;
        let mut bad_len = good.clone();
        bad_len[HEADER_BYTES - 1] += 1;
        let mut oversize = good.clone();
        oversize.resize(DATAGRAM_BYTES_MAX + 1, 0);
        let not_utf8 = {
            let mut body = good[..HEADER_BYTES].to_vec();
            body.extend_from_slice(&[0xff; 14]);
            let tag = key().tag(&body);
            body.extend_from_slice(&tag);
            body
        };
        let cases: Vec<(&str, Vec<u8>, u64, Rejection)> = vec![
            ("empty", vec![], NOW, Rejection::Malformed),
            ("version only", vec![VERSION], NOW, Rejection::Malformed),
            (
                "truncated",
                good[..good.len() - 1].to_vec(),
                NOW,
                Rejection::Malformed,
            ),
            (
                "header only",
                good[..HEADER_BYTES].to_vec(),
                NOW,
                Rejection::Malformed,
            ),
            ("length field off", bad_len, NOW, Rejection::Malformed),
            ("oversize", oversize, NOW, Rejection::Malformed),
            ("not utf-8", not_utf8, NOW, Rejection::Malformed),
            ("version 2", version, NOW, Rejection::WrongVersion),
            ("version 0", vec![0; 60], NOW, Rejection::WrongVersion),
            ("flipped bit", flipped, NOW, Rejection::WrongSecret),
            (
                "other secret",
                encode(&hello(2, "127.0.0.1:7601"), &other).expect("encodes"),
                NOW,
                Rejection::WrongSecret,
            ),
            ("old", good.clone(), NOW + skew + 1, Rejection::Stale),
            ("future", good.clone(), NOW - skew - 1, Rejection::Stale),
        ];
        for (name, datagram, now, want) in cases {
            assert_eq!(decode(&datagram, &key(), now), Err(want), "{name}");
        }
        // The edges of the window are fresh.
        assert!(decode(&good, &key(), NOW + skew).is_ok());
        assert!(decode(&good, &key(), NOW - skew).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("RECKON_FUZZ_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_bytes_are_never_accepted(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            prop_assert!(decode(&bytes, &key(), NOW).is_err());
        }

        /// A valid datagram with bytes flipped, cut or added is refused and counted,
        /// and records no peer; `RECKON_FUZZ_CASES` sets the case count.
        #[test]
        fn mutated_datagrams_are_refused_and_counted(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            // Fresh, so that unmutated it would be accepted (checked below).
            let fresh = Announcement {
                timestamp_us: now_us(),
                ..hello(7, "10.0.0.7:7600")
            };
            let good = encode(&fresh, &key()).expect("encodes");
            let mut bad = good.clone();
            for (i, b) in flips {
                let i = i.index(bad.len());
                bad[i] = b;
            }
            if tail.len() % 2 == 0 {
                bad.truncate(cut.index(bad.len() + 1));
            }
            bad.extend_from_slice(&tail[..tail.len() % 3]);
            prop_assume!(bad != good);
            let settings = Settings {
                node_id: 1,
                ..Settings::from_config(&crate::config::NodeConfig::default())
            };
            let multicast = Multicast::new(&settings, false);
            let from: SocketAddr = "10.0.0.7:7600".parse().expect("an address");
            multicast.receive(&bad, from, &key());
            let stats = multicast.stats();
            prop_assert_eq!(stats.accepted, 0);
            prop_assert_eq!(stats.dropped(), 1);
            prop_assert!(multicast.peers().is_empty());
            multicast.receive(&good, from, &key());
            prop_assert_eq!(multicast.stats().accepted, 1);
        }

        #[test]
        fn any_announcement_round_trips(
            node_id in any::<u64>(),
            advertise in "[a-z0-9.-]{1,60}:[0-9]{1,5}",
            timestamp_us in any::<u64>(),
        ) {
            let a = Announcement { timestamp_us, node_id, advertise };
            let datagram = encode(&a, &key()).expect("encodes");
            prop_assert_eq!(decode(&datagram, &key(), timestamp_us), Ok(a));
        }
    }

    #[test]
    fn table_tracks_new_moved_refreshed_and_expired() {
        let ttl = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut table = PeerTable::new(1, ttl);
        assert_eq!(table.observe(&hello(1, "me:1"), t0), Observed::Own);
        assert_eq!(table.observe(&hello(3, "c:3"), t0), Observed::New);
        assert_eq!(table.observe(&hello(2, "b:2"), t0), Observed::New);
        assert_eq!(table.observe(&hello(2, "b:2"), t0), Observed::Refreshed);
        assert_eq!(
            table.observe(&hello(2, "b:22"), t0),
            Observed::Moved { from: "b:2".into() }
        );
        assert_eq!(table.addresses(t0), vec!["b:22", "c:3"]);

        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(table.observe(&hello(3, "c:3"), t1), Observed::Refreshed);
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(table.addresses(t2), vec!["c:3"]);
        // An expired peer that speaks again is new again.
        assert_eq!(table.observe(&hello(2, "b:22"), t2), Observed::New);
        let t3 = t2 + Duration::from_secs(6);
        let mut gone = table.expire(t3);
        gone.sort();
        assert_eq!(gone, vec![(2, "b:22".into()), (3, "c:3".into())]);
        assert!(table.addresses(t3).is_empty());
    }

    #[test]
    fn table_is_bounded() {
        let ttl = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut table = PeerTable::new(0, ttl);
        for id in 1..=PEERS_MAX as u64 {
            assert_eq!(table.observe(&hello(id, "a:1"), t0), Observed::New);
        }
        let extra = hello(PEERS_MAX as u64 + 1, "a:1");
        assert_eq!(table.observe(&extra, t0), Observed::Full);
        // Known peers still refresh; once others expire, room is made.
        assert_eq!(table.observe(&hello(1, "a:1"), t0), Observed::Refreshed);
        let later = t0 + ttl + Duration::from_millis(1);
        assert_eq!(table.observe(&extra, later), Observed::New);
        assert_eq!(table.addresses(later).len(), 1);
    }
}
