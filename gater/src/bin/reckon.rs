//! `reckon`: the command line of reckon-db. Parses, runs [`reckon_gater::cli::run`],
//! prints the error as one line on stderr and exits with its code.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use reckon_gater::cli::{self, Cli, Exit};

fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_error(e),
    };
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

/// `--help` and `--version` print as clap prints them and exit 0; a usage error is
/// one `error: ...` line on stderr (its usage block left out: `--help` shows it)
/// and exit 2, like every other error.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    eprintln!("{}", one_line(&e.render().to_string()));
    Exit::Usage.into()
}

/// clap's message up to its usage block, on one line.
fn one_line(message: &str) -> String {
    let text = message
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if text.starts_with("error: ") {
        text
    } else {
        format!("error: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_usage_error_is_one_line_without_the_usage_block() {
        let clap = "error: the following required arguments were not provided:\n  \
                    --type <TYPE>\n  --file <FILE>\n\nUsage: reckon append <STREAM>\n\n\
                    For more information, try '--help'.\n";
        assert_eq!(
            one_line(clap),
            "error: the following required arguments were not provided: --type <TYPE> --file <FILE>"
        );
    }
}
