//! The `reckon` command line as clap parses it.
//!
//! Everything a user can get wrong in the shape of a command (an unknown command, a
//! missing flag, JSON that does not parse, an `--expected` that means nothing, a bad
//! UUID) is refused here, by clap, with exit code 2 and a message that names the flag.
//! What is left for [`run`](super::run) are the things only the store can judge.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::subscription::StartFrom;
use crate::types::{ExpectedVersion, SubscriptionType, TagMatch};

/// How many events a read returns when `--count` is not given.
pub const DEFAULT_COUNT: u32 = 100;

/// The gater dialled when neither `--gater` nor `$RECKON_GATER` says otherwise.
pub const DEFAULT_GATER: &str = "127.0.0.1:7700";

const GLOBAL: &str = "Global options";

/// `reckon`: the command line of reckon-db.
#[derive(Debug, Parser)]
#[command(
    name = "reckon",
    version,
    about = "Command line for reckon-db: append, read and delete events, snapshots, and \
             health and cluster status, through a gater",
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 other error, 2 usage, 3 wrong expected version, \
                  4 not found, 5 unavailable (no workers, no leader, timeout, no gater), \
                  6 refused (Unauthenticated, PermissionDenied).\n\
                  Errors go to stderr as one line: `error: KIND: detail`."
)]
pub struct Cli {
    /// Gater addresses, HOST:PORT, comma-separated; the next is tried when one fails.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "ADDR[,ADDR...]",
        env = "RECKON_GATER",
        default_value = DEFAULT_GATER,
        value_delimiter = ','
    )]
    pub gater: Vec<String>,

    /// The store to address.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "NAME",
        default_value = "default"
    )]
    pub store: String,

    /// Print one JSON object a line instead of text for people.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Deadline of each call, in milliseconds.
    #[arg(
        long = "timeout-ms",
        global = true,
        help_heading = GLOBAL,
        value_name = "N",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout_ms: u64,

    /// Bearer token to present to the gater (`reckon token create` makes one).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        value_name = "TOKEN",
        env = "RECKON_TOKEN",
        hide_env_values = true,
        value_parser = Token::parse
    )]
    pub token: Option<Token>,

    /// The CA that signed the gaters' certificates: dial them with TLS.
    #[arg(
        long = "ca",
        global = true,
        help_heading = GLOBAL,
        value_name = "FILE",
        env = "RECKON_CA"
    )]
    pub tls_ca: Option<PathBuf>,

    /// A client certificate to present to the gater (with --key and --ca).
    // Ids of their own: `key` is also the positional of `unsubscribe`.
    #[arg(
        long = "cert",
        global = true,
        help_heading = GLOBAL,
        value_name = "FILE",
        env = "RECKON_CERT",
        requires_all = ["tls_key", "tls_ca"]
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --cert.
    #[arg(
        long = "key",
        global = true,
        help_heading = GLOBAL,
        value_name = "FILE",
        env = "RECKON_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The TLS files the global flags name, when `--ca` is given.
    pub fn tls_files(&self) -> Option<crate::tls::ClientTlsFiles> {
        let ca = self.tls_ca.clone()?;
        Some(crate::tls::ClientTlsFiles {
            ca,
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }
}

/// The commands of `reckon`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one event (--type), or a batch atomically (--file); prints the new version.
    Append(AppendArgs),
    /// Read events of one stream.
    Read(ReadArgs),
    /// Read the global log of the store, by position.
    ReadAll(ReadAllArgs),
    /// Read events by type, ascending by position.
    ReadTypes(ReadTypesArgs),
    /// Read events by tag, ascending by position.
    ReadTags(ReadTagsArgs),
    /// Print a stream's version (-1 when it does not exist), or the one it had at
    /// --at TIME.
    Version(VersionArgs),
    /// Print whether a stream exists (true or false).
    Exists(StreamArg),
    /// List every stream with its version, one a line.
    Streams,
    /// Delete a stream: soft (reads find nothing; a later append continues its
    /// numbering) or --hard (never written again).
    Delete(DeleteArgs),
    /// Save, load, list and delete snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Create a subscription; prints its key.
    Subscribe(SubscribeArgs),
    /// List subscriptions.
    Subscriptions,
    /// Remove a subscription.
    Unsubscribe(UnsubscribeArgs),
    /// Print a subscription's deliveries as they come.
    Tail(TailArgs),
    /// Health of each store: workers and leader. Exits 5 when a store has no
    /// leader or no store has a worker; "degraded" with a leader exits 0.
    Health,
    /// Nodes, roles, leader, term and indexes of each store; or change membership.
    Cluster {
        /// A membership change; without one, print the status.
        #[command(subcommand)]
        action: Option<ClusterCommand>,
    },
    /// Counters and latency percentiles per store and node.
    Stats,
    /// Print how long a stream keeps its events, or set it with the flags (those
    /// not given are cleared): reads of the stream no longer return the events it
    /// drops, and a scavenge removes them. Nothing is renumbered.
    Retention(RetentionArgs),
    /// Remove what no read can return any more (events of deleted and tombstoned
    /// streams) from the store, in the background, and give the space back.
    Scavenge {
        /// start (or resume a stopped one), status, or stop.
        #[arg(value_enum)]
        action: ScavengeArg,
    },
    /// Make bearer tokens for a gater (no gater is contacted).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make the cluster CA and the certificates of nodes, gaters and clients (PEM
    /// files; keys mode 0600). Talks to no gater.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Back up the store (--store) or every store (--all-stores) while it runs: a
    /// consistent copy of all its events, streams, indexes, snapshots and subscription
    /// checkpoints as of one position, taken from the leader without stopping writes.
    /// Progress goes to stderr. Restore with `reckon-node restore --from FILE
    /// --data-dir DIR`.
    #[command(
        after_help = "The file is written as FILE.partial and renamed to FILE only once \
                      it is complete, checked against the node's SHA-256 and on disk: a \
                      failed backup never leaves a file that looks complete. Prints what \
                      the file holds: the store, the position (every event below it is \
                      in the file), the Raft entry, the size."
    )]
    Backup(BackupArgs),
}

/// `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file; with --all-stores, a directory that gets one STORE.rbk per
    /// store (created if missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Back up every store the gater serves, each into OUT/STORE.rbk.
    #[arg(long)]
    pub all_stores: bool,
    /// Replace a file that exists already.
    #[arg(long)]
    pub force: bool,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a random token and the `[[tokens]]` entry (with its hash) for the gater's
    /// config; prints {"token": "...", "config": "..."}. The token is shown only now.
    Create {
        /// Who holds it (logs and audit events name it).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Roles on a store: STORE:ROLE[+ROLE]..., roles read, write, admin; `*` as the
        /// store means every store. Repeat for more stores.
        #[arg(long = "grant", value_name = "STORE:ROLE[+ROLE]", required = true, value_parser = parse_grant)]
        grants: Vec<String>,
    },
}

/// A bearer token from `--token` or `RECKON_TOKEN`; its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    fn parse(s: &str) -> Result<Token, String> {
        Ok(Token(s.trim().to_string()))
    }

    /// The token itself, to present to the gater.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Checks a grant as clap parses it, so a bad role is a usage error naming it.
fn parse_grant(s: &str) -> Result<String, String> {
    crate::access::Grant::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// `certs` subcommands: each writes a certificate and its key into `--dir`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// The cluster CA: DIR/ca.crt and DIR/ca.key. Keep ca.key off the servers.
    Ca {
        #[command(flatten)]
        out: CertsOut,
    },
    /// A node's certificate, naming it `reckon://node/N`: DIR/node-N.crt, .key.
    Node {
        #[command(flatten)]
        out: CertsOut,
        /// The node's id (its `node_id`).
        #[arg(long = "node-id", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        node_id: u64,
        /// Host names and IP addresses peers and gaters dial the node at.
        #[arg(long, value_name = "H[,H...]", value_delimiter = ',', required = true)]
        host: Vec<String>,
    },
    /// A gater's certificate, naming it `reckon://gater/NAME`: DIR/gater-NAME.crt, .key.
    Gater {
        #[command(flatten)]
        out: CertsOut,
        /// The gater's name: 1 to 64 of A-Z a-z 0-9 _ - .
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Host names and IP addresses clients and nodes dial the gater at.
        #[arg(long, value_name = "H[,H...]", value_delimiter = ',', required = true)]
        host: Vec<String>,
    },
    /// A client's certificate, naming it `reckon://client/NAME`: DIR/client-NAME.crt, .key.
    Client {
        #[command(flatten)]
        out: CertsOut,
        /// The client's name: 1 to 64 of A-Z a-z 0-9 _ - .
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

/// Where `certs` writes, and whether it may replace what is there.
#[derive(Debug, Args)]
pub struct CertsOut {
    /// The directory of the CA (created by `certs ca`; the others sign with the CA in it).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Replace an existing certificate and key.
    #[arg(long)]
    pub force: bool,
}

/// `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Remove node ID from the store's Raft group (through the leader).
    RemoveNode {
        /// The node's id.
        #[arg(value_name = "ID")]
        node_id: u64,
    },
    /// Hand the store's leadership to node ID (a voter); returns once it leads.
    TransferLeader {
        /// The node's id.
        #[arg(value_name = "ID")]
        node_id: u64,
    },
}

/// `append`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["event_type", "file"])
))]
pub struct AppendArgs {
    /// The stream to append to.
    pub stream: String,

    /// The event's type (single event).
    #[arg(long = "type", value_name = "T")]
    pub event_type: Option<String>,

    /// The event's data as JSON, e.g. '{"total":5}'; defaults to {}.
    #[arg(long, value_name = "JSON", value_parser = parse_json, conflicts_with = "file")]
    pub data: Option<serde_json::Value>,

    /// The event's metadata as JSON; none when absent.
    #[arg(long, value_name = "JSON", value_parser = parse_json, conflicts_with = "file")]
    pub metadata: Option<serde_json::Value>,

    /// A tag; repeat for several.
    #[arg(long = "tag", value_name = "T", conflicts_with = "file")]
    pub tags: Vec<String>,

    /// The event's id; the same id on a retry makes the append idempotent.
    #[arg(long = "event-id", value_name = "UUID", conflicts_with = "file")]
    pub event_id: Option<Uuid>,

    /// A batch of events, one JSON object a line
    /// ({"event_type","data","metadata","tags","event_id"}); `-` reads stdin.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,

    /// The version the stream must be at: any, no-stream, stream-exists, N, or -1, -2, -4.
    #[arg(
        long,
        value_name = "V",
        default_value = "any",
        allow_negative_numbers = true
    )]
    pub expected: ExpectedVersion,
}

/// `read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The stream to read.
    pub stream: String,
    /// The first version to read; 0 forward, the last event with --backward.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// How many events at most (the server may clamp it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_COUNT)]
    pub count: u32,
    /// Read from newest to oldest.
    #[arg(long)]
    pub backward: bool,
    /// Only the events written at or before TIME: the stream as it stood then.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
}

/// `retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// The stream.
    pub stream: String,
    /// Drop events older than this: 90d, 12h, 30m, 45s, 2w (a number alone is seconds).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub max_age: Option<u64>,
    /// Keep only the last N events.
    #[arg(long, value_name = "N")]
    pub max_count: Option<u64>,
    /// Drop the events below version V.
    #[arg(long, value_name = "V")]
    pub truncate_before: Option<u64>,
    /// Keep every event again (those a scavenge removed stay gone).
    #[arg(long, conflicts_with_all = ["max_age", "max_count", "truncate_before"])]
    pub clear: bool,
}

/// Parses an AGE into microseconds: a number and a unit (`s`, `m`, `h`, `d`, `w`), or
/// a number alone, in seconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let seconds: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}; give a number and s, m, h, d or w, e.g. 90d"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "not an age; give a number and s, m, h, d or w, e.g. 90d".to_string())?;
    n.checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000))
        .filter(|us| *us > 0)
        .ok_or_else(|| format!("{s} is not an age above 0 that fits"))
}

/// `scavenge ACTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScavengeArg {
    /// Start one over the log as it stands, or resume a stopped one.
    Start,
    /// Print where it stands.
    Status,
    /// Stop it where it stands.
    Stop,
}

/// `version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The stream.
    pub stream: String,
    /// The version the stream had at TIME instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<u64>,
}

/// `read-all`.
#[derive(Debug, Args)]
pub struct ReadAllArgs {
    /// The first position to read; 0 forward, the last event with --backward.
    #[arg(long, value_name = "POS")]
    pub from: Option<u64>,
    /// How many events at most (the server may clamp it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_COUNT)]
    pub count: u32,
    /// Read from newest to oldest.
    #[arg(long)]
    pub backward: bool,
    /// Only the events written at or after TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Only the events written at or before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
}

/// `read-types`.
#[derive(Debug, Args)]
pub struct ReadTypesArgs {
    /// Event types, comma-separated.
    #[arg(value_name = "T[,T...]", value_delimiter = ',', required = true)]
    pub types: Vec<String>,
    /// The first position to consider.
    #[arg(long, value_name = "POS", default_value_t = 0)]
    pub from: u64,
    /// How many events at most (the server may clamp it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_COUNT)]
    pub count: u32,
}

/// `read-tags`.
#[derive(Debug, Args)]
pub struct ReadTagsArgs {
    /// Tags, comma-separated.
    #[arg(value_name = "T[,T...]", value_delimiter = ',', required = true)]
    pub tags: Vec<String>,
    /// `any`: events with at least one of the tags; `all`: events with every tag.
    #[arg(long = "match", value_name = "any|all", default_value = "any")]
    pub matching: TagMatch,
    /// The first position to consider.
    #[arg(long, value_name = "POS", default_value_t = 0)]
    pub from: u64,
    /// How many events at most (the server may clamp it).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_COUNT)]
    pub count: u32,
}

/// A command that takes only a stream.
#[derive(Debug, Args)]
pub struct StreamArg {
    /// The stream.
    pub stream: String,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The stream to delete.
    pub stream: String,
    /// Tombstone the stream: its id can never be written again.
    #[arg(long)]
    pub hard: bool,
    /// The version the stream must be at: any, no-stream, stream-exists, N, or -1, -2, -4.
    #[arg(
        long,
        value_name = "V",
        default_value = "any",
        allow_negative_numbers = true
    )]
    pub expected: ExpectedVersion,
}

/// `snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a snapshot of STREAM at VERSION, replacing one at the same version.
    Save {
        /// The stream.
        stream: String,
        /// The stream version the state reflects.
        version: u64,
        /// The state as JSON.
        #[arg(long, value_name = "JSON", value_parser = parse_json)]
        data: serde_json::Value,
        /// Metadata as JSON; none when absent.
        #[arg(long, value_name = "JSON", value_parser = parse_json)]
        metadata: Option<serde_json::Value>,
    },
    /// Load the snapshot at --version, or the highest.
    Load {
        /// The stream.
        stream: String,
        /// The version to load; the highest when absent.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// List a stream's snapshots by ascending version.
    List {
        /// The stream.
        stream: String,
    },
    /// Delete the snapshot at --version, or all of the stream's.
    Delete {
        /// The stream.
        stream: String,
        /// The version to delete; every snapshot of the stream when absent.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
}

/// `subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// What the subscription selects on: stream, event_type, event_pattern,
    /// event_payload or tags.
    #[arg(value_name = "TYPE")]
    pub kind: SubscriptionType,
    /// The stream (or `$all`), type(s), glob, JSON payload filter, or tags
    /// (`x,y`, `all:x,y`).
    pub selector: String,
    /// The subscription's name; subscribing twice with one name gives one subscription.
    pub name: String,
    /// Where to start: beginning, end, or a position.
    #[arg(long, value_name = "beginning|end|POS", default_value = "beginning")]
    pub from: StartFrom,
    /// Consumers sharing the deliveries (each stream's order is kept).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub pool: u32,
}

/// `unsubscribe`.
#[derive(Debug, Args)]
pub struct UnsubscribeArgs {
    /// The subscription's key, as `subscribe` printed it.
    pub key: String,
}

/// `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// What the subscription selects on: stream, event_type, event_pattern,
    /// event_payload or tags.
    #[arg(value_name = "TYPE")]
    pub kind: SubscriptionType,
    /// The selector, as for `subscribe`.
    pub selector: String,
    /// The subscription's name.
    pub name: String,
    /// Acknowledge each delivery after printing it.
    #[arg(long)]
    pub ack: bool,
    /// Stop after N deliveries.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
}

/// Parses a flag's value as JSON, saying how to quote it when it does not parse.
fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| {
        format!(
            "not JSON ({e}); give a JSON value, quoted for the shell, e.g. '{{\"total\":5}}' \
             or '\"text\"'"
        )
    })
}

/// Parses a TIME: RFC 3339 (`2026-12-03T09:30:00Z`, `2026-12-03T10:30:00.5+01:00`)
/// or microseconds since the Unix epoch, as events print their `timestamp_us`.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(us) = s.parse::<u64>() {
        return Ok(us);
    }
    let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!(
                "not a time ({e}); give RFC 3339, e.g. 2026-12-03T09:30:00Z, or microseconds \
                 since the Unix epoch, e.g. 1764754200000000"
            )
        })?;
    u64::try_from(at.unix_timestamp_nanos() / 1000)
        .map_err(|_| format!("{s} is before the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    #[test]
    fn ages_are_a_number_and_a_unit() {
        assert_eq!(parse_age("45"), Ok(45_000_000));
        assert_eq!(parse_age("45s"), Ok(45_000_000));
        assert_eq!(parse_age("30m"), Ok(1_800_000_000));
        assert_eq!(parse_age("2h"), Ok(7_200_000_000));
        assert_eq!(parse_age("90d"), Ok(90 * 86_400_000_000));
        assert_eq!(parse_age("1w"), Ok(604_800_000_000));
        assert!(parse_age("3y").unwrap_err().contains("unknown unit"));
        assert!(parse_age("d").unwrap_err().contains("not an age"));
        assert!(parse_age("0d").unwrap_err().contains("above 0"));
    }

    #[test]
    fn times_are_rfc_3339_or_microseconds() {
        assert_eq!(parse_time("1764754200000000"), Ok(1_764_754_200_000_000));
        assert_eq!(
            parse_time("2025-12-03T09:30:00Z"),
            Ok(1_764_754_200_000_000)
        );
        assert_eq!(
            parse_time("2025-12-03T10:30:00.000001+01:00"),
            Ok(1_764_754_200_000_001)
        );
        let bad = parse_time("yesterday").unwrap_err();
        assert!(
            bad.contains("RFC 3339") && bad.contains("microseconds"),
            "{bad}"
        );
        assert!(parse_time("1969-12-31T23:59:59Z")
            .unwrap_err()
            .contains("before the Unix epoch"));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("reckon").chain(args.iter().copied()))
    }

    #[test]
    fn token_create_checks_its_grants_and_the_token_does_not_debug_print() {
        let e = parse(&["token", "create", "--name", "a", "--grant", "default:raed"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown role \"raed\""), "{e}");
        let cli = parse(&[
            "--token",
            "rkn_secret",
            "token",
            "create",
            "--name",
            "a",
            "--grant",
            "d:read",
        ])
        .unwrap();
        assert_eq!(cli.token.as_ref().map(Token::secret), Some("rkn_secret"));
        assert!(!format!("{cli:?}").contains("rkn_secret"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn append_single_and_batch_are_exclusive() {
        assert!(parse(&["append", "s", "--type", "t"]).is_ok());
        assert!(parse(&["append", "s", "--file", "-"]).is_ok());
        let e = parse(&["append", "s"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = parse(&["append", "s", "--file", "-", "--data", "{}"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        let cli = parse(&["append", "s", "--type", "t", "--expected", "-1"]).unwrap();
        match cli.command {
            Command::Append(a) => assert_eq!(a.expected, ExpectedVersion::NoStream),
            other => panic!("{other:?}"),
        }
        for (args, flag) in [
            (
                &["append", "s", "--type", "t", "--data", "{x"][..],
                "--data",
            ),
            (
                &["append", "s", "--type", "t", "--expected", "-3"][..],
                "--expected",
            ),
            (
                &["append", "s", "--type", "t", "--event-id", "nope"][..],
                "--event-id",
            ),
            (&["read-tags", "a", "--match", "some"][..], "--match"),
            (&["--timeout-ms", "0", "health"][..], "--timeout-ms"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{args:?}");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn tls_flags_go_together_and_leave_unsubscribe_key_alone() {
        let cli = parse(&[
            "--ca",
            "ca.crt",
            "--cert",
            "c.crt",
            "--key",
            "c.key",
            "unsubscribe",
            "K",
        ])
        .unwrap();
        let files = cli.tls_files().expect("--ca given");
        assert_eq!(
            files.identity,
            Some((PathBuf::from("c.crt"), PathBuf::from("c.key")))
        );
        match cli.command {
            Command::Unsubscribe(a) => assert_eq!(a.key, "K"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["--ca", "ca.crt", "health"])
            .unwrap()
            .tls_files()
            .is_some());
        assert!(parse(&["health"]).unwrap().tls_files().is_none());
        for args in [
            &["--cert", "c.crt", "--key", "c.key", "health"][..],
            &["--ca", "ca.crt", "--cert", "c.crt", "health"][..],
            &["--ca", "ca.crt", "--key", "c.key", "health"][..],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument, "{args:?}");
        }
    }

    #[test]
    fn gaters_split_on_commas() {
        let cli = parse(&["--gater", "a:1,b:2", "streams"]).unwrap();
        assert_eq!(cli.gater, ["a:1", "b:2"]);
    }

    #[test]
    fn lists_split_on_commas() {
        let cli = parse(&["read-types", "A,B", "--count", "3"]).unwrap();
        match cli.command {
            Command::ReadTypes(a) => {
                assert_eq!(a.types, ["A", "B"]);
                assert_eq!(a.count, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_from_spellings() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("17".parse(), Ok(StartFrom::Position(17)));
        assert!("-1".parse::<StartFrom>().is_err());
    }
}
