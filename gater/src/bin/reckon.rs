//! `reckon`: the command line of reckon-db. Parses, runs [`reckon_gater::cli::run`],
//! prints the error as one line on stderr and exits with its code.

use std::process::ExitCode;

use clap::Parser;
use reckon_gater::cli::{self, Cli, Exit};

fn main() -> ExitCode {
    // Usage errors print clap's message and exit 2; --help and --version exit 0.
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Other.into();
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match runtime.block_on(cli::run(args, &mut out)) {
        Ok(()) => Exit::Ok.into(),
        // A reader that went away (`reckon read-all | head`) is not an error.
        Err(e) if e.is_broken_pipe() => Exit::Ok.into(),
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            eprintln!("error: {message}");
            e.exit().into()
        }
    }
}
