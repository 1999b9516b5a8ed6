//! `reckon-bench`: the benchmark workloads (W1-W4, S1, S2; see the README) against real
//! `reckon-node` processes, straight and through the gater, next to the disk's own
//! ceiling measured with raw redb.
//!
//! What it measures. Every event carries exactly 200 bytes of JSON data (`{"pad":"xx…"}`)
//! and the type `bench`; every writer appends to its own stream with
//! `ExpectedVersion::Any` over its own connection on loopback TCP:
//!
//! ```text
//! W1  1 writer, sequential single-event appends
//! W2  64 concurrent writers, each one single-event append at a time
//! W3  1 writer, batches of 100 events per append; a second row at 1000
//! W4  1 reader, the whole global log forward from position 0 in pages of 1000
//!     (linearizable read_all), after loading --w4-events events (not timed)
//! S1  catch-up: a subscription to $all from the beginning of a log of --s1-events
//!     events, received with Subscriber::next_batch; events/s
//! S2  live: 5,000 single-event appends/s from a paced writer while 1 (and 10)
//!     subscriptions to $all receive them; append-to-delivery latency
//! ```
//!
//! Paths (`--via`, `--cluster`). `node`: straight to one `reckon-node --dev` over its
//! worker service (tarpc). `gater`: through the gater that node embeds, with the client
//! library (`reckon_gater::Client`, one per writer, so one connection each): W1, W2,
//! both W3 rows (100 and 1000 per append) and W4, next to the node's rows, and the
//! gater's cost (events/s ratio, p50 difference) in a table of its own. `--cluster`:
//! W1, W2 and both W3 rows also through the gater of a 3-node cluster of real
//! processes on this machine (cluster mode, static seeds, a standalone
//! `reckon-gater`). S1 and S2 always go through the embedded gater: subscriptions have
//! no other client.
//!
//! The cost of security (`--secure`): W1 and W2 also through a standalone
//! `reckon-gater` in front of one `reckon-node` (single mode), twice and next to each
//! other: in clear text with the gater open (`gater-plain`), and with TLS on every
//! link and a token the gater checks (`gater-secure`), certificates and token made by
//! the library code behind `reckon certs` and `reckon token create`. A table divides
//! secure by plain; issue 14's target is at least 0.85× on W2. The `--dev` node's
//! embedded gater takes TLS but no tokens, so both sides get a gater of their own and
//! differ in nothing but security (see `bench::secure`).
//!
//! Each write run and each S2 run starts a fresh `reckon-node --dev --listen
//! 127.0.0.1:0 --data-dir <fresh dir>` (or a fresh cluster); W4 loads one fresh node
//! and reads it in every run, and S1 catches up on that same log when --s1-events
//! equals --w4-events (else on a node of its own). A run warms up (`--warmup-secs`,
//! not counted), then counts the events of the requests that complete within the
//! window (`--secs`), and stops; an S1 run is one whole catch-up, timed. Each row
//! reports the median events/s of `--runs` runs with their min and max, and the p50 /
//! p99 / p99.9 latency per request (per page for W4, per batch for S1, per delivery for
//! S2) over all runs, from an HDR histogram in microseconds.
//!
//! In the same invocation and on the same directory, raw redb in this process gives
//! the ceiling: (a) one 200-byte value per `Durability::Immediate` commit, (b) 1000 per
//! commit, (c) a warm sequential scan. Every reckon figure is also printed as a ratio
//! to its baseline (W1, W2 to (a); W3 to (b); W4, S1 to (c)), because on shared
//! machines absolute numbers drift from run to run and ratios taken in one run do not.
//!
//! Backup and restore (`--backup`): on W4's node (or a node loaded alike when W4 does
//! not run), each run backs the store up with the client library through the
//! embedded gater, copies the same file raw on the same disk (with an fsync), and
//! restores it with the library behind `reckon-node restore`; a table gives each in
//! MB/s and backup and restore as a ratio to the copy (see `bench::backup`).
//!
//! Disk per event. W4's node is also sized: its data directory's files, walked and
//! summed by the blocks allocated to them (`st_blocks` × 512, not their lengths: redb
//! grows its files ahead of their contents), divided by the events loaded, split into
//! the Raft log (`log.redb`), the state file (`state.redb`) and snapshots. It is
//! looked at twice: right after the load, and after the first run of W4's reads (the
//! node has then had no writes for the rows before and during them); the table has
//! a row for each, and the files' lengths beside them.
//!
//! Reproduce, from the repository root:
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/reckon-bench --quick    # 1 run of 0.5 s + 2 s each, W4 and S1 on 200k events
//! target/release/reckon-bench            # 3 runs of 1 s + 5 s each, W4 and S1 on 1M events
//! target/release/reckon-bench --cluster  # the same and the 3-node cluster rows
//! target/release/reckon-bench --only W1,W2 --via gater --secure   # the cost of security
//! target/release/reckon-bench --only W1,W3 --via node --json bench.json
//! target/release/reckon-bench --quick --only W4 --via node --backup   # backup, restore, raw copy
//! target/release/reckon-bench --json after.json --compare before.json
//! ```
//!
//! Comparing runs. `--json FILE` saves the results; `--compare FILE` reads such a file
//! before anything runs (and refuses one it cannot read or that reckon-bench did not
//! write) and, after the run, prints a table of every row in either run: the saved
//! ratio to raw redb, this run's, and the change (this ÷ saved), in bold when a ratio
//! fell by more than 10%; the disk table's figures likewise, where a rise is worse.
//! Rows are matched by workload id (which carries W3's batch size and S2's variant)
//! and path; rows in one run only are listed as such.
//!
//! The tables on stdout are markdown, ready for the README; progress goes to stderr.
//! Everything is bounded: each run stops after its window (a catch-up or a drain after
//! a deadline), every process it starts is killed at the end (also on Ctrl-C), data
//! lives in a fresh directory under `--dir` that is removed at the end, and it only
//! talks to 127.0.0.1.

#[path = "../bench/mod.rs"]
mod bench;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;

use bench::compare;
use bench::disk::{self, DiskReport, DiskUse};
use bench::process::NodeSetup;
use bench::raw::{self, ScanTable};
use bench::report::{thousands, Report, Settings};
use bench::subs;
use bench::workloads::{self, LoadedNode};
use bench::{Baseline, RunSample, Series, Timing, Via, Workload};

/// Runs per row by default.
const DEFAULT_RUNS: u32 = 3;
/// Warm-up per run by default, seconds.
const DEFAULT_WARMUP_SECS: f64 = 1.0;
/// Window per run by default, seconds.
const DEFAULT_SECS: f64 = 5.0;
/// Events loaded before W4 by default.
const DEFAULT_W4_EVENTS: u64 = 1_000_000;
/// `--quick`: runs per row.
const QUICK_RUNS: u32 = 1;
/// `--quick`: warm-up per run, seconds.
const QUICK_WARMUP_SECS: f64 = 0.5;
/// `--quick`: window per run, seconds.
const QUICK_SECS: f64 = 2.0;
/// `--quick`: events loaded before W4.
const QUICK_W4_EVENTS: u64 = 200_000;
/// Events in S1's log by default.
const DEFAULT_S1_EVENTS: u64 = 1_000_000;
/// `--quick`: events in S1's log.
const QUICK_S1_EVENTS: u64 = 200_000;
/// Fewest events S1 may catch up on.
const S1_EVENTS_MIN: u64 = 1_000;
/// Fewest events W4 may read: the workload reads a log of at least 200,000 events.
const W4_EVENTS_MIN: u64 = 200_000;
/// Most events W4 may load, so that a typo cannot fill the disk.
const W4_EVENTS_MAX: u64 = 50_000_000;
/// Most runs per row.
const RUNS_MAX: u32 = 99;
/// Longest warm-up or window, seconds.
const SECS_MAX: f64 = 3600.0;
/// Writers in W2.
const W2_WRITERS: usize = 64;
/// Events per append in W3's two rows; each goes by every path measured (node, gater,
/// cluster).
const W3_BATCHES: [usize; 2] = [100, 1000];
/// The node flag that moves `--dev`'s embedded gater, when the node has one.
const DEV_GATER_FLAG: &str = "--dev-gater-listen";
/// The node flag that moves `--dev`'s KurrentDB front door, when the node has one.
const DEV_KURRENT_FLAG: &str = "--dev-kurrent-listen";
/// How long leftover blocking work may run after the bench ends or is interrupted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// `--via`: which single-node paths to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ViaArg {
    /// Straight to the node over its worker service.
    Node,
    /// Through the node's embedded gater, with the client library.
    Gater,
    /// Both, side by side, with the gater's cost.
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "reckon-bench",
    version,
    about = "Benchmarks reckon-db (W1-W4, S1, S2), straight to a node, \
        through the gater and on a 3-node cluster, against raw redb on the same disk.",
    long_about = "Benchmarks reckon-db against raw redb on the same disk.\n\n\
        Every event has exactly 200 bytes of JSON data and type `bench`; each writer \
        appends to its own stream over its own TCP connection to 127.0.0.1.\n\n\
        \x20 W1  1 writer, sequential single-event appends\n\
        \x20 W2  64 concurrent writers, one single-event append at a time each\n\
        \x20 W3  1 writer, 100 events per append (and a second row at 1000)\n\
        \x20 W4  read the whole global log forward in pages of 1000, after loading \
        --w4-events events\n\
        \x20 S1  catch-up: a subscription to $all from the beginning of a log of \
        --s1-events events\n\
        \x20 S2  live: append-to-delivery latency at 5,000 appends/s, 1 and 10 \
        subscriptions\n\n\
        --via node runs them straight to a `reckon-node --dev` over its worker service; \
        --via gater through the gater it embeds, with the client library (W1, W2, both \
        W3 rows, W4); --via both (the default) does both and tables the gater's cost. \
        --cluster adds W1, W2 and both W3 rows through the gater of a 3-node cluster on \
        this machine. S1 and S2 always go through the embedded gater.\n\n\
        --secure prices security: W1 and W2 also through a standalone reckon-gater in \
        front of one node, in clear text with the gater open (gater-plain) and with TLS \
        on every link and a token (gater-secure), next to each other, and a table of \
        secure ÷ plain (target: at least 0.85× on W2). The embedded gater of --dev takes \
        no tokens, hence a gater of its own for both sides of the ratio.\n\n\
        --backup measures backup (client library through the gater) and restore (the \
        library behind reckon-node restore) of W4's store in MB/s, beside a raw copy of \
        the same file with an fsync on the same disk, and tables both as a ratio to the \
        copy.\n\n\
        --scavenge measures single appends through the gater on a node whose store holds \
        400,000 events, half in deleted streams, first idle, then while a scavenge runs, \
        and tables p50, p99 and p99 during ÷ idle.\n\n\
        Each write run gets a fresh node (or cluster) on a fresh data directory; W4 \
        loads one node and reads it in every run. A run warms up, then counts the \
        requests that complete in its window. Each row shows the median events/s of the \
        runs, min-max, and p50/p99/p99.9 latency per request in µs. In the same run, raw \
        redb on the same directory measures (a) 1 event per Immediate commit, (b) 1000 \
        events per Immediate commit and (c) a warm sequential scan; every figure is also \
        shown as a ratio to its baseline (W1, W2: a; W3: b; W4, S1: c).\n\n\
        W4's node is also sized after its load and after its first reads: bytes on disk \
        per event (blocks allocated), for the Raft log, the state file and snapshots.\n\n\
        Output: markdown tables on stdout (progress on stderr), the baseline figures, \
        and the command line used. --json FILE saves the results; --compare FILE (a \
        file saved so) adds a table of each row's figure then and now, in bold where it \
        got worse by more than 10%.",
    after_help = "Reproduce from the repository root:\n  \
        cargo build --release --workspace --bins\n  \
        target/release/reckon-bench --quick      (1 run of 0.5 s + 2 s, 200k events: under a minute)\n  \
        target/release/reckon-bench              (3 runs of 1 s + 5 s, W4 and S1 on 1M events: \
        about 5.5 minutes)\n  \
        target/release/reckon-bench --cluster    (the same with the cluster rows: about 6.5 minutes)\n  \
        target/release/reckon-bench --only W1,W2 --via gater --secure    (the cost of TLS and \
        a token)\n  \
        target/release/reckon-bench --quick --only W4 --via node --backup    (backup and \
        restore beside a raw copy)\n  \
        target/release/reckon-bench --only W1 --via gater --scavenge    (append latency \
        during a scavenge beside idle)\n  \
        target/release/reckon-bench --json new.json --compare old.json    (each row against a \
        run saved with --json)"
)]
struct Args {
    /// One run per row with 0.5 s warm-up and a 2 s window, W4 on 200,000 events:
    /// a fast check. Flags given explicitly still win.
    #[arg(long)]
    quick: bool,
    /// Runs per row; the median is reported [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(RUNS_MAX)))]
    runs: Option<u32>,
    /// Warm-up of each run, not counted, in seconds [default: 1].
    #[arg(long, value_name = "SECS")]
    warmup_secs: Option<f64>,
    /// Measured window of each run, in seconds [default: 5].
    #[arg(long, value_name = "SECS")]
    secs: Option<f64>,
    /// Events in the log W4 reads, loaded with 1000-event appends (not timed);
    /// at least 200,000 [default: 1,000,000].
    #[arg(long, value_name = "N")]
    w4_events: Option<u64>,
    /// Events in the log S1 catches up on, loaded with 1000-event appends (not timed);
    /// the W4 log when equal to --w4-events [default: 1,000,000].
    #[arg(long, value_name = "N")]
    s1_events: Option<u64>,
    /// Only these workloads, comma-separated (W1,W2,W3,W4,S1,S2); the baselines they
    /// compare with run too.
    #[arg(long, value_name = "LIST", value_delimiter = ',', ignore_case = true)]
    only: Vec<Workload>,
    /// Single-node paths for W1-W4: straight to the node, through its embedded gater,
    /// or both side by side.
    #[arg(long, value_enum, default_value_t = ViaArg::Both)]
    via: ViaArg,
    /// Also run W1, W2 and both W3 rows (100 and 1000 per append) through the gater of
    /// a 3-node cluster on this machine (fresh for every run).
    #[arg(long)]
    cluster: bool,
    /// The cost of security: also run W1 and W2 through a standalone reckon-gater in
    /// front of one node, twice: in clear text with the gater open (row `gater-plain`),
    /// and with TLS on every link and a token the gater checks (row `gater-secure`;
    /// certificates and token made as `reckon certs` and `reckon token create` make
    /// them). Adds a table of secure ÷ plain. Whatever --via says; the embedded gater
    /// of --via gater cannot check tokens, so it is not the secure path.
    #[arg(long)]
    secure: bool,
    /// Backup and restore throughput: each run backs W4's store up (the log of
    /// --w4-events events; loaded for this when W4 does not run) through its gater,
    /// copies the file raw on the same disk, and restores it; a table gives MB/s and
    /// backup and restore as a ratio to the copy.
    #[arg(long)]
    backup: bool,
    /// Append latency while a scavenge runs: each run loads a fresh node with 400,000
    /// events, deletes half of them, measures single appends through the gater for
    /// the window, starts a scavenge and measures them again while it runs; a table
    /// gives p50 and p99 of both and p99 during ÷ idle.
    #[arg(long)]
    scavenge: bool,
    /// Also run W1 and W2 through the KurrentDB gRPC front door of the same embedded
    /// gater (row `kurrent`), each right after its tarpc row through that gater
    /// (row `gater`): a KurrentDB client's appends beside the client library's.
    #[arg(long)]
    kurrent: bool,
    /// Directory under which a fresh data directory is made and removed at the end;
    /// use one on the disk under test [default: target/bench-data next to this binary].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The reckon-node binary [default: reckon-node next to this binary].
    #[arg(long, value_name = "PATH")]
    node_bin: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// After the run, compare it row by row with a run saved earlier with --json FILE:
    /// each ratio to raw redb and disk figure then and now, and the change, in bold
    /// when worse by more than 10%. The file is checked before anything runs.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
}

/// What to run, with every default resolved.
struct Plan {
    timing: Timing,
    runs: u32,
    w4_events: u64,
    s1_events: u64,
    workloads: Vec<Workload>,
    vias: Vec<Via>,
    cluster: bool,
    secure: bool,
    backup: bool,
    scavenge: bool,
    kurrent: bool,
    parent: PathBuf,
    node_bin: PathBuf,
    node_args: Vec<String>,
    gater_bin: PathBuf,
    json: Option<PathBuf>,
    compare: Option<compare::Saved>,
    settings: Settings,
}

fn secs(flag: &str, value: f64, min_exclusive: bool) -> anyhow::Result<Duration> {
    let low_ok = if min_exclusive {
        value > 0.0
    } else {
        value >= 0.0
    };
    if !low_ok || value > SECS_MAX || !value.is_finite() {
        bail!(
            "{flag} {value} is out of range: give {} up to {SECS_MAX} seconds",
            if min_exclusive { "more than 0" } else { "0" }
        );
    }
    Ok(Duration::from_secs_f64(value))
}

/// `target/bench-data` when this binary lives in `target/<profile>/`, else
/// `./target/bench-data`.
fn default_parent() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench-data")))
        .unwrap_or_else(|| PathBuf::from("target/bench-data"))
}

/// The arguments as a shell would take them back.
fn command_line(args: impl Iterator<Item = OsString>) -> String {
    args.map(|a| {
        let a = a.to_string_lossy().into_owned();
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    })
    .collect::<Vec<_>>()
    .join(" ")
}

/// Flags for `reckon-node` beyond `--dev --listen 127.0.0.1:0 --data-dir DIR`: a node
/// that embeds a gater under `--dev` must put it on a port of its own too, or two nodes
/// (W4's and a writer's) collide on the default one.
fn node_args(node_bin: &Path) -> anyhow::Result<Vec<String>> {
    let help = std::process::Command::new(node_bin)
        .arg("--help")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {} --help", node_bin.display()))?;
    if !help.status.success() {
        bail!(
            "{} --help failed ({}); is it a reckon-node binary?",
            node_bin.display(),
            help.status
        );
    }
    let text = String::from_utf8_lossy(&help.stdout);
    let mut args = Vec::new();
    for flag in [DEV_GATER_FLAG, DEV_KURRENT_FLAG] {
        if text.contains(flag) {
            args.extend([flag.to_string(), "127.0.0.1:0".to_string()]);
        }
    }
    Ok(args)
}

impl Plan {
    fn from_args(args: Args) -> anyhow::Result<Plan> {
        let (runs, warmup, window, w4_events, s1_events) = if args.quick {
            (
                QUICK_RUNS,
                QUICK_WARMUP_SECS,
                QUICK_SECS,
                QUICK_W4_EVENTS,
                QUICK_S1_EVENTS,
            )
        } else {
            (
                DEFAULT_RUNS,
                DEFAULT_WARMUP_SECS,
                DEFAULT_SECS,
                DEFAULT_W4_EVENTS,
                DEFAULT_S1_EVENTS,
            )
        };
        let runs = args.runs.unwrap_or(runs);
        let warmup_secs = args.warmup_secs.unwrap_or(warmup);
        let window_secs = args.secs.unwrap_or(window);
        let timing = Timing {
            warmup: secs("--warmup-secs", warmup_secs, false)?,
            window: secs("--secs", window_secs, true)?,
        };
        let w4_events = args.w4_events.unwrap_or(w4_events);
        if !(W4_EVENTS_MIN..=W4_EVENTS_MAX).contains(&w4_events) {
            bail!(
                "--w4-events {w4_events} is out of range: give {} to {} (the W4 workload \
                 reads at least 200,000 events)",
                thousands(W4_EVENTS_MIN),
                thousands(W4_EVENTS_MAX)
            );
        }
        let s1_events = args.s1_events.unwrap_or(s1_events);
        if !(S1_EVENTS_MIN..=W4_EVENTS_MAX).contains(&s1_events) {
            bail!(
                "--s1-events {s1_events} is out of range: give {} to {}",
                thousands(S1_EVENTS_MIN),
                thousands(W4_EVENTS_MAX)
            );
        }
        let compare = args.compare.as_deref().map(compare::load).transpose()?;
        let vias = match args.via {
            ViaArg::Node => vec![Via::Node],
            ViaArg::Gater => vec![Via::Gater],
            ViaArg::Both => vec![Via::Node, Via::Gater],
        };
        let mut workloads = if args.only.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.only
        };
        workloads.sort();
        workloads.dedup();
        let parent = args.dir.unwrap_or_else(default_parent);
        let node_bin = match args.node_bin {
            Some(path) => path,
            None => {
                let expected = std::env::current_exe()
                    .ok()
                    .and_then(|exe| Some(exe.parent()?.join("reckon-node")));
                match expected {
                    Some(path) if path.exists() => reckon_tests::bin("reckon-node"),
                    Some(path) => bail!(
                        "{} is not built: run `cargo build --release --workspace --bins`, \
                         or give --node-bin PATH",
                        path.display()
                    ),
                    None => bail!("cannot tell where this binary is; give --node-bin PATH"),
                }
            }
        };
        if !node_bin.is_file() {
            bail!("--node-bin {} is not a file", node_bin.display());
        }
        let node_args = node_args(&node_bin)?;
        let needs_gater = vias.contains(&Via::Gater)
            || workloads.contains(&Workload::S1)
            || workloads.contains(&Workload::S2);
        if needs_gater && node_args.is_empty() {
            bail!(
                "{} has no {DEV_GATER_FLAG} flag, so its embedded gater cannot get a port of \
                 its own: run with --via node --only W1,W2,W3,W4, or build a newer node",
                node_bin.display()
            );
        }
        let gater_bin = node_bin.with_file_name("reckon-gater");
        for (given, flag) in [(args.cluster, "--cluster"), (args.secure, "--secure")] {
            if given && !gater_bin.is_file() {
                bail!(
                    "{flag} needs {} next to the node binary; run `cargo build --release \
                     --workspace --bins`",
                    gater_bin.display()
                );
            }
        }
        if args.kurrent
            && !(node_args.iter().any(|a| a == DEV_KURRENT_FLAG) && vias.contains(&Via::Gater))
        {
            bail!(
                "--kurrent runs W1 and W2 beside --via gater: give --via gater or both, with \
                 a node that has {DEV_KURRENT_FLAG}"
            );
        }
        if args.secure
            && !workloads
                .iter()
                .any(|w| matches!(w, Workload::W1 | Workload::W2))
        {
            bail!("--secure measures W1 and W2: add them to --only");
        }
        let settings = Settings {
            command: command_line(std::env::args_os()),
            runs,
            warmup_secs,
            secs: window_secs,
            w4_events,
            s1_events,
            s2_rate: subs::S2_RATE,
            vias: vias.clone(),
            cluster: args.cluster,
            secure: args.secure,
            kurrent: args.kurrent,
            quick: args.quick,
            node_bin: format!("{} {}", node_bin.display(), node_args.join(" "))
                .trim_end()
                .to_string(),
            dir: parent.display().to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Plan {
            timing,
            runs,
            w4_events,
            s1_events,
            workloads,
            vias,
            cluster: args.cluster,
            secure: args.secure,
            backup: args.backup,
            scavenge: args.scavenge,
            kurrent: args.kurrent,
            parent,
            node_bin,
            node_args,
            gater_bin,
            json: args.json,
            compare,
            settings,
        })
    }
}

/// Runs blocking work (redb) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("blocking task failed: {e}"))?
}

fn progress(id: &str, run: u32, runs: u32, sample: &RunSample) {
    let h = &sample.latency_us;
    let (p50, p99) = if h.is_empty() {
        (0, 0)
    } else {
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    };
    eprintln!(
        "[{id} run {}/{runs}] {} events/s, p50 {} µs, p99 {} µs",
        run + 1,
        thousands(sample.rate().round() as u64),
        thousands(p50),
        thousands(p99)
    );
}

/// How to take one run of a row.
enum Step {
    /// Raw redb commits of this many events each, into a fresh file per run.
    Commits { per_commit: u64 },
    /// Scans of the loaded raw table.
    Scan,
    /// `writers` clients appending `batch` events per request `via` a path, on a fresh
    /// node (or cluster) per run.
    Write {
        via: Via,
        writers: usize,
        batch: usize,
    },
    /// Paged `read_all` of W4's loaded node `via` a path.
    Read { via: Via },
    /// S1: a subscription catching up on the S1 log.
    CatchUp,
    /// S2: live delivery to `subscriptions` subscriptions, on a fresh node per run.
    Live { subscriptions: usize },
}

/// One row of the report: how to run it and the runs so far.
struct Row {
    step: Step,
    series: Series,
}

impl Row {
    fn new(step: Step, id: &str, label: String, via: Option<Via>, c: Option<Baseline>) -> Row {
        Row {
            step,
            series: Series {
                id: id.to_string(),
                label,
                via,
                compare_to: c,
                runs: Vec::new(),
            },
        }
    }

    /// The row's name in progress lines and data directories.
    fn name(&self) -> String {
        match self.series.via {
            Some(via) => format!("{} {}", self.series.id, via.id()),
            None => self.series.id.clone(),
        }
    }
}

/// The rows to run, in the order one round runs them: each baseline right before the
/// workloads compared with it, so that a ratio divides figures taken close in time,
/// and each workload's paths next to each other (node, gater, cluster), so that the
/// gater's cost divides figures taken close in time too.
fn rows(plan: &Plan) -> Vec<Row> {
    let mut write_vias = plan.vias.clone();
    if plan.cluster {
        write_vias.push(Via::Cluster);
    }
    let mut rows = Vec::new();
    for b in Baseline::ALL {
        let compared: Vec<Workload> = plan
            .workloads
            .iter()
            .copied()
            .filter(|w| w.baseline() == Some(b))
            .collect();
        if compared.is_empty() {
            continue;
        }
        let step = match b {
            Baseline::Single => Step::Commits { per_commit: 1 },
            Baseline::Batch => Step::Commits {
                per_commit: raw::LOAD_EVENTS_PER_COMMIT,
            },
            Baseline::Scan => Step::Scan,
        };
        rows.push(Row::new(step, b.id(), b.label().to_string(), None, None));
        let c = Some(b);
        for w in compared {
            match w {
                Workload::W1 | Workload::W2 => {
                    let (id, writers, label) = if w == Workload::W1 {
                        ("W1", 1, "W1: 1 writer, 1 event per append".to_string())
                    } else {
                        (
                            "W2",
                            W2_WRITERS,
                            format!("W2: {W2_WRITERS} writers, 1 event per append each"),
                        )
                    };
                    let secure_vias = if plan.secure {
                        &[Via::Standalone, Via::Secure][..]
                    } else {
                        &[]
                    };
                    // gRPC right after tarpc through the same kind of gater.
                    let mut vias = Vec::new();
                    for &via in &write_vias {
                        vias.push(via);
                        if via == Via::Gater && plan.kurrent {
                            vias.push(Via::Kurrent);
                        }
                    }
                    for &via in vias.iter().chain(secure_vias) {
                        let step = Step::Write {
                            via,
                            writers,
                            batch: 1,
                        };
                        rows.push(Row::new(step, id, label.clone(), Some(via), c));
                    }
                }
                Workload::W3 => {
                    for batch in W3_BATCHES {
                        for &via in &write_vias {
                            rows.push(Row::new(
                                Step::Write {
                                    via,
                                    writers: 1,
                                    batch,
                                },
                                &format!("W3/{batch}"),
                                format!("W3: 1 writer, {batch} events per append"),
                                Some(via),
                                c,
                            ));
                        }
                    }
                }
                Workload::W4 => {
                    for &via in &plan.vias {
                        rows.push(Row::new(
                            Step::Read { via },
                            "W4",
                            format!("W4: read_all forward, pages of {}", workloads::PAGE_EVENTS),
                            Some(via),
                            c,
                        ));
                    }
                }
                Workload::S1 => rows.push(Row::new(
                    Step::CatchUp,
                    "S1",
                    format!(
                        "S1: catch-up subscription to $all, {} events",
                        thousands(plan.s1_events)
                    ),
                    Some(Via::Gater),
                    c,
                )),
                Workload::S2 => {}
            }
        }
    }
    if plan.workloads.contains(&Workload::S2) {
        for subscriptions in subs::S2_SUBSCRIPTIONS {
            rows.push(Row::new(
                Step::Live { subscriptions },
                &format!("S2/{subscriptions}"),
                format!(
                    "S2: live, {} appends/s, {subscriptions} subscription{} to $all",
                    thousands(u64::from(subs::S2_RATE)),
                    if subscriptions == 1 { "" } else { "s" }
                ),
                Some(Via::Gater),
                None,
            ));
        }
    }
    rows
}

/// A node with `events` events loaded (for `what`), and a note on the load; the note
/// gives the data directory's size too unless `disk_table` (its disk table does).
async fn load_log(
    setup: &NodeSetup,
    name: &str,
    events: u64,
    what: &str,
    disk_table: bool,
) -> anyhow::Result<(LoadedNode, String)> {
    eprintln!("[{what}] loading {} events", thousands(events));
    let node = LoadedNode::start(setup, name, events).await?;
    let load = node.load;
    let mut note = format!(
        "{what} read a log of {} events, loaded in {:.1} s ({} events/s from {} clients appending \
         1000-event batches, not timed)",
        thousands(load.events),
        load.took.as_secs_f64(),
        thousands((load.events as f64 / load.took.as_secs_f64()).round() as u64),
        workloads::LOADERS,
    );
    if disk_table {
        note.push_str("; its bytes on disk are in the disk table");
    } else {
        let disk = node.disk_usage();
        let total: u64 = disk.iter().map(|(_, bytes)| bytes).sum();
        let biggest: Vec<String> = disk
            .iter()
            .take(2)
            .map(|(file, bytes)| format!("{file} {:.1} MB", *bytes as f64 / 1e6))
            .collect();
        let _ = write!(
            note,
            "; its data directory then held {:.1} MB, {} bytes per event ({}; file lengths, \
             and redb files grow ahead of their contents)",
            total as f64 / 1e6,
            thousands(total / load.events.max(1)),
            biggest.join(", ")
        );
    }
    Ok((node, note))
}

/// When the disk table looks at W4's node: right after the load ...
const DISK_AFTER_LOAD: &str = "after-load";
/// ... and once every path has read it in the first round, with no writes since the
/// load (the rows before it in the round ran on nodes of their own meanwhile).
const DISK_AFTER_READS: &str = "after-reads";

/// Sizes W4's node's data directory for the disk table.
async fn look_at_disk(
    node: &LoadedNode,
    when: &'static str,
    label: String,
) -> anyhow::Result<DiskUse> {
    let dir = node.node().dir().to_path_buf();
    blocking(move || disk::measure(&dir, when, label))
        .await
        .with_context(|| format!("sizing W4's data directory ({when})"))
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let created_parent = !plan.parent.exists();
    std::fs::create_dir_all(&plan.parent)
        .with_context(|| format!("creating {}", plan.parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&plan.parent)
        .with_context(|| format!("making a data directory under {}", plan.parent.display()))?;
    let started = Instant::now();
    let measured = measure(&plan, dir.path()).await;
    drop(dir);
    if created_parent {
        // Only if empty: another bench may be using it.
        let _ = std::fs::remove_dir(&plan.parent);
    }
    let report = measured?;
    eprintln!(
        "reckon-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    print!("{}", report.markdown());
    let json = report.json();
    if let Some(path) = &plan.json {
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("reckon-bench: results written to {}", path.display());
    }
    if let Some(saved) = &plan.compare {
        let table = saved.markdown(&json).map_err(|e| {
            anyhow!(
                "comparing with {}: this run's results: {e}",
                saved.path.display()
            )
        })?;
        print!("{table}");
    }
    Ok(())
}

/// Runs every row `plan.runs` times with all files under `dir`.
async fn measure(plan: &Plan, dir: &Path) -> anyhow::Result<Report> {
    eprintln!(
        "reckon-bench: {:?} via {:?}{}{} with {} run(s) of {:?} warm-up + {:?}, data under {}",
        plan.workloads,
        plan.vias,
        if plan.cluster {
            " and a 3-node cluster"
        } else {
            ""
        },
        if plan.secure {
            " and a standalone gater, plain and secure"
        } else {
            ""
        },
        plan.runs,
        plan.timing.warmup,
        plan.timing.window,
        dir.display()
    );
    let setup = NodeSetup {
        bin: plan.node_bin.clone(),
        args: plan.node_args.clone(),
        embedded_gater: plan.node_args.iter().any(|a| a == DEV_GATER_FLAG),
        embedded_kurrent: plan.node_args.iter().any(|a| a == DEV_KURRENT_FLAG),
        gater_bin: plan.gater_bin.clone(),
        parent: dir.to_path_buf(),
    };
    let mut rows = rows(plan);
    let mut notes = Vec::new();

    // Loaded once, read by every run.
    let scan_table = if rows.iter().any(|r| matches!(r.step, Step::Scan)) {
        let path = dir.join("raw-scan.redb");
        let events = plan.w4_events;
        eprintln!("[raw-scan] loading {} rows", thousands(events));
        Some(Arc::new(
            blocking(move || ScanTable::load(&path, events)).await?,
        ))
    } else {
        None
    };
    let mut disk = None;
    let w4 = if rows.iter().any(|r| matches!(r.step, Step::Read { .. })) {
        let (node, note) = load_log(&setup, "w4", plan.w4_events, "W4", true).await?;
        notes.push(note);
        let look = look_at_disk(&node, DISK_AFTER_LOAD, "right after the load".to_string());
        disk = Some(DiskReport {
            of: "W4",
            events: node.load.events,
            event_bytes: bench::PAYLOAD_BYTES,
            looks: vec![look.await?],
        });
        Some(node)
    } else {
        None
    };
    let last_read = rows
        .iter()
        .rposition(|r| matches!(r.step, Step::Read { .. }));
    let catch_up = rows.iter().any(|r| matches!(r.step, Step::CatchUp));
    let s1_own = if catch_up && (w4.is_none() || plan.s1_events != plan.w4_events) {
        let (node, note) = load_log(&setup, "s1", plan.s1_events, "S1", false).await?;
        notes.push(note);
        Some(node)
    } else {
        if catch_up {
            notes.push("S1 caught up on W4's log.".to_string());
        }
        None
    };
    let s1 = s1_own.as_ref().or(w4.as_ref());

    // The event id index priced at the disk, beside the batch baseline.
    let is_batch_baseline = |r: &Row| {
        matches!(
            r.step,
            Step::Commits {
                per_commit: ID_PRICE_PER_COMMIT
            }
        )
    };
    let price_ids = rows.iter().any(is_batch_baseline);
    let (mut v7_rates, mut v4_rates) = (Vec::new(), Vec::new());

    // Rounds: run r of every row, then run r + 1, so that drift on a shared machine
    // spreads over all rows alike.
    for r in 0..plan.runs {
        for (i, row) in rows.iter_mut().enumerate() {
            let id = row.series.id.clone();
            let name = row.name();
            let dir_name = format!("{}-r{r}", name.replace(['/', ' '], "-"));
            let timing = plan.timing;
            let sample = match row.step {
                Step::Commits { per_commit } => {
                    let path = dir.join(format!("{id}-r{r}.redb"));
                    blocking(move || raw::commits(&path, timing, per_commit)).await
                }
                Step::Scan => {
                    let table = scan_table.clone().context("scan table not loaded")?;
                    blocking(move || table.scan(timing)).await
                }
                Step::Write {
                    via,
                    writers,
                    batch,
                } => workloads::write_run(&setup, &dir_name, via, writers, batch, timing).await,
                Step::Read { via } => match &w4 {
                    Some(node) => node.read_run(via, timing).await,
                    None => Err(anyhow!("W4 node not loaded")),
                },
                Step::CatchUp => match s1 {
                    Some(node) => subs::catch_up_run(node, &dir_name).await,
                    None => Err(anyhow!("S1 node not loaded")),
                },
                Step::Live { subscriptions } => {
                    subs::live_run(&setup, &dir_name, subscriptions, subs::S2_RATE, timing).await
                }
            }
            .with_context(|| format!("{name} run {}", r + 1))?;
            progress(&name, r, plan.runs, &sample);
            row.series.runs.push(sample);
            if r == 0 && Some(i) == last_read {
                if let (Some(node), Some(disk)) = (&w4, &mut disk) {
                    let label = "after W4's first reads";
                    let look = look_at_disk(node, DISK_AFTER_READS, label.to_string()).await?;
                    disk.looks.push(look);
                }
            }
        }
        if price_ids {
            for (ids, rates) in [
                (raw::Ids::TimeOrdered, &mut v7_rates),
                (raw::Ids::Random, &mut v4_rates),
            ] {
                let path = dir.join(format!("raw-ids-{ids:?}-r{r}.redb"));
                let timing = plan.timing;
                let sample =
                    blocking(move || raw::commits_indexed(&path, timing, ID_PRICE_PER_COMMIT, ids))
                        .await
                        .with_context(|| format!("raw commits with {ids:?} ids, run {}", r + 1))?;
                progress(&format!("raw-batch + {ids:?} ids"), r, plan.runs, &sample);
                rates.push(sample.rate());
            }
        }
    }
    if price_ids {
        let plain = rows
            .iter()
            .find(|r| is_batch_baseline(r))
            .map(|r| r.series.median_rate())
            .unwrap_or(0.0);
        notes.push(id_price_note(plain, &mut v7_rates, &mut v4_rates));
    }
    let backup = if plan.backup {
        let own = match &w4 {
            Some(_) => None,
            None => {
                let (node, note) =
                    load_log(&setup, "backup", plan.w4_events, "Backup", false).await?;
                notes.push(note);
                Some(node)
            }
        };
        let node = own.as_ref().or(w4.as_ref()).context("no loaded node")?;
        let mut runs = Vec::new();
        for r in 0..plan.runs {
            let run = bench::backup::run(node, dir, r)
                .await
                .with_context(|| format!("backup run {}", r + 1))?;
            eprintln!(
                "[backup] run {}/{}: backup {:.1} MB/s (the node's copy {:.1} MB/s), raw copy \
                 {:.1} MB/s, restore {:.1} MB/s ({:.1} MB)",
                r + 1,
                plan.runs,
                run.backup_mb_s,
                run.node_copy_mb_s,
                run.copy_mb_s,
                run.restore_mb_s,
                run.bytes as f64 / 1e6
            );
            runs.push(run);
        }
        Some(bench::backup::BackupReport {
            events: node.load.events,
            runs,
        })
    } else {
        None
    };
    let scavenge = if plan.scavenge {
        let mut runs = Vec::new();
        for r in 0..plan.runs {
            eprintln!(
                "[scavenge] run {}/{}: loading {} events",
                r + 1,
                plan.runs,
                thousands(bench::scavenge::EVENTS)
            );
            let run = bench::scavenge::run(&setup, &format!("scavenge-{r}"), plan.timing.window)
                .await
                .with_context(|| format!("scavenge run {}", r + 1))?;
            eprintln!(
                "[scavenge] run {}/{}: append p99 {} µs idle, {} µs during the scavenge \
                 ({:.2}x); {} events removed",
                r + 1,
                plan.runs,
                run.idle.p99_us,
                run.during.p99_us,
                run.p99_ratio(),
                run.removed_events
            );
            runs.push(run);
        }
        Some(bench::scavenge::ScavengeReport { runs })
    } else {
        None
    };
    drop(s1_own);
    drop(w4);
    drop(scan_table);

    let (mut baselines, mut workloads) = (Vec::new(), Vec::new());
    for row in rows {
        match row.step {
            Step::Commits { per_commit: 1 } => baselines.push((Baseline::Single, row.series)),
            Step::Commits { .. } => baselines.push((Baseline::Batch, row.series)),
            Step::Scan => baselines.push((Baseline::Scan, row.series)),
            Step::Write { .. } | Step::Read { .. } | Step::CatchUp | Step::Live { .. } => {
                workloads.push(row.series)
            }
        }
    }
    Ok(Report {
        settings: plan.settings.clone(),
        workloads,
        baselines,
        notes,
        disk,
        backup,
        scavenge,
    })
}

/// Events per commit of the runs that price the event id index: those of the batch
/// baseline (b).
const ID_PRICE_PER_COMMIT: u64 = 1000;

/// The note that prices the event id index: raw batch commits that also index every
/// event's id, against `plain` (the batch baseline's median), medians over the runs.
fn id_price_note(plain: f64, v7: &mut [f64], v4: &mut [f64]) -> String {
    let median = |rates: &mut [f64]| {
        rates.sort_by(f64::total_cmp);
        bench::median(rates)
    };
    let (v7, v4) = (median(v7), median(v4));
    let ratio = |r: f64| if plain > 0.0 { r / plain } else { 0.0 };
    format!(
        "The event id index at the disk: raw redb commits of {ID_PRICE_PER_COMMIT} events that \
         also index each event's id ran at {} events/s with time-ordered (v7) ids = {:.2}x \
         of the same commits without the index (b), and {} events/s with random (v4) ids = \
         {:.2}x.",
        thousands(v7.round() as u64),
        ratio(v7),
        thousands(v4.round() as u64),
        ratio(v4)
    )
}

/// Resolves on SIGTERM; never when the handler cannot be installed (Ctrl-C still
/// stops the bench then).
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C or SIGTERM drops the bench future: nodes are killed and the data
    // directory removed.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(plan) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = terminated() => Err(anyhow!("terminated")),
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan for `workloads` over `vias`, with `--cluster` if `cluster`; nothing in it
    /// runs.
    fn plan(workloads: Vec<Workload>, vias: Vec<Via>, cluster: bool) -> Plan {
        let settings = Settings {
            command: "reckon-bench".to_string(),
            runs: 1,
            warmup_secs: 0.0,
            secs: 1.0,
            w4_events: W4_EVENTS_MIN,
            s1_events: W4_EVENTS_MIN,
            s2_rate: subs::S2_RATE,
            vias: vias.clone(),
            cluster,
            secure: false,
            kurrent: false,
            quick: true,
            node_bin: "reckon-node".to_string(),
            dir: "target/bench-data".to_string(),
            cpus: 1,
        };
        Plan {
            timing: Timing {
                warmup: Duration::ZERO,
                window: Duration::from_secs(1),
            },
            runs: 1,
            w4_events: W4_EVENTS_MIN,
            s1_events: W4_EVENTS_MIN,
            workloads,
            vias,
            cluster,
            secure: false,
            backup: false,
            scavenge: false,
            kurrent: false,
            parent: PathBuf::from("target/bench-data"),
            node_bin: PathBuf::from("reckon-node"),
            node_args: Vec::new(),
            gater_bin: PathBuf::from("reckon-gater"),
            json: None,
            compare: None,
            settings,
        }
    }

    #[test]
    fn the_help_states_the_compare_mark_as_it_is() {
        // --compare's help and the doc comments say 10%.
        assert_eq!(compare::WORSE_SHARE, 0.10);
    }

    #[test]
    fn both_w3_rows_go_by_every_path_next_to_each_other() {
        let both = plan(vec![Workload::W3], vec![Via::Node, Via::Gater], true);
        let names: Vec<String> = rows(&both).iter().map(Row::name).collect();
        assert_eq!(
            names,
            [
                "raw-1000",
                "W3/100 node",
                "W3/100 gater",
                "W3/100 cluster",
                "W3/1000 node",
                "W3/1000 gater",
                "W3/1000 cluster",
            ]
        );
        let gater_only = plan(vec![Workload::W3], vec![Via::Gater], false);
        let names: Vec<String> = rows(&gater_only).iter().map(Row::name).collect();
        assert_eq!(names, ["raw-1000", "W3/100 gater", "W3/1000 gater"]);
    }

    #[test]
    fn secure_adds_plain_and_secure_rows_of_w1_and_w2_only_next_to_the_others() {
        let mut p = plan(
            vec![Workload::W1, Workload::W2, Workload::W3],
            vec![Via::Gater],
            false,
        );
        p.secure = true;
        let names: Vec<String> = rows(&p).iter().map(Row::name).collect();
        assert_eq!(
            names,
            [
                "raw-single",
                "W1 gater",
                "W1 gater-plain",
                "W1 gater-secure",
                "W2 gater",
                "W2 gater-plain",
                "W2 gater-secure",
                "raw-1000",
                "W3/100 gater",
                "W3/1000 gater",
            ]
        );
    }

    #[test]
    fn kurrent_puts_w1_and_w2_through_grpc_right_after_the_same_gater_by_tarpc() {
        let mut p = plan(
            vec![Workload::W1, Workload::W2, Workload::W3],
            vec![Via::Node, Via::Gater],
            true,
        );
        p.kurrent = true;
        let names: Vec<String> = rows(&p).iter().map(Row::name).collect();
        assert_eq!(
            names,
            [
                "raw-single",
                "W1 node",
                "W1 gater",
                "W1 kurrent",
                "W1 cluster",
                "W2 node",
                "W2 gater",
                "W2 kurrent",
                "W2 cluster",
                "raw-1000",
                "W3/100 node",
                "W3/100 gater",
                "W3/100 cluster",
                "W3/1000 node",
                "W3/1000 gater",
                "W3/1000 cluster",
            ]
        );
    }
}
