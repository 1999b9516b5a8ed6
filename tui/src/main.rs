//! `reckon-tui`: the operator's console for reckon-db (the live views arrive with the
//! console work; this binary already parses its command line).

use clap::Parser;

/// reckon-tui: the live terminal console for a reckon-db cluster.
///
/// Shows streams, subscriptions, leaders and telemetry, refreshed live, through a
/// gater.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Gater addresses, comma separated.
    #[arg(
        long,
        env = "RECKON_GATER",
        default_value = "127.0.0.1:7700",
        value_delimiter = ','
    )]
    gater: Vec<String>,
    /// Refresh period in milliseconds.
    #[arg(long, default_value_t = 1000)]
    refresh_ms: u64,
    /// Start an in-process 3-node cluster and gater with sample events.
    #[arg(long)]
    demo: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    eprintln!(
        "reckon-tui: the console is not built yet (gaters {:?}, refresh {} ms, demo {})",
        args.gater, args.refresh_ms, args.demo
    );
    std::process::ExitCode::from(1)
}
