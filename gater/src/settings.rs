//! What every binary's configuration shares: the error that names the key (and the
//! environment variable or file the bad value came from), and the check of the
//! `--config` file.
//!
//! Each binary layers built-in defaults, the TOML file given with `--config`, its
//! environment variables (`RECKON_NODE_`, `RECKON_GATER_`, `RECKON_TUI_`) and its
//! flags with figment; a failure anywhere becomes a [`ConfigError`] whose message a
//! user can act on: `config key "discovery.port": invalid type: found string
//! "x", expected u16 (from environment variable RECKON_NODE_DISCOVERY__PORT)`.

use std::fmt;
use std::path::{Path, PathBuf};

/// How a binary's environment variables are named, to say which one held a bad value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvNaming {
    /// The prefix: `RECKON_NODE_`.
    pub prefix: &'static str,
    /// What joins nested keys in a variable's name (`__`), when they may be nested.
    pub nesting: &'static str,
    /// A variable read by an environment layer without the prefix (the console
    /// reads `RECKON_GATER`), named when such a layer holds the bad value.
    pub unprefixed: Option<&'static str>,
}

impl EnvNaming {
    /// The variable that sets `key`, for an error from the environment layer `layer`
    /// (figment's name for it).
    fn variable(&self, layer: &str, key: Option<&str>) -> String {
        match (self.unprefixed, key) {
            (Some(plain), _) if !layer.contains(self.prefix) => plain.to_string(),
            (_, Some(key)) => format!(
                "{}{}",
                self.prefix,
                key.replace('.', self.nesting).to_ascii_uppercase()
            ),
            (_, None) => format!("{}*", self.prefix),
        }
    }
}

/// Why a configuration could not be loaded. Every message names the key or the file
/// at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key is unknown or has the wrong type, or a source does not parse. Figment's
    /// error is kept whole (all of its errors, each with its key path and source);
    /// `Display` shows every one on its own line as `config key "KEY": WHAT (from
    /// environment variable VAR)` or `(in TOML file PATH)`.
    #[error("{}", FigmentDisplay(.error, .env))]
    Figment {
        /// What figment said.
        error: Box<figment::Error>,
        /// How the binary's environment variables are named.
        env: EnvNaming,
    },
    /// The file given with `--config` cannot be read.
    #[error("config file {path:?} (from --config): {reason}")]
    File {
        /// The path as given.
        path: PathBuf,
        /// What went wrong, e.g. "No such file or directory (os error 2)".
        reason: String,
    },
    /// A value has the right type but is out of range or inconsistent with another
    /// key.
    #[error("invalid value for key \"{key}\": {reason}")]
    Invalid {
        /// The key as written in the file, with an index for list items:
        /// `stores[1]`, `discovery.secret`.
        key: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// The config could not be written as TOML (`--print-config`).
    #[error("cannot print the config as TOML: {0}")]
    Print(toml::ser::Error),
}

impl ConfigError {
    /// A figment failure of a binary whose variables are named by `env`.
    pub fn figment(error: figment::Error, env: EnvNaming) -> Self {
        ConfigError::Figment {
            error: Box::new(error),
            env,
        }
    }

    /// An out-of-range value of `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The key at fault, as written in the file, when the error is about one key
    /// (the first one, for several figment errors).
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Figment { error, .. } => figment_key(error),
            ConfigError::Invalid { key, .. } => Some(key.clone()),
            ConfigError::File { .. } | ConfigError::Print(_) => None,
        }
    }
}

/// Why a server listening on `listen` must not start: it would serve in clear text
/// (`has_tls` false) on an address other than loopback without `insecure = true`.
/// The reason names both keys that would fix it; `None` when it may start.
pub fn insecure_listen(
    listen: std::net::SocketAddr,
    has_tls: bool,
    insecure: bool,
) -> Option<String> {
    if has_tls || insecure || listen.ip().is_loopback() {
        return None;
    }
    Some(format!(
        "listen {listen} is not a loopback address and [tls] is not set: set [tls] ca, cert \
         and key (make them with `reckon certs`), or set insecure = true to serve in clear \
         text anyway"
    ))
}

/// Checks that the `--config` file exists and is a regular file, so that a typo in
/// its name is not read as "no file, all defaults".
pub fn check_readable_file(path: &Path) -> Result<(), ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    if !metadata.is_file() {
        return Err(file_error("not a regular file".to_owned()));
    }
    Ok(())
}

/// The dotted key an error is about, ending with an unknown field's own name.
fn figment_key(error: &figment::Error) -> Option<String> {
    let mut parts = error.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        if parts.last() != Some(field) {
            parts.push(field.clone());
        }
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// Shows each of figment's errors on its own line, each naming its key and where the
/// value came from.
struct FigmentDisplay<'a>(&'a figment::Error, &'a EnvNaming);

impl fmt::Display for FigmentDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.clone().into_iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            // A parse error's message may end in a newline; the source follows it.
            let kind = error.kind.to_string();
            let kind = kind.trim_end();
            let key = figment_key(&error);
            match &key {
                Some(key) => write!(f, "config key \"{key}\": {kind}")?,
                None => write!(f, "config: {kind}")?,
            }
            if let Some(profile) = error.profile.as_ref().filter(|p| **p != "default") {
                write!(f, " (profile {profile})")?;
            }
            let Some(metadata) = &error.metadata else {
                continue;
            };
            if metadata.name.ends_with("environment variable(s)") {
                let var = self.1.variable(&metadata.name, key.as_deref());
                write!(f, " (from environment variable {var})")?;
                continue;
            }
            match &metadata.source {
                Some(figment::Source::File(path)) => {
                    write!(f, " (in {} {})", metadata.name, path.display())?
                }
                _ => write!(f, " (in {})", metadata.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: EnvNaming = EnvNaming {
        prefix: "RECKON_NODE_",
        nesting: "__",
        unprefixed: None,
    };

    #[test]
    fn variables_are_named_from_the_key() {
        assert_eq!(
            NODE.variable(
                "`RECKON_NODE_` environment variable(s)",
                Some("discovery.port")
            ),
            "RECKON_NODE_DISCOVERY__PORT"
        );
        assert_eq!(NODE.variable("x", None), "RECKON_NODE_*");
        let tui = EnvNaming {
            prefix: "RECKON_TUI_",
            nesting: "__",
            unprefixed: Some("RECKON_GATER"),
        };
        assert_eq!(
            tui.variable("environment variable(s)", Some("gaters")),
            "RECKON_GATER"
        );
        assert_eq!(
            tui.variable("`RECKON_TUI_` environment variable(s)", Some("refresh_ms")),
            "RECKON_TUI_REFRESH_MS"
        );
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let e = check_readable_file(Path::new("/nonexistent/reckon.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config file \"/nonexistent/reckon.toml\" (from --config): "),
            "{e}"
        );
        assert_eq!(e.key(), None);
    }
}
