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
