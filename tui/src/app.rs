//! The console's state and its pure `update`.
//!
//! [`App`] holds everything the screen shows. [`update`] folds one [`Event`]
//! (a key, a refresh tick, or an answer from the network task) into the state at
//! an injected time `now` and returns the [`Command`]s the network task should
//! run. It does no I/O and spawns nothing, so tests drive it directly; the
//! terminal loop in `main.rs` and the network task in [`crate::net`] are the only
//! places with side effects.

use std::collections::{BTreeMap, VecDeque};

use reckon_gater::access::{Credential, Permission, Principal};
use reckon_gater::api::{HealthReport, StoreStatus};
use reckon_gater::metrics::{HistogramSnapshot, StoreStats};
use reckon_gater::subscription::SubscriptionInfo;
use reckon_gater::types::{Role, ScavengePhase, ScavengeStatus};
use reckon_gater::{EventRecord, StreamPage};

/// Milliseconds since the Unix epoch: the console's clock, injected into `update`.
pub type Millis = u64;

/// Streams per page of the stream list.
pub const STREAMS_PAGE: u32 = 100;
/// Events per page of a stream's events.
pub const EVENTS_PAGE: u32 = 20;
/// Samples kept per sparkline.
pub const RATE_SAMPLES_MAX: usize = 120;
/// Empty pages of a server-side filter followed without a key press: the node
/// examines a bounded number of ids per call, so a page can be empty while matches
/// lie further on; after this many the console waits for PgDn.
pub const FIND_EMPTY_FOLLOW_MAX: u32 = 10;
/// Entries kept in the cluster timeline.
pub const TIMELINE_MAX: usize = 50;
/// How long an action's outcome stays in the status line.
pub const FLASH_MS: Millis = 5_000;
/// The pseudo-stream that browses the store's global log.
pub const ALL_STREAM: &str = "$all";

/// The views, switched with 1-4 and Tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Nodes per store, roles, indexes, leader timeline.
    Cluster,
    /// Stream list and a stream's events.
    Streams,
    /// Subscriptions sorted by lag.
    Subscriptions,
    /// Append and read rates, latency, errors and leader elections.
    Telemetry,
}

impl Tab {
    /// Every tab in display order.
    pub const ALL: [Tab; 4] = [
        Tab::Cluster,
        Tab::Streams,
        Tab::Subscriptions,
        Tab::Telemetry,
    ];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Cluster => "Cluster",
            Tab::Streams => "Streams",
            Tab::Subscriptions => "Subscriptions",
            Tab::Telemetry => "Telemetry",
        }
    }

    fn next(self) -> Tab {
        match self {
            Tab::Cluster => Tab::Streams,
            Tab::Streams => Tab::Subscriptions,
            Tab::Subscriptions => Tab::Telemetry,
            Tab::Telemetry => Tab::Cluster,
        }
    }

    fn prev(self) -> Tab {
        match self {
            Tab::Cluster => Tab::Telemetry,
            Tab::Streams => Tab::Cluster,
            Tab::Subscriptions => Tab::Streams,
            Tab::Telemetry => Tab::Subscriptions,
        }
    }
}

/// Where a panel's data stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Loading {
    /// Never asked for.
    #[default]
    Idle,
    /// A request is in flight (older data, if any, is still shown).
    Loading,
    /// The last request answered at this time.
    Loaded(Millis),
    /// The last request failed; older data, if any, is stale.
    Error(String),
}

/// A panel's data and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel<T> {
    /// The last data received, kept when a later request fails.
    pub data: Option<T>,
    /// The state of the last request.
    pub state: Loading,
}

impl<T> Default for Panel<T> {
    fn default() -> Self {
        Panel {
            data: None,
            state: Loading::Idle,
        }
    }
}

impl<T> Panel<T> {
    fn in_flight(&self) -> bool {
        self.state == Loading::Loading
    }

    fn start(&mut self) {
        self.state = Loading::Loading;
    }

    fn finish(&mut self, result: Result<T, String>, now: Millis) {
        match result {
            Ok(d) => {
                self.data = Some(d);
                self.state = Loading::Loaded(now);
            }
            Err(e) => self.state = Loading::Error(e),
        }
    }
}

/// The link to the gater, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No answer yet.
    Connecting,
    /// The last call was answered.
    Connected,
    /// The last call found no gater; the network task keeps retrying.
    Disconnected(String),
}

/// A key, as the console understands it (the terminal loop converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Backspace.
    Backspace,
    /// Control-C.
    CtrlC,
}

/// Cluster data from one refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterData {
    /// Nodes per store.
    pub status: Vec<StoreStatus>,
    /// Health per store.
    pub health: HealthReport,
}

/// Everything that can happen to the console.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key press.
    Key(Key),
    /// The refresh period passed.
    Tick,
    /// The network task reached a gater.
    Connected,
    /// The network task could not reach any gater.
    Disconnected(String),
    /// Who the gater says the console acts as (its token's principal), after
    /// connecting.
    Access(Principal),
    /// Cluster status and health.
    Cluster(Result<ClusterData, String>),
    /// Counters and histograms of every store on every node that answered.
    Stats(Result<Vec<StoreStats>, String>),
    /// A page of the stream list of `store` after `after`.
    Streams {
        /// The store asked.
        store: String,
        /// The server-side filter asked (`None`: every stream).
        contains: Option<String>,
        /// The page's starting cursor.
        after: Option<String>,
        /// The page; `resume_after` is where the next one starts, `None` at the end.
        result: Result<StreamPage, String>,
    },
    /// A page of one stream's events (or `$all`) from `from`.
    Events {
        /// The store asked.
        store: String,
        /// The stream asked.
        stream: String,
        /// The first version (position for `$all`).
        from: u64,
        /// The page.
        result: Result<Vec<EventRecord>, String>,
    },
    /// The subscriptions of `store`.
    Subscriptions {
        /// The store asked.
        store: String,
        /// The list.
        result: Result<Vec<SubscriptionInfo>, String>,
    },
    /// An action finished.
    ActionDone {
        /// What was done, for the status line.
        what: String,
        /// Its outcome.
        result: Result<(), String>,
    },
}

/// What the console asks the network task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Cluster status and health.
    RefreshCluster,
    /// Every node's counters and histograms.
    RefreshStats,
    /// A page of streams.
    LoadStreams {
        /// The store.
        store: String,
        /// List after this id.
        after: Option<String>,
        /// Page size.
        limit: u32,
    },
    /// A page of the streams whose id contains `contains`, filtered by the node.
    FindStreams {
        /// The store.
        store: String,
        /// The substring.
        contains: String,
        /// Search after this id.
        after: Option<String>,
        /// Page size.
        limit: u32,
    },
    /// A page of events of `stream` (the global log for `$all`).
    LoadEvents {
        /// The store.
        store: String,
        /// The stream.
        stream: String,
        /// The first version or position.
        from: u64,
        /// Page size.
        count: u32,
    },
    /// The subscriptions of a store.
    LoadSubscriptions {
        /// The store.
        store: String,
    },
    /// Delete a stream, confirmed.
    DeleteStream {
        /// The store.
        store: String,
        /// The stream.
        stream: String,
        /// Hard (the id can never be written again) or soft.
        hard: bool,
    },
    /// Remove a subscription, confirmed.
    Unsubscribe {
        /// The store.
        store: String,
        /// The subscription key.
        key: String,
    },
    /// Append one test event, confirmed.
    AppendTest {
        /// The store.
        store: String,
        /// The stream.
        stream: String,
        /// The time written in the event's data.
        at: Millis,
    },
    /// Remove a node from a store's group, confirmed.
    RemoveNode {
        /// The store.
        store: String,
        /// The node.
        node_id: u64,
    },
    /// Hand a store's leadership to a node, confirmed.
    TransferLeader {
        /// The store.
        store: String,
        /// The node to lead.
        node_id: u64,
    },
}

/// An action waiting for y/n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question shown.
    pub prompt: String,
    /// What `y` sends.
    pub command: Command,
}

/// One line of the cluster timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// When it was seen.
    pub at: Millis,
    /// What changed.
    pub text: String,
}

/// What happened in one store between two stats refreshes, summed over its nodes.
///
/// A node counts only when both refreshes saw it; a node whose counters went down
/// restarted in between, so all it counted since its start falls in the interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interval {
    /// Length of the interval.
    pub ms: Millis,
    /// Events appended.
    pub appended_events: u64,
    /// Events read.
    pub read_events: u64,
    /// Append latency of the appends acknowledged in the interval.
    pub append_latency: HistogramSnapshot,
    /// Read latency of the reads answered in the interval.
    pub read_latency: HistogramSnapshot,
    /// Failed requests by error kind (only kinds that occurred).
    pub errors: BTreeMap<String, u64>,
}

impl Interval {
    /// `n` events over the interval as events per second.
    pub fn per_sec(&self, n: u64) -> u64 {
        n.saturating_mul(1000) / self.ms.max(1)
    }

    /// One node's interval from its stats `before` to `now`, `ms` apart; a node
    /// whose counters went down restarted, and all it counted since is new.
    fn between(before: &StoreStats, now: &StoreStats, ms: Millis) -> Interval {
        let zero = StoreStats::default();
        let b = if restarted(before, now) {
            &zero
        } else {
            before
        };
        // From here no counter of `now` is below `b`'s.
        Interval {
            ms,
            appended_events: now.appended_events.saturating_sub(b.appended_events),
            read_events: now.read_events.saturating_sub(b.read_events),
            append_latency: now.append_latency.since(&b.append_latency),
            read_latency: now.read_latency.since(&b.read_latency),
            errors: now
                .errors
                .iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n.saturating_sub(b.errors.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, d)| *d > 0)
                .collect(),
        }
    }

    /// Adds another node's interval of the same length into this one.
    fn merge(&mut self, other: &Interval) {
        self.appended_events += other.appended_events;
        self.read_events += other.read_events;
        self.append_latency.merge(&other.append_latency);
        self.read_latency.merge(&other.read_latency);
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
    }
}

/// One node of a store, from its last stats.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeTelemetry {
    /// The node.
    pub node_id: u64,
    /// Its role, when it said.
    pub role: Option<Role>,
    /// Events the store holds on it.
    pub events: u64,
    /// Failed requests since it started.
    pub errors: u64,
    /// Leader elections (and losses) it has seen since it started.
    pub leader_changes: u64,
    /// Its part of the store's last interval; `None` when the refresh before did not
    /// see it.
    pub last: Option<Interval>,
    /// Whether its counters went down since the refresh before: it restarted.
    pub restarted: bool,
}

/// One store's telemetry, from successive stats refreshes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreTelemetry {
    /// Events appended per second, one sample per interval, oldest first.
    pub append_rate: VecDeque<u64>,
    /// Events read per second, one sample per interval, oldest first.
    pub read_rate: VecDeque<u64>,
    /// Append latency p99 in µs per interval; `None` for an interval without appends.
    pub append_p99: VecDeque<Option<u64>>,
    /// The last interval, once two refreshes have been seen.
    pub last: Option<Interval>,
    /// Failed requests by kind since each node started, summed over nodes.
    pub errors_total: BTreeMap<String, u64>,
    /// Events the store holds: its leader's count, else the largest a node reports.
    pub events: u64,
    /// Its nodes in the last stats, by id.
    pub nodes: Vec<NodeTelemetry>,
    /// Its scavenge, as its leader (else any node) last said; `None` when never run.
    pub scavenge: Option<ScavengeStatus>,
}

/// One line of the stores table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRow {
    /// The store.
    pub store: String,
    /// Events it holds; `None` before its first stats.
    pub events: Option<u64>,
    /// Events appended per second over the last interval; `None` before two stats.
    pub append_rate: Option<u64>,
    /// Its leader, when known.
    pub leader: Option<u64>,
}

/// Delivery rate per subscription of the selected store, from the `delivered`
/// counts of two successive subscription lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryRates {
    /// Events delivered per second over the last interval, by subscription key.
    pub per_sec: BTreeMap<String, u64>,
    last: BTreeMap<String, u64>,
    last_at: Option<Millis>,
}

fn push_sample<T>(samples: &mut VecDeque<T>, v: T) {
    samples.push_back(v);
    while samples.len() > RATE_SAMPLES_MAX {
        samples.pop_front();
    }
}

/// A counter's increase from `before` to `now`; a decrease means its node restarted
/// in between, so all of `now` is new.
fn counter_delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Whether some counter of `now` is below `before`: the node restarted in between.
fn restarted(before: &StoreStats, now: &StoreStats) -> bool {
    let counters = |s: &StoreStats| {
        [
            s.appends,
            s.appended_events,
            s.reads,
            s.read_events,
            s.deliveries,
            s.delivered_events,
            s.leader_changes,
            s.append_latency.count(),
            s.read_latency.count(),
        ]
    };
    counters(now)
        .iter()
        .zip(counters(before))
        .any(|(n, b)| *n < b)
        || before
            .errors
            .iter()
            .any(|(k, b)| now.errors.get(k).copied().unwrap_or(0) < *b)
}

/// Where the streams tab is.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StreamsMode {
    /// The stream list.
    #[default]
    List,
    /// One stream's events.
    Events {
        /// The stream (or `$all`).
        stream: String,
        /// First version (or position) of the page.
        from: u64,
        /// Selected event in the page.
        selected: usize,
        /// The page.
        events: Panel<Vec<EventRecord>>,
    },
}

/// The streams tab.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamsView {
    /// List or events.
    pub mode: StreamsMode,
    /// The loaded page of the list.
    pub list: Panel<StreamPage>,
    /// Cursors of the pages before this one, plus this one's, last.
    pub pages: Vec<Option<String>>,
    /// The filter typed after `/` (substring of the stream id); it narrows the
    /// loaded page at once.
    pub filter: String,
    /// Whether keys go into the filter.
    pub editing_filter: bool,
    /// The filter committed with Enter: the list comes from `find_streams` with it,
    /// filtered by the node. `None`: every stream, from `list_streams`.
    pub query: Option<String>,
    /// Empty pages of `query` followed without a key press (see
    /// [`FIND_EMPTY_FOLLOW_MAX`]).
    pub followed: u32,
    /// Selected row of the filtered list (row 0 is `$all`).
    pub selected: usize,
}

impl StreamsView {
    /// The rows shown: `$all` first, then the page's streams matching the filter.
    pub fn rows(&self) -> Vec<(String, Option<u64>)> {
        let mut rows = vec![(ALL_STREAM.to_string(), None)];
        if let Some(page) = &self.list.data {
            rows.extend(
                page.streams
                    .iter()
                    .filter(|s| self.filter.is_empty() || s.stream_id.contains(&self.filter))
                    .map(|s| (s.stream_id.clone(), Some(s.version))),
            );
        }
        rows
    }

    /// Where the page after the loaded one starts; `None` when it is the last.
    pub fn next_cursor(&self) -> Option<String> {
        self.list.data.as_ref().and_then(|p| p.resume_after.clone())
    }

    fn cursor(&self) -> Option<String> {
        self.pages.last().cloned().flatten()
    }

    /// The command loading the page at the current cursor.
    fn load(&self, store: String) -> Command {
        match &self.query {
            None => Command::LoadStreams {
                store,
                after: self.cursor(),
                limit: STREAMS_PAGE,
            },
            Some(q) => Command::FindStreams {
                store,
                contains: q.clone(),
                after: self.cursor(),
                limit: STREAMS_PAGE,
            },
        }
    }
}

/// The console's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Gater addresses, for the status line.
    pub gaters: Vec<String>,
    /// The refresh period.
    pub refresh_ms: Millis,
    /// The tab shown.
    pub tab: Tab,
    /// The link to the gater.
    pub connection: Connection,
    /// Cluster status and health.
    pub cluster: Panel<ClusterData>,
    /// Selected node row in the cluster tab.
    pub cluster_selected: usize,
    /// Leader changes and membership changes seen between refreshes, newest last.
    pub timeline: VecDeque<TimelineEntry>,
    /// Every node's counters and histograms from the last stats refresh.
    pub stats: Panel<Vec<StoreStats>>,
    /// When the stats in `stats.data` were received: the start of the next interval.
    pub stats_at: Option<Millis>,
    /// Rates, latency and errors per store, derived from the stats refreshes.
    pub telemetry: BTreeMap<String, StoreTelemetry>,
    /// The store the streams and subscriptions tabs look at.
    pub store: Option<String>,
    /// The streams tab.
    pub streams: StreamsView,
    /// Subscriptions of the selected store.
    pub subscriptions: Panel<Vec<SubscriptionInfo>>,
    /// Delivery rates of the subscriptions of the selected store.
    pub deliveries: DeliveryRates,
    /// Selected row in the subscriptions tab (sorted by lag).
    pub subs_selected: usize,
    /// An action waiting for y/n.
    pub confirm: Option<Confirm>,
    /// Whether the key map is shown.
    pub help: bool,
    /// The last action's outcome and when.
    pub flash: Option<(Millis, String)>,
    /// Set by `q`: the terminal loop leaves.
    pub quit: bool,
    /// Who the console acts as and what it may do, as the gater said; `None` until
    /// it has (everything is offered until then: the gater refuses what is not
    /// allowed either way).
    pub access: Option<Principal>,
}

impl App {
    /// A console for `gaters`, refreshed every `refresh_ms`, nothing loaded yet.
    pub fn new(gaters: Vec<String>, refresh_ms: Millis) -> App {
        App {
            gaters,
            refresh_ms,
            tab: Tab::Cluster,
            connection: Connection::Connecting,
            cluster: Panel::default(),
            cluster_selected: 0,
            timeline: VecDeque::new(),
            stats: Panel::default(),
            stats_at: None,
            telemetry: BTreeMap::new(),
            store: None,
            streams: StreamsView {
                pages: vec![None],
                ..StreamsView::default()
            },
            subscriptions: Panel::default(),
            deliveries: DeliveryRates::default(),
            subs_selected: 0,
            confirm: None,
            help: false,
            flash: None,
            quit: false,
            access: None,
        }
    }

    /// Whether the console's principal may do `permission` on `store`, so that the
    /// action is offered.
    pub fn may(&self, store: &str, permission: Permission) -> bool {
        self.access
            .as_ref()
            .is_none_or(|p| p.allows(store, permission))
    }

    /// What the status line says about the principal: `None` on an open gater or
    /// before the gater said.
    pub fn access_label(&self) -> Option<String> {
        let p = self.access.as_ref()?;
        (p.credential != Credential::Open).then(|| format!("as {} ({})", p.name, p.grants_text()))
    }

    /// The subscriptions sorted by lag, largest first (ties by key).
    pub fn sorted_subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut subs = self.subscriptions.data.clone().unwrap_or_default();
        subs.sort_by(|a, b| b.lag().cmp(&a.lag()).then_with(|| a.key.cmp(&b.key)));
        subs
    }

    /// The stores known from the last cluster refresh, sorted.
    pub fn stores(&self) -> Vec<String> {
        let mut stores: Vec<String> = self
            .cluster
            .data
            .as_ref()
            .map(|c| c.status.iter().map(|s| s.store.clone()).collect())
            .unwrap_or_default();
        stores.sort();
        stores.dedup();
        stores
    }

    /// One row per known store (from the cluster status and the stats) for the
    /// stores table, sorted by name.
    pub fn store_rows(&self) -> Vec<StoreRow> {
        let mut stores = self.stores();
        stores.extend(self.telemetry.keys().cloned());
        stores.sort();
        stores.dedup();
        stores
            .into_iter()
            .map(|store| {
                let t = self.telemetry.get(&store);
                let leader = self
                    .cluster
                    .data
                    .as_ref()
                    .and_then(|c| c.status.iter().find(|s| s.store == store))
                    .and_then(|s| s.leader)
                    .or_else(|| {
                        self.stats.data.as_ref().and_then(|all| {
                            all.iter()
                                .find(|s| s.store == store && s.role == Some(Role::Leader))
                                .map(|s| s.node_id)
                        })
                    });
                StoreRow {
                    events: t.map(|t| t.events),
                    append_rate: t.and_then(|t| t.append_rate.back().copied()),
                    leader,
                    store,
                }
            })
            .collect()
    }

    /// (store, node id) of every node row of the cluster tab, in display order.
    pub fn node_rows(&self) -> Vec<(String, u64)> {
        let mut rows = Vec::new();
        if let Some(c) = &self.cluster.data {
            for s in &c.status {
                for n in &s.nodes {
                    rows.push((s.store.clone(), n.node_id));
                }
            }
        }
        rows
    }

    fn push_timeline(&mut self, at: Millis, text: String) {
        self.timeline.push_back(TimelineEntry { at, text });
        while self.timeline.len() > TIMELINE_MAX {
            self.timeline.pop_front();
        }
    }
}

/// Folds `event` into `app` at time `now`; returns what the network task must do.
pub fn update(app: &mut App, event: Event, now: Millis) -> Vec<Command> {
    let mut cmds = Vec::new();
    if let Some((at, _)) = &app.flash {
        if now.saturating_sub(*at) > FLASH_MS {
            app.flash = None;
        }
    }
    match event {
        Event::Key(key) => on_key(app, key, now, &mut cmds),
        Event::Tick => refresh(app, &mut cmds),
        Event::Connected => app.connection = Connection::Connected,
        Event::Disconnected(e) => app.connection = Connection::Disconnected(e),
        Event::Access(p) => app.access = Some(p),
        Event::Cluster(result) => {
            if let Ok(data) = &result {
                observe_cluster(app, data, now);
            }
            app.cluster.finish(result, now);
            if app.store.is_none() {
                if let Some(first) = app.stores().into_iter().next() {
                    app.store = Some(first);
                    refresh_store(app, &mut cmds);
                }
            }
            let n = app.node_rows().len();
            app.cluster_selected = app.cluster_selected.min(n.saturating_sub(1));
        }
        Event::Stats(result) => {
            if let Ok(stats) = &result {
                observe_stats(app, stats, now);
            }
            app.stats.finish(result, now);
        }
        Event::Streams {
            store,
            contains,
            after,
            result,
        } => {
            let v = &mut app.streams;
            if app.store.as_deref() == Some(&store) && v.cursor() == after && v.query == contains {
                match result {
                    // Nothing matched among the ids the node examined, but it did not
                    // reach the end: go on from where it stopped, a bounded number of
                    // times, in place of this page.
                    Ok(page)
                        if v.query.is_some()
                            && page.streams.is_empty()
                            && page.resume_after.is_some()
                            && v.followed < FIND_EMPTY_FOLLOW_MAX =>
                    {
                        v.followed += 1;
                        if let Some(last) = v.pages.last_mut() {
                            *last = page.resume_after;
                        }
                        cmds.push(v.load(store));
                    }
                    result => {
                        if result.as_ref().is_ok_and(|p| !p.streams.is_empty()) {
                            v.followed = 0;
                        }
                        v.list.finish(result, now);
                        clamp_streams(app);
                    }
                }
            }
        }
        Event::Events {
            store,
            stream,
            from,
            result,
        } => {
            if app.store.as_deref() == Some(&store) {
                if let StreamsMode::Events {
                    stream: s,
                    from: f,
                    selected,
                    events,
                } = &mut app.streams.mode
                {
                    if *s == stream && *f == from {
                        events.finish(result, now);
                        let n = events.data.as_ref().map_or(0, Vec::len);
                        *selected = (*selected).min(n.saturating_sub(1));
                    }
                }
            }
        }
        Event::Subscriptions { store, result } => {
            if app.store.as_deref() == Some(&store) {
                if let Ok(subs) = &result {
                    observe_deliveries(&mut app.deliveries, subs, now);
                }
                app.subscriptions.finish(result, now);
                let n = app.subscriptions.data.as_ref().map_or(0, Vec::len);
                app.subs_selected = app.subs_selected.min(n.saturating_sub(1));
            }
        }
        Event::ActionDone { what, result } => {
            let text = match result {
                Ok(()) => format!("✔ {what}"),
                Err(e) => format!("✖ {what}: {e}"),
            };
            app.flash = Some((now, text));
            refresh(app, &mut cmds);
        }
    }
    cmds
}

/// Asks for everything the screen shows, except panels already in flight.
fn refresh(app: &mut App, cmds: &mut Vec<Command>) {
    if !app.cluster.in_flight() {
        app.cluster.start();
        cmds.push(Command::RefreshCluster);
    }
    let stats_allowed = app
        .access
        .as_ref()
        .is_none_or(|p| p.holds_anywhere(Permission::Admin));
    if !stats_allowed {
        app.stats.state = Loading::Error("stats need the admin role on a store".into());
    } else if !app.stats.in_flight() {
        app.stats.start();
        cmds.push(Command::RefreshStats);
    }
    refresh_store(app, cmds);
}

fn refresh_store(app: &mut App, cmds: &mut Vec<Command>) {
    let Some(store) = app.store.clone() else {
        return;
    };
    if !app.streams.list.in_flight() {
        app.streams.list.start();
        cmds.push(app.streams.load(store.clone()));
    }
    if let StreamsMode::Events {
        stream,
        from,
        events,
        ..
    } = &mut app.streams.mode
    {
        if !events.in_flight() {
            events.start();
            cmds.push(Command::LoadEvents {
                store: store.clone(),
                stream: stream.clone(),
                from: *from,
                count: EVENTS_PAGE,
            });
        }
    }
    if !app.subscriptions.in_flight() {
        app.subscriptions.start();
        cmds.push(Command::LoadSubscriptions { store });
    }
}

/// Notes leader and membership changes between two refreshes.
fn observe_cluster(app: &mut App, data: &ClusterData, now: Millis) {
    let old: BTreeMap<String, StoreStatus> = app
        .cluster
        .data
        .as_ref()
        .map(|c| {
            c.status
                .iter()
                .map(|s| (s.store.clone(), s.clone()))
                .collect()
        })
        .unwrap_or_default();
    for s in &data.status {
        match old.get(&s.store) {
            None => {
                let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
                app.push_timeline(
                    now,
                    format!("{}: seen, leader {leader}, term {}", s.store, s.term),
                );
            }
            Some(o) => {
                if o.leader != s.leader {
                    let f = |l: Option<u64>| l.map_or("none".to_string(), |l| l.to_string());
                    app.push_timeline(
                        now,
                        format!(
                            "{}: leader {} → {} (term {})",
                            s.store,
                            f(o.leader),
                            f(s.leader),
                            s.term
                        ),
                    );
                }
                for n in &s.nodes {
                    if !o.nodes.iter().any(|m| m.node_id == n.node_id) {
                        app.push_timeline(now, format!("{}: node {} joined", s.store, n.node_id));
                    }
                }
                for m in &o.nodes {
                    if !s.nodes.iter().any(|n| n.node_id == m.node_id) {
                        app.push_timeline(now, format!("{}: node {} left", s.store, m.node_id));
                    }
                }
            }
        }
    }
}

/// Folds a stats refresh into the telemetry: the interval since the previous one
/// per store (rates, latency, errors), totals, and events held.
fn observe_stats(app: &mut App, stats: &[StoreStats], now: Millis) {
    let before: BTreeMap<(&str, u64), &StoreStats> = match (&app.stats.data, app.stats_at) {
        (Some(prev), Some(_)) => prev
            .iter()
            .map(|s| ((s.store.as_str(), s.node_id), s))
            .collect(),
        _ => BTreeMap::new(),
    };
    let ms = app.stats_at.map(|at| now.saturating_sub(at).max(1));
    let mut by_store: BTreeMap<&str, Vec<&StoreStats>> = BTreeMap::new();
    for s in stats {
        by_store.entry(s.store.as_str()).or_default().push(s);
    }
    for (store, mut nodes) in by_store {
        nodes.sort_by_key(|s| s.node_id);
        let t = app.telemetry.entry(store.to_string()).or_default();
        t.errors_total = BTreeMap::new();
        for s in &nodes {
            for (k, n) in &s.errors {
                *t.errors_total.entry(k.clone()).or_default() += n;
            }
        }
        t.events = nodes
            .iter()
            .find(|s| s.role == Some(Role::Leader))
            .map(|s| s.events)
            .unwrap_or_else(|| nodes.iter().map(|s| s.events).max().unwrap_or(0));
        t.scavenge = nodes
            .iter()
            .find(|s| s.role == Some(Role::Leader))
            .or_else(|| nodes.first())
            .and_then(|s| s.scavenge.clone())
            .filter(|s| s.phase != ScavengePhase::Never);
        t.nodes = nodes
            .iter()
            .map(|s| {
                // A node the previous refresh did not see has no baseline: its
                // counters since start may span far more than this interval.
                let b = before.get(&(store, s.node_id)).copied();
                NodeTelemetry {
                    node_id: s.node_id,
                    role: s.role,
                    events: s.events,
                    errors: s.error_count(),
                    leader_changes: s.leader_changes,
                    last: b.zip(ms).map(|(b, ms)| Interval::between(b, s, ms)),
                    restarted: b.is_some_and(|b| restarted(b, s)),
                }
            })
            .collect();
        let Some(ms) = ms else {
            continue;
        };
        let mut iv = Interval {
            ms,
            ..Interval::default()
        };
        for n in &t.nodes {
            if let Some(niv) = &n.last {
                iv.merge(niv);
            }
        }
        push_sample(&mut t.append_rate, iv.per_sec(iv.appended_events));
        push_sample(&mut t.read_rate, iv.per_sec(iv.read_events));
        push_sample(&mut t.append_p99, iv.append_latency.quantile_us(0.99));
        t.last = Some(iv);
    }
    app.stats_at = Some(now);
}

/// Delivery rates from the subscriptions' `delivered` counts (each since the serving
/// node started; a decrease is a restart or another node serving).
fn observe_deliveries(d: &mut DeliveryRates, subs: &[SubscriptionInfo], now: Millis) {
    if let Some(at) = d.last_at {
        let ms = now.saturating_sub(at).max(1);
        d.per_sec = subs
            .iter()
            .filter_map(|s| {
                let before = d.last.get(&s.key)?;
                Some((
                    s.key.clone(),
                    counter_delta(s.delivered, *before).saturating_mul(1000) / ms,
                ))
            })
            .collect();
    }
    d.last = subs.iter().map(|s| (s.key.clone(), s.delivered)).collect();
    d.last_at = Some(now);
}

fn clamp_streams(app: &mut App) {
    let n = app.streams.rows().len();
    app.streams.selected = app.streams.selected.min(n.saturating_sub(1));
}

fn on_key(app: &mut App, key: Key, now: Millis, cmds: &mut Vec<Command>) {
    if key == Key::CtrlC {
        app.quit = true;
        return;
    }
    if let Some(confirm) = app.confirm.take() {
        match key {
            Key::Char('y') | Key::Char('Y') => cmds.push(confirm.command),
            Key::Char('n') | Key::Char('N') | Key::Esc => {}
            // Anything else leaves the question open.
            _ => app.confirm = Some(confirm),
        }
        return;
    }
    if app.help {
        app.help = false;
        return;
    }
    if app.tab == Tab::Streams && app.streams.editing_filter {
        match key {
            Key::Char(c) => app.streams.filter.push(c),
            Key::Backspace => {
                app.streams.filter.pop();
            }
            Key::Enter => {
                app.streams.editing_filter = false;
                commit_filter(app, cmds);
            }
            Key::Esc => {
                app.streams.filter.clear();
                app.streams.editing_filter = false;
                commit_filter(app, cmds);
            }
            _ => {}
        }
        app.streams.selected = 0;
        clamp_streams(app);
        return;
    }
    match key {
        Key::Char('q') => app.quit = true,
        Key::Char('?') => app.help = true,
        Key::Char(c @ '1'..='4') => {
            app.tab = Tab::ALL[(c as usize) - ('1' as usize)];
        }
        Key::Tab => app.tab = app.tab.next(),
        Key::BackTab => app.tab = app.tab.prev(),
        Key::Char('r') => refresh(app, cmds),
        Key::Char('s') => next_store(app, cmds),
        _ => match app.tab {
            Tab::Cluster => cluster_key(app, key),
            Tab::Streams => streams_key(app, key, now, cmds),
            Tab::Subscriptions => subs_key(app, key),
            Tab::Telemetry => {}
        },
    }
}

fn next_store(app: &mut App, cmds: &mut Vec<Command>) {
    let stores = app.stores();
    if stores.is_empty() {
        return;
    }
    let i = app
        .store
        .as_ref()
        .and_then(|s| stores.iter().position(|x| x == s))
        .map_or(0, |i| (i + 1) % stores.len());
    app.store = Some(stores[i].clone());
    app.streams = StreamsView {
        pages: vec![None],
        filter: std::mem::take(&mut app.streams.filter),
        query: app.streams.query.take(),
        ..StreamsView::default()
    };
    app.subscriptions = Panel::default();
    app.deliveries = DeliveryRates::default();
    app.subs_selected = 0;
    refresh_store(app, cmds);
}

fn move_sel(sel: &mut usize, len: usize, key: Key) -> bool {
    match key {
        Key::Up | Key::Char('k') => *sel = sel.saturating_sub(1),
        Key::Down | Key::Char('j') => *sel = (*sel + 1).min(len.saturating_sub(1)),
        _ => return false,
    }
    true
}

fn cluster_key(app: &mut App, key: Key) {
    let rows = app.node_rows();
    if move_sel(&mut app.cluster_selected, rows.len(), key) {
        return;
    }
    let Some((store, node_id)) = rows.get(app.cluster_selected).cloned() else {
        return;
    };
    if !app.may(&store, Permission::Admin) {
        return;
    }
    match key {
        Key::Char('R') => {
            app.confirm = Some(Confirm {
                prompt: format!("Remove node {node_id} from store {store}?"),
                command: Command::RemoveNode { store, node_id },
            });
        }
        Key::Char('L') => {
            app.confirm = Some(Confirm {
                prompt: format!(
                    "Hand the leadership of store {store} to node {node_id}? \
                     Writes pause for about a second."
                ),
                command: Command::TransferLeader { store, node_id },
            });
        }
        _ => {}
    }
}

fn subs_key(app: &mut App, key: Key) {
    let subs = app.sorted_subscriptions();
    if move_sel(&mut app.subs_selected, subs.len(), key) {
        return;
    }
    if key == Key::Char('x') {
        let store = app.store.clone().filter(|s| app.may(s, Permission::Admin));
        if let (Some(store), Some(sub)) = (store, subs.get(app.subs_selected)) {
            app.confirm = Some(Confirm {
                prompt: format!("Remove subscription {} ({})?", sub.name, sub.key),
                command: Command::Unsubscribe {
                    store,
                    key: sub.key.clone(),
                },
            });
        }
    }
}

fn streams_key(app: &mut App, key: Key, now: Millis, cmds: &mut Vec<Command>) {
    let Some(store) = app.store.clone() else {
        return;
    };
    // The stream the destructive keys act on: the open one, or the selected row.
    let target = match &app.streams.mode {
        StreamsMode::Events { stream, .. } => Some(stream.clone()),
        StreamsMode::List => app
            .streams
            .rows()
            .get(app.streams.selected)
            .map(|r| r.0.clone()),
    };
    if let Some(stream) = target.filter(|s| s != ALL_STREAM) {
        let confirm = match key {
            Key::Char('d') => Some(Confirm {
                prompt: format!("Soft-delete stream {stream}?"),
                command: Command::DeleteStream {
                    store: store.clone(),
                    stream,
                    hard: false,
                },
            }),
            Key::Char('D') => Some(Confirm {
                prompt: format!("HARD-delete stream {stream}? Its id can never be written again."),
                command: Command::DeleteStream {
                    store: store.clone(),
                    stream,
                    hard: true,
                },
            }),
            Key::Char('a') => Some(Confirm {
                prompt: format!("Append a test event to {stream}?"),
                command: Command::AppendTest {
                    store: store.clone(),
                    stream,
                    at: now,
                },
            }),
            _ => None,
        };
        let needs = match key {
            Key::Char('a') => Permission::Write,
            _ => Permission::Admin,
        };
        let confirm = confirm.filter(|_| app.may(&store, needs));
        if confirm.is_some() {
            app.confirm = confirm;
            return;
        }
    }
    let list_len = app.streams.rows().len();
    match &mut app.streams.mode {
        StreamsMode::List => {
            if move_sel(&mut app.streams.selected, list_len, key) {
                return;
            }
            match key {
                Key::Char('/') => app.streams.editing_filter = true,
                Key::Esc => {
                    app.streams.filter.clear();
                    commit_filter(app, cmds);
                }
                Key::Enter => {
                    if let Some((stream, _)) = app.streams.rows().get(app.streams.selected) {
                        app.streams.mode = StreamsMode::Events {
                            stream: stream.clone(),
                            from: 0,
                            selected: 0,
                            events: Panel::default(),
                        };
                        refresh_store(app, cmds);
                    }
                }
                Key::PageDown => {
                    if let Some(next) = app.streams.next_cursor() {
                        app.streams.pages.push(Some(next));
                        turn_streams_page(app, cmds);
                    }
                }
                Key::PageUp if app.streams.pages.len() > 1 => {
                    app.streams.pages.pop();
                    turn_streams_page(app, cmds);
                }
                _ => {}
            }
        }
        StreamsMode::Events {
            from,
            selected,
            events,
            ..
        } => {
            let n = events.data.as_ref().map_or(0, Vec::len);
            if move_sel(selected, n, key) {
                return;
            }
            let turned = match key {
                Key::Esc | Key::Backspace | Key::Char('h') => {
                    app.streams.mode = StreamsMode::List;
                    return;
                }
                Key::PageDown if n as u32 >= EVENTS_PAGE => {
                    *from += u64::from(EVENTS_PAGE);
                    true
                }
                Key::PageUp if *from > 0 => {
                    *from = from.saturating_sub(u64::from(EVENTS_PAGE));
                    true
                }
                _ => false,
            };
            if turned {
                *selected = 0;
                *events = Panel::default();
                refresh_store(app, cmds);
            }
        }
    }
}

fn turn_streams_page(app: &mut App, cmds: &mut Vec<Command>) {
    app.streams.list = Panel::default();
    app.streams.selected = 0;
    app.streams.followed = 0;
    refresh_store(app, cmds);
}

/// Makes the typed filter the server-side one: a non-empty filter loads its first
/// page through `find_streams`, an empty one goes back to `list_streams`. Nothing
/// is asked when the query does not change.
fn commit_filter(app: &mut App, cmds: &mut Vec<Command>) {
    let query = (!app.streams.filter.is_empty()).then(|| app.streams.filter.clone());
    if query == app.streams.query {
        return;
    }
    app.streams.query = query;
    app.streams.pages = vec![None];
    turn_streams_page(app, cmds);
}

/// `Role` as the cluster tab names it, `down` when the gater thinks it unhealthy.
pub fn role_name(role: Role, healthy: bool) -> &'static str {
    if !healthy {
        return "down";
    }
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Learner => "learner",
        Role::Candidate => "candidate",
    }
}
