//! Logs of the long-running binaries (`reckon-node`, `reckon-gater`): the `[log]`
//! config table they share, and [`init`], which installs the global `tracing`
//! subscriber it describes.
//!
//! ```text
//!   RUST_LOG set?  ──yes──► its directives, as given
//!        │no
//!        ▼
//!   log.level (+ "openraft=warn" unless it names openraft)
//!
//!   log.dir set?   ──yes──► <dir>/<binary>.<YYYY-MM-DD>.log, a new file each day (UTC),
//!        │no               the newest `log.retain_files` kept; written by a
//!        ▼                 background thread, flushed when the LogGuard drops
//!   stderr, compact, colours only on a terminal (journald gets plain text)
//! ```
//!
//! Nothing here knows about the node or the gater: each passes its own name as
//! the file prefix, so both can share one directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

/// The environment variable whose directives, when set, replace `log.level`.
pub const RUST_LOG: &str = "RUST_LOG";
/// `log.level` when none is configured.
pub const DEFAULT_LEVEL: &str = "info";
/// `log.retain_files` when none is configured: two weeks of daily files.
pub const DEFAULT_RETAIN_FILES: usize = 14;
/// Suffix of every log file: `<prefix>.<date>.log`.
pub const FILE_SUFFIX: &str = "log";
/// What is added to `log.level` unless it mentions openraft: openraft narrates
/// every election and snapshot at info.
pub const OPENRAFT_DIRECTIVE: &str = "openraft=warn";
/// The level names a bare directive in `log.level` may be (`TARGET=LEVEL` sets one
/// target's level).
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The `[log]` table: how much to log and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG`-style directives: a level (`info`), optionally followed by
    /// `TARGET=LEVEL` pairs (`info,reckon_db=debug`). `RUST_LOG`, when set,
    /// takes its place.
    pub level: String,
    /// Directory for daily log files; `None` logs to stderr. Created when
    /// missing; must be writable.
    pub dir: Option<PathBuf>,
    /// Daily files kept in `dir`, in files, the current one included; older
    /// ones are deleted as days roll over. At least 1.
    pub retain_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LEVEL.to_owned(),
            dir: None,
            retain_files: DEFAULT_RETAIN_FILES,
        }
    }
}

/// A `[log]` value that is out of range; each binary's config error wraps it
/// with the table's key prefix already in [`key`](Self::key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for key \"{key}\": {reason}")]
pub struct InvalidLogConfig {
    /// The key at fault, as written in the file: `log.level`, `log.retain_files`.
    pub key: &'static str,
    /// What is wrong and what would be right.
    pub reason: String,
}

impl LogConfig {
    /// Checks what deserialising cannot: `level` parses as filter directives
    /// whose bare words are level names, and `retain_files` is at least 1.
    pub fn validate(&self) -> Result<(), InvalidLogConfig> {
        let level = self.normalized_level();
        if level.is_empty() {
            return Err(InvalidLogConfig {
                key: "log.level",
                reason: "must not be empty; use a level such as \"info\"".to_owned(),
            });
        }
        for directive in level.split(',') {
            // A bare word is a target to EnvFilter, so a misspelt level would
            // silently log nothing at all: insist on TARGET=LEVEL for targets.
            if !directive.contains('=')
                && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
            {
                return Err(InvalidLogConfig {
                    key: "log.level",
                    reason: format!(
                        "{directive:?} is not a level; use one of {} or TARGET=LEVEL, \
                         e.g. \"info,reckon_db=debug\"",
                        LEVELS.join(", ")
                    ),
                });
            }
        }
        if let Err(e) = EnvFilter::try_new(&level) {
            return Err(InvalidLogConfig {
                key: "log.level",
                reason: format!(
                    "{level:?} is not a filter: {e}; expected a level or RUST_LOG-style \
                     directives, e.g. \"info,reckon_db=debug\""
                ),
            });
        }
        if self.retain_files == 0 {
            return Err(InvalidLogConfig {
                key: "log.retain_files",
                reason: "must be at least 1 file".to_owned(),
            });
        }
        Ok(())
    }

    /// The directives `level` stands for: `level`, plus [`OPENRAFT_DIRECTIVE`]
    /// unless it already says something about openraft.
    pub fn directives(&self) -> String {
        let level = self.normalized_level();
        if level.contains("openraft") {
            level
        } else {
            format!("{level},{OPENRAFT_DIRECTIVE}")
        }
    }

    /// `level` without blanks around or between directives, which `EnvFilter`
    /// would take as part of a name.
    fn normalized_level(&self) -> String {
        self.level
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why logging could not be set up. Every message names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogInitError {
    /// `RUST_LOG` holds something that is not filter directives.
    #[error("environment variable {RUST_LOG}={value:?} is not a filter: {reason}; unset it or fix it, e.g. RUST_LOG=info,reckon_db=debug")]
    RustLog {
        /// What `RUST_LOG` holds.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// `log.level` is not a filter (a config that went through
    /// [`LogConfig::validate`] never gives this).
    #[error(transparent)]
    Level(#[from] InvalidLogConfig),
    /// The log directory cannot be created or written.
    #[error("log directory {} (key \"log.dir\"): {reason}: {source}; create it writable for this user or change log.dir", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What was being done.
        reason: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A global subscriber is already installed in this process.
    #[error("logging is already set up in this process: {0}")]
    AlreadySet(String),
}

/// Keeps the file writer's background thread alive. Drop it last, at the very
/// end of `main`: dropping it flushes every line still queued.
#[must_use = "dropping the guard stops the log writer at once"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global `tracing` subscriber `config` describes (see the module
/// docs); `file_prefix` names the files, normally the binary's name.
///
/// Errors: `RUST_LOG` or `log.level` do not parse, the directory cannot be
/// created or written, or a subscriber is already installed.
pub fn init(config: &LogConfig, file_prefix: &str) -> Result<LogGuard, LogInitError> {
    let filter = filter(config)?;
    let Some(dir) = &config.dir else {
        let stderr = std::io::stderr();
        let ansi = stderr.is_terminal();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .compact()
            .try_init()
            .map_err(|e| LogInitError::AlreadySet(e.to_string()))?;
        return Ok(LogGuard { _writer: None });
    };
    let appender = rolling_appender(dir, file_prefix, config.retain_files)?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .map_err(|e| LogInitError::AlreadySet(e.to_string()))?;
    Ok(LogGuard {
        _writer: Some(guard),
    })
}

/// `RUST_LOG` when set and not blank, else `log.level` and its additions.
fn filter(config: &LogConfig) -> Result<EnvFilter, LogInitError> {
    match std::env::var(RUST_LOG) {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(&value).map_err(|e| LogInitError::RustLog {
                reason: e.to_string(),
                value,
            })
        }
        _ => {
            config.validate()?;
            EnvFilter::try_new(config.directives()).map_err(|e| {
                LogInitError::Level(InvalidLogConfig {
                    key: "log.level",
                    reason: e.to_string(),
                })
            })
        }
    }
}

/// A daily appender in `dir` (created when missing) that keeps `retain_files`.
fn rolling_appender(
    dir: &Path,
    prefix: &str,
    retain_files: usize,
) -> Result<RollingFileAppender, LogInitError> {
    let dir_error = |reason, source| LogInitError::Dir {
        dir: dir.to_path_buf(),
        reason,
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| dir_error("cannot create it", e))?;
    // Building opens today's file, so an unwritable directory fails here, at
    // start, and not silently on the first line.
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .filename_suffix(FILE_SUFFIX)
        .max_log_files(retain_files)
        .build(dir)
        .map_err(|e| dir_error("cannot open a log file in it", std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_level(level: &str) -> LogConfig {
        LogConfig {
            level: level.to_owned(),
            ..LogConfig::default()
        }
    }

    #[test]
    fn good_levels_pass() {
        for level in [
            "info",
            "DEBUG",
            "warn,reckon_db=debug",
            "info, reckon_node::raft=trace",
            "off",
            "error,openraft=info",
        ] {
            with_level(level).validate().expect(level);
        }
    }

    #[test]
    fn bad_levels_name_the_key() {
        for level in ["", " ", "verbose", "info,reckon_db=loud", "info,debg"] {
            let err = with_level(level).validate().expect_err(level);
            assert_eq!(err.key, "log.level", "{level:?}: {err}");
            assert!(
                err.to_string()
                    .starts_with("invalid value for key \"log.level\""),
                "{err}"
            );
        }
    }

    #[test]
    fn retain_files_is_at_least_one() {
        let config = LogConfig {
            retain_files: 0,
            ..LogConfig::default()
        };
        assert_eq!(config.validate().expect_err("0").key, "log.retain_files");
    }

    #[test]
    fn openraft_is_quiet_unless_asked() {
        assert_eq!(with_level("info").directives(), "info,openraft=warn");
        assert_eq!(
            with_level("info,openraft=debug").directives(),
            "info,openraft=debug"
        );
    }

    #[test]
    fn an_unwritable_dir_names_the_key() {
        let dir = std::env::temp_dir().join(format!("reckon-log-test-{}", std::process::id()));
        std::fs::write(&dir, b"a file, not a directory").expect("write");
        let err = rolling_appender(&dir.join("sub"), "x", 1).expect_err("not a directory");
        let _ = std::fs::remove_file(&dir);
        let message = err.to_string();
        assert!(message.contains("\"log.dir\""), "{message}");
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }
}
