//! The `reckon` command line: parse, call the store through a gater, print.
//!
//! ```text
//!  argv ──clap──▶ args::Cli ──run──▶ Client (gater) ──▶ output::* ──▶ stdout
//!                                 └──▶ CliError ──exit()──▶ `error: ...` on stderr, exit code
//! ```
//!
//! - [`args`]: the commands and flags; malformed commands stop there with exit code 2.
//! - [`input`]: events from flags or a batch file.
//! - [`output`]: text and `--json` lines, pure functions of the results.
//! - [`error`]: what can fail and which exit code each failure gives.
//!
//! The binary (`src/bin/reckon.rs`) only parses, runs [`run`] and prints the error.

pub mod args;
pub mod error;
pub mod input;
pub mod output;

use std::io::Write;
use std::time::Duration;

use crate::certs::Written;
use crate::client::{Client, ClientError, StoreHandle};
use crate::subscription::SubscribeOptions;
use crate::tls::{Role, Tls};
use crate::types::{Direction, ScavengeAction, StoreError, StreamRetention};

pub use args::Cli;
use args::{CertsCommand, Command, SnapshotCommand};
pub use error::{CliError, Exit};

/// How many streams `reckon streams` asks for per call while paging.
pub const STREAMS_PAGE: u32 = 1000;

/// Runs one parsed command, writing its result to `out`.
///
/// Input that can be checked without the store (a batch file) is checked before any
/// connection is made, so a bad file fails fast and writes nothing.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    if let Command::Token(args::TokenCommand::Create { name, grants }) = &cli.command {
        // Made here, printed once; the gater only ever sees its hash.
        let token = crate::access::new_token();
        let entry = crate::access::TokenEntry {
            name: name.clone(),
            hash: crate::access::token_digest(&token),
            grants: grants.clone(),
        };
        let printed = serde_json::json!({ "token": token, "config": entry.to_toml() });
        line(out, printed.to_string())?;
        out.flush()?;
        return Ok(());
    }
    let json = cli.json;
    if let Command::Certs(c) = &cli.command {
        let written = certs(c)?;
        line(out, output::certs_written(&written, json))?;
        out.flush()?;
        return Ok(());
    }
    let tls = match cli.tls_files() {
        Some(files) => Some(Tls::client(&files)?),
        None => None,
    };
    let timeout = Duration::from_millis(cli.timeout_ms);
    let addrs: Vec<&str> = cli
        .gater
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(CliError::NoGater);
    }
    let token = cli.token.as_ref().map(|t| t.secret().to_string());
    let connect = || connect(&addrs, timeout, token.clone(), tls.clone());
    let store = |c: &Client| c.store(&cli.store);

    match cli.command {
        Command::Append(a) => {
            let events = match &a.file {
                Some(path) => {
                    let (name, text) = input::read_batch(path)?;
                    input::parse_batch(&name, &text)?
                }
                // clap requires --type without --file; were it missing, the store
                // would refuse the empty type by name.
                None => vec![input::single_event(
                    a.event_type.unwrap_or_default(),
                    a.data,
                    a.metadata,
                    a.tags,
                    a.event_id,
                )],
            };
            let s = store(&connect().await?);
            let r = s.append(&a.stream, a.expected, events).await?;
            line(out, output::appended(&r, json))?;
        }
        Command::Read(a) => {
            let (direction, default_from) = direction_of(a.backward);
            let s = store(&connect().await?);
            let from = a.from.unwrap_or(default_from);
            let events = match a.until {
                Some(until) => {
                    s.read_stream_until(&a.stream, until, from, a.count, direction)
                        .await?
                }
                None => s.read_stream(&a.stream, from, a.count, direction).await?,
            };
            for e in &events {
                line(out, output::event(e, json))?;
            }
        }
        Command::ReadAll(a) => {
            let (direction, default_from) = direction_of(a.backward);
            let s = store(&connect().await?);
            let mut from = a.from.unwrap_or(default_from);
            let mut within = 0..u64::MAX;
            if a.since.is_some() || a.until.is_some() {
                within = s
                    .positions_between(a.since.unwrap_or(0), a.until.unwrap_or(u64::MAX))
                    .await?;
                from = match direction {
                    Direction::Forward => from.max(within.start),
                    Direction::Backward => from.min(within.end.saturating_sub(1)),
                };
            }
            let mut events = if within.is_empty() {
                Vec::new()
            } else {
                s.read_all(from, a.count, direction).await?
            };
            events.retain(|e| within.contains(&e.position));
            for e in &events {
                line(out, output::event(e, json))?;
            }
        }
        Command::ReadTypes(a) => {
            let types: Vec<&str> = a.types.iter().map(String::as_str).collect();
            let s = store(&connect().await?);
            let events = s.read_by_event_types(&types, a.from, a.count).await?;
            for e in &events {
                line(out, output::event(e, json))?;
            }
        }
        Command::ReadTags(a) => {
            let tags: Vec<&str> = a.tags.iter().map(String::as_str).collect();
            let s = store(&connect().await?);
            let events = s.read_by_tags(&tags, a.matching, a.from, a.count).await?;
            for e in &events {
                line(out, output::event(e, json))?;
            }
        }
        Command::Version(a) => {
            let s = store(&connect().await?);
            let v = match a.at {
                Some(at) => s.version_at(&a.stream, at).await?,
                None => s.get_version(&a.stream).await?,
            };
            line(out, output::version(v, json))?;
        }
        Command::Exists(a) => {
            let b = store(&connect().await?).exists(&a.stream).await?;
            line(out, output::exists(b, json))?;
        }
        Command::Streams => {
            let s = store(&connect().await?);
            list_streams(&s, out, json).await?;
        }
        Command::Delete(a) => {
            store(&connect().await?)
                .delete(&a.stream, a.expected, a.hard)
                .await?;
            line(out, output::deleted(&a.stream, a.hard, json))?;
        }
        Command::Snapshot(sc) => {
            let s = store(&connect().await?);
            snapshot(&s, sc, out, json).await?;
        }
        Command::Health => {
            let h = connect().await?.health().await?;
            line(out, output::health(&h, json))?;
            // The report is printed either way; a store that cannot take writes
            // also makes the exit status say so, for scripts and probes.
            if let Some(reason) = output::unavailable(&h) {
                return Err(CliError::Unavailable(reason));
            }
        }
        Command::Cluster { action: None } => {
            let stores = connect().await?.cluster_status().await?;
            for st in &stores {
                line(out, output::cluster(st, json))?;
            }
        }
        Command::Cluster {
            action: Some(args::ClusterCommand::TransferLeader { node_id }),
        } => {
            store(&connect().await?).transfer_leader(node_id).await?;
            if json {
                line(out, format!("{{\"leader\":{node_id}}}"))?;
            } else {
                line(out, format!("node {node_id} leads"))?;
            }
        }
        Command::Cluster {
            action: Some(args::ClusterCommand::RemoveNode { node_id }),
        } => {
            store(&connect().await?).remove_node(node_id).await?;
            if json {
                line(out, format!("{{\"removed\":{node_id}}}"))?;
            } else {
                line(out, format!("removed node {node_id}"))?;
            }
        }
        Command::Subscribe(a) => {
            let options = SubscribeOptions {
                start_from: a.from,
                pool_size: a.pool,
            };
            let info = store(&connect().await?)
                .subscribe(a.kind, &a.selector, &a.name, options)
                .await?;
            if json {
                line(out, output::subscription(&info, true))?;
            } else {
                line(out, info.key.clone())?;
            }
        }
        Command::Subscriptions => {
            let mut subs = store(&connect().await?).subscriptions().await?;
            subs.sort_by(|a, b| b.lag().cmp(&a.lag()).then(a.key.cmp(&b.key)));
            for s in &subs {
                line(out, output::subscription(s, json))?;
            }
        }
        Command::Unsubscribe(a) => {
            store(&connect().await?).unsubscribe(&a.key).await?;
            if json {
                line(
                    out,
                    serde_json::json!({ "unsubscribed": a.key }).to_string(),
                )?;
            } else {
                line(out, format!("unsubscribed {}", a.key))?;
            }
        }
        Command::Tail(a) => {
            let s = store(&connect().await?);
            let info = match s
                .subscribe(a.kind, &a.selector, &a.name, SubscribeOptions::default())
                .await
            {
                Ok(info) => info,
                // Creating needs admin; a `read` consumer follows the subscription
                // an admin created, when there is one.
                Err(denied @ ClientError::Store(StoreError::PermissionDenied { .. })) => s
                    .subscriptions()
                    .await?
                    .into_iter()
                    .find(|i| i.kind == a.kind && i.selector == a.selector && i.name == a.name)
                    .ok_or(denied)?,
                Err(e) => return Err(e.into()),
            };
            let consumer = format!("reckon-tail-{}", std::process::id());
            let mut sub = s.subscriber(&info.key, &consumer);
            let mut printed = 0u64;
            'outer: while a.max.is_none_or(|m| printed < m) {
                let batch = sub.next_batch().await?;
                for e in batch {
                    line(out, output::event(&e, json))?;
                    out.flush()?;
                    if a.ack {
                        sub.ack(e.position).await?;
                    }
                    printed += 1;
                    if a.max.is_some_and(|m| printed >= m) {
                        break 'outer;
                    }
                }
            }
        }
        Command::Stats => {
            for st in connect().await?.stats().await? {
                line(out, output::stats(&st, json))?;
            }
        }
        Command::Retention(a) => {
            let s = store(&connect().await?);
            let given = a.max_age.is_some() || a.max_count.is_some() || a.truncate_before.is_some();
            if given || a.clear {
                let r = StreamRetention {
                    max_age_us: a.max_age,
                    max_count: a.max_count,
                    truncate_before: a.truncate_before,
                };
                s.set_retention(&a.stream, r).await?;
            }
            let r = s.retention(&a.stream).await?;
            line(out, output::retention(&a.stream, &r, json))?;
        }
        Command::Scavenge { action } => {
            let action = match action {
                args::ScavengeArg::Start => ScavengeAction::Start,
                args::ScavengeArg::Status => ScavengeAction::Status,
                args::ScavengeArg::Stop => ScavengeAction::Stop,
            };
            let status = store(&connect().await?).scavenge(action).await?;
            line(out, output::scavenge(&status, json))?;
        }
        Command::Backup(a) => {
            let client = connect().await?;
            let stores = if a.all_stores {
                let mut names = client.list_stores().await?;
                names.sort();
                std::fs::create_dir_all(&a.out).map_err(|source| {
                    crate::backup::BackupError::Io {
                        path: a.out.clone(),
                        source,
                    }
                })?;
                names
                    .into_iter()
                    .map(|n| {
                        let file = a.out.join(format!("{n}.rbk"));
                        (n, file)
                    })
                    .collect()
            } else {
                vec![(cli.store.clone(), a.out.clone())]
            };
            for (name, file) in stores {
                let info = backup(&client.store(&name), &file, a.force).await?;
                line(out, output::backup_done(&info, &file, json))?;
                out.flush()?;
            }
        }
        Command::Token(_) => unreachable!("`token` is answered before any connection"),
        Command::Certs(_) => unreachable!("handled before any connection"),
    }
    out.flush()?;
    Ok(())
}

/// How often `backup` prints its progress on stderr: a store backed up faster than
/// this prints none.
pub const BACKUP_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Backs one store up into `file`, printing progress on stderr every
/// [`BACKUP_PROGRESS_EVERY`].
async fn backup(
    s: &StoreHandle,
    file: &std::path::Path,
    force: bool,
) -> Result<crate::backup::BackupInfo, CliError> {
    let mut last = std::time::Instant::now();
    let name = s.name().to_string();
    let mut progress = |p: &crate::backup::BackupProgress| {
        if last.elapsed() >= BACKUP_PROGRESS_EVERY {
            last = std::time::Instant::now();
            eprintln!("{}", output::backup_progress(&name, p));
        }
    };
    Ok(s.backup(file, force, &mut progress).await?)
}

/// Connects to the first gater that answers, within `timeout` in all (the client's own
/// connect deadline is longer than a user may have asked for).
async fn connect(
    addrs: &[&str],
    timeout: Duration,
    token: Option<String>,
    tls: Option<Tls>,
) -> Result<Client, CliError> {
    let mut builder = Client::builder(addrs).token(token.unwrap_or_default());
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    match tokio::time::timeout(timeout, builder.connect()).await {
        Ok(c) => Ok(c?.with_timeout(timeout)),
        Err(_) => Err(ClientError::Timeout(timeout).into()),
    }
}

/// Runs one `certs` command.
fn certs(command: &CertsCommand) -> Result<Written, CliError> {
    let written = match command {
        CertsCommand::Ca { out } => crate::certs::make_ca(&out.dir, out.force)?,
        CertsCommand::Node { out, node_id, host } => {
            crate::certs::make_leaf(&out.dir, &Role::Node(*node_id), host, out.force)?
        }
        CertsCommand::Gater { out, name, host } => {
            crate::certs::make_leaf(&out.dir, &Role::Gater(name.clone()), host, out.force)?
        }
        CertsCommand::Client { out, name } => {
            crate::certs::make_leaf(&out.dir, &Role::Client(name.clone()), &[], out.force)?
        }
    };
    Ok(written)
}

/// The direction of a read, and where it starts when `--from` is not given: the
/// first event forward, the last backward.
fn direction_of(backward: bool) -> (Direction, u64) {
    if backward {
        (Direction::Backward, u64::MAX)
    } else {
        (Direction::Forward, 0)
    }
}

fn line(out: &mut dyn Write, s: String) -> Result<(), CliError> {
    writeln!(out, "{s}")?;
    Ok(())
}

/// Prints every stream, paging with [`STREAMS_PAGE`] until a page comes back empty.
///
/// Each page must start after the last id of the one before; a gater that does not
/// advance would otherwise make this loop forever.
async fn list_streams(s: &StoreHandle, out: &mut dyn Write, json: bool) -> Result<(), CliError> {
    let mut after: Option<String> = None;
    loop {
        let page = s.list_streams(after.as_deref(), STREAMS_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        if let Some(a) = &after {
            if last.stream_id.as_str() <= a.as_str() {
                return Err(CliError::Protocol(format!(
                    "list_streams after {a:?} returned {:?}, which does not advance",
                    last.stream_id
                )));
            }
        }
        for st in &page {
            line(out, output::stream(st, json))?;
        }
        after = Some(last.stream_id.clone());
    }
}

async fn snapshot(
    s: &StoreHandle,
    command: SnapshotCommand,
    out: &mut dyn Write,
    json: bool,
) -> Result<(), CliError> {
    match command {
        SnapshotCommand::Save {
            stream,
            version,
            data,
            metadata,
        } => {
            let data = data.to_string().into_bytes();
            let metadata = metadata.map(|m| m.to_string().into_bytes());
            s.save_snapshot(&stream, version, data, metadata.unwrap_or_default())
                .await?;
            line(out, output::snapshot_saved(&stream, version, json))
        }
        SnapshotCommand::Load { stream, version } => {
            let snap = s.load_snapshot(&stream, version).await?;
            line(out, output::snapshot(&snap, json))
        }
        SnapshotCommand::List { stream } => {
            for snap in &s.list_snapshots(&stream).await? {
                line(out, output::snapshot(snap, json))?;
            }
            Ok(())
        }
        SnapshotCommand::Delete { stream, version } => {
            s.delete_snapshot(&stream, version).await?;
            line(out, output::snapshot_deleted(&stream, version, json))
        }
    }
}
