//! What `reckon` can fail with, and the exit code each failure gives.
//!
//! The exit codes are part of the interface scripts rely on (the README lists them):
//! 0 ok, 1 other error, 2 usage, 3 wrong expected version, 4 not found,
//! 5 unavailable, 6 refused. Every store error kind is mapped here, in one exhaustive match, so
//! a new kind cannot reach users without someone deciding its code.

use std::io;

use crate::client::ClientError;
use crate::types::StoreError;

/// The process exit status of `reckon`, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Any failure without a more specific code.
    Other = 1,
    /// The command was malformed or the store refused the input as invalid.
    Usage = 2,
    /// The stream was not at the expected version; nothing was written.
    WrongExpectedVersion = 3,
    /// The stream, snapshot or subscription does not exist.
    NotFound = 4,
    /// No answer could be had now: no gater, no worker, no leader, or the deadline
    /// passed. Trying again later may succeed.
    Unavailable = 5,
    /// The gater refused the caller: no token or one it does not accept
    /// (`Unauthenticated`), or a role missing on the store (`PermissionDenied`).
    /// Nothing was done.
    Refused = 6,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Everything `reckon` can fail with after its arguments parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The store answered with an error, or no gater answered in time.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `--gater` (or `$RECKON_GATER`) holds no address.
    #[error("--gater names no address; give HOST:PORT[,HOST:PORT...] or set RECKON_GATER")]
    NoGater,
    /// A line of a batch file is not an event.
    #[error(
        "line {line} of {input} is not an event: {}; each line must be one JSON object \
         like {{\"event_type\":\"placed\",\"data\":{{\"total\":5}},\"metadata\":{{}},\
         \"tags\":[\"eu\"],\"event_id\":\"<uuid>\"}} where only event_type is required",
        without_location(source)
    )]
    BadBatchLine {
        /// The file name, or `stdin`.
        input: String,
        /// 1-based line number.
        line: usize,
        /// Why the line did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The batch input is larger than the CLI accepts.
    #[error("{input} is larger than {max_bytes} bytes; split the batch into smaller appends")]
    BatchTooLarge {
        /// The file name, or `stdin`.
        input: String,
        /// The limit.
        max_bytes: u64,
    },
    /// The batch input could not be read.
    #[error("cannot read {input}: {source}")]
    ReadInput {
        /// The file name, or `stdin`.
        input: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `health`: a store has no leader, or no store has a worker. The report is
    /// printed before this error.
    #[error("Unavailable: {0}")]
    Unavailable(String),
    /// The gater answered something that breaks its contract.
    #[error("Internal: {0}")]
    Protocol(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// The TLS files given (`--ca`, `--cert`, `--key`) cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// `certs` could not make a certificate.
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    /// `backup` did not make its file (none is left behind). Boxed: it is the
    /// largest error, and every `Result` of the CLI carries this enum.
    #[error(transparent)]
    Backup(Box<crate::backup::BackupError>),
}

impl From<crate::backup::BackupError> for CliError {
    fn from(e: crate::backup::BackupError) -> Self {
        CliError::Backup(Box::new(e))
    }
}

impl CliError {
    /// The exit status this error gives.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Client(ClientError::Store(e)) => store_exit(e),
            CliError::Client(ClientError::Transport(_) | ClientError::Timeout(_)) => {
                Exit::Unavailable
            }
            CliError::Unavailable(_) => Exit::Unavailable,
            CliError::Client(ClientError::NoGaters) | CliError::NoGater => Exit::Usage,
            CliError::BadBatchLine { .. } | CliError::BatchTooLarge { .. } => Exit::Usage,
            CliError::ReadInput { .. } | CliError::Tls(_) => Exit::Usage,
            CliError::Certs(crate::certs::CertError::Io { .. }) => Exit::Other,
            CliError::Certs(_) => Exit::Usage,
            CliError::Protocol(_) | CliError::Output(_) => Exit::Other,
            CliError::Client(ClientError::Protocol { .. } | ClientError::Undecodable(_)) => {
                Exit::Other
            }
            CliError::Backup(e) => backup_exit(e),
        }
    }

    /// Whether this is a closed stdout (`reckon read-all | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// The exit status of a failed backup.
fn backup_exit(e: &crate::backup::BackupError) -> Exit {
    use crate::backup::BackupError as B;
    match e {
        B::Client(c) => CliError::Client(c.clone()).exit(),
        B::Exists { .. } => Exit::Usage,
        B::Gone { .. } => Exit::Unavailable,
        B::Io { .. } | B::Checksum { .. } | B::Short { .. } => Exit::Other,
    }
}

/// The exit status of a store error.
pub fn store_exit(e: &StoreError) -> Exit {
    match e {
        StoreError::WrongExpectedVersion { .. } => Exit::WrongExpectedVersion,
        StoreError::StreamNotFound { .. } | StoreError::NotFound { .. } => Exit::NotFound,
        StoreError::InvalidInput { .. } => Exit::Usage,
        StoreError::NotLeader { .. }
        | StoreError::Unavailable { .. }
        | StoreError::NoWorkers { .. }
        | StoreError::UnknownStore { .. }
        | StoreError::Timeout { .. } => Exit::Unavailable,
        StoreError::StreamDeleted { .. }
        | StoreError::DuplicateEventId { .. }
        | StoreError::Internal { .. } => Exit::Other,
        StoreError::Unauthenticated { .. } | StoreError::PermissionDenied { .. } => Exit::Refused,
    }
}

/// A serde_json message without its " at line 1 column 7" tail, which would count
/// lines within one batch line; the column is kept in a form that reads right.
fn without_location(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) if e.column() > 0 => format!("{} (column {})", &msg[..i], e.column()),
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ExpectedVersion;

    #[test]
    fn store_errors_map_to_their_exit_codes() {
        let cases = [
            (
                StoreError::WrongExpectedVersion {
                    expected: ExpectedVersion::Exact(5),
                    current: Some(0),
                },
                3,
            ),
            (
                StoreError::StreamNotFound {
                    stream_id: "s".into(),
                },
                4,
            ),
            (StoreError::NotFound { what: "x".into() }, 4),
            (StoreError::invalid("event_type", "empty"), 2),
            (
                StoreError::StreamDeleted {
                    stream_id: "s".into(),
                },
                1,
            ),
            (StoreError::NoWorkers { store: "s".into() }, 5),
            (
                StoreError::NotLeader {
                    leader: None,
                    leader_addr: None,
                },
                5,
            ),
            (StoreError::Timeout { what: "x".into() }, 5),
            (
                StoreError::Internal {
                    message: "x".into(),
                },
                1,
            ),
            (StoreError::Unauthenticated { reason: "x".into() }, 6),
            (
                StoreError::PermissionDenied {
                    principal: "p".into(),
                    store: "s".into(),
                    action: "append".into(),
                    needs: "write".into(),
                },
                6,
            ),
        ];
        for (e, code) in cases {
            let cli = CliError::from(ClientError::Store(e.clone()));
            assert_eq!(cli.exit() as u8, code, "{e:?}");
        }
    }

    #[test]
    fn transport_faults_are_unavailable() {
        let e = CliError::from(ClientError::Transport("refused".into()));
        assert_eq!(e.exit(), Exit::Unavailable);
        assert!(e.to_string().starts_with("Unavailable: "), "{e}");
    }

    #[test]
    fn store_errors_display_as_kind_and_detail() {
        let e = CliError::from(ClientError::Store(StoreError::WrongExpectedVersion {
            expected: ExpectedVersion::Exact(5),
            current: Some(0),
        }));
        assert_eq!(e.to_string(), "WrongExpectedVersion: expected 5, current 0");
    }

    #[test]
    fn batch_line_errors_name_the_line_not_the_inner_location() {
        let source = serde_json::from_str::<serde_json::Value>("{x").unwrap_err();
        let e = CliError::BadBatchLine {
            input: "events.jsonl".into(),
            line: 3,
            source,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "line 3 of events.jsonl is not an event: key must be a string (column 2);"
            ),
            "{msg}"
        );
        assert!(!msg.contains("at line"), "{msg}");
        assert_eq!(e.exit(), Exit::Usage);
    }
}
