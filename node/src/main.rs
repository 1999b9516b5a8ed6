//! `reckon-node`: parse flags, load config, bind the listener and run the node
//! ([`reckon_node::run`]) under the start-up the gater shares
//! ([`reckon_gater::startup`]).

use std::process::ExitCode;

use clap::Parser;
use reckon_gater::startup;
use reckon_node::config::{self, NodeArgs};
use reckon_node::run::{run, EmbeddedKurrent, RunOptions};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let args = NodeArgs::parse();
    let config = match config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(startup::EXIT_USAGE);
        }
    };
    if let Some(config::NodeCommand::Restore(r)) = &args.command {
        return restore(&config, r);
    }
    if args.print_config {
        return match config.masked_toml() {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let log = config.log.clone();
    startup::run_binary("reckon-node", &log, LOG_FILE_PREFIX, || start(config, args))
}

/// `reckon-node restore`: seeds the configured data directory from backups for the
/// configured node, and says what it holds and how to start it.
fn restore(config: &config::NodeConfig, args: &config::RestoreArgs) -> ExitCode {
    use reckon_node::backup::restore::{backup_files, restore, RestoreTarget};
    let target = RestoreTarget {
        data_dir: config.data_dir.clone(),
        node_id: config.node_id,
        advertise: config.advertise_addr(),
    };
    let restored = backup_files(&args.from).and_then(|files| restore(&files, &target));
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for r in &restored {
        let h = &r.header;
        println!(
            "restored store {} from {} into {}: {} events, every position below {} (Raft \
             entry {} of term {}); node {} at {} is its only voter",
            h.store,
            r.from.display(),
            target.data_dir.display(),
            h.events,
            h.next_position,
            h.last_applied.index,
            h.last_applied.term,
            target.node_id,
            target.advertise
        );
        if !config.stores.contains(&h.store) {
            eprintln!(
                "note: store {} is not among the stores this node is configured to serve \
                 ({}): start it with --store {} (or add it to `stores`)",
                h.store,
                config.stores.join(", "),
                h.store
            );
        }
    }
    println!(
        "start the node with the same node id and address: alone (mode single), or as the \
         first member of a new cluster (mode cluster) that other nodes join"
    );
    ExitCode::SUCCESS
}

/// Log files are `reckon-node.<date>.log`.
const LOG_FILE_PREFIX: &str = "reckon-node";

/// Where `--dev` runs its embedded gater unless told otherwise.
const DEV_GATER_LISTEN: &str = "127.0.0.1:7700";

/// Where `--dev` serves its KurrentDB front door unless told otherwise.
const DEV_KURRENT_LISTEN: &str = "127.0.0.1:2113";

async fn start(mut config: config::NodeConfig, args: NodeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key \"listen\"): {e}", config.listen))?;
    if config.advertise.is_none() {
        // With port 0 the OS chose the port: peers and gaters must dial that one.
        config.advertise = Some(listener.local_addr()?.to_string());
    }
    let options = RunOptions {
        embedded_gater: args.dev.then(|| {
            args.dev_gater_listen
                .map_or_else(|| DEV_GATER_LISTEN.to_string(), |a| a.to_string())
        }),
        embedded_kurrent: args.dev.then(|| match args.dev_kurrent_listen {
            Some(addr) => EmbeddedKurrent {
                listen: addr.to_string(),
                required: true,
            },
            None => EmbeddedKurrent {
                listen: DEV_KURRENT_LISTEN.to_string(),
                required: false,
            },
        }),
        announce: true,
        notify: true,
        started: None,
    };
    run(config, listener, options, startup::stop_signal()).await
}
