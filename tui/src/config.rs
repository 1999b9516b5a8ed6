//! The console's configuration: what `reckon-tui` reads at start-up, and from where.
//!
//! [`load`] layers five sources, each overriding the one before:
//!
//! ```text
//!   built-in defaults      TuiConfig::default(): the gater on 127.0.0.1:7700
//! < TOML file              only when --config FILE is given; it must exist
//! < RECKON_GATER           comma-separated gater addresses, shared with the
//!                          `reckon` CLI; sets `gaters`
//! < environment            RECKON_TUI_<KEY> (RECKON_TUI_REFRESH_MS=500)
//! < command-line flags     only the flags given
//! ```
//!
//! then [`TuiConfig::validate`] checks the ranges. Every error names the key as it is
//! spelled in the file. The console never logs: it owns the terminal while it draws,
//! and reports errors in its own panels.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
pub use reckon_gater::settings::ConfigError;
use reckon_gater::settings::{check_readable_file, EnvNaming};
use serde::{Deserialize, Deserializer, Serialize};

/// Prefix of the environment variables that set config keys.
pub const ENV_PREFIX: &str = "RECKON_TUI_";
/// The environment variable the `reckon` CLI reads its gaters from; it sets
/// `gaters` here too, below `RECKON_TUI_GATERS`.
pub const GATER_ENV: &str = "RECKON_GATER";
/// The environment variable the `reckon` CLI reads its token from; it sets `token`
/// here too, below `RECKON_TUI_TOKEN`.
pub const TOKEN_ENV: &str = "RECKON_TOKEN";
/// The gater the console talks to when none is configured.
pub const DEFAULT_GATER: &str = "127.0.0.1:7700";
/// Default refresh period, in milliseconds.
pub const DEFAULT_REFRESH_MS: u64 = 1000;
/// Shortest refresh period accepted, in milliseconds: faster only loads the gater.
pub const REFRESH_MS_MIN: u64 = 100;
/// Longest refresh period accepted, in milliseconds: slower is no longer live.
pub const REFRESH_MS_MAX: u64 = 60_000;

/// Everything the console is configured with; see `config/tui.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuiConfig {
    /// `HOST:PORT` of the gaters, tried in order; at least one. A list, or one
    /// string of comma-separated addresses (as `RECKON_GATER` holds). `--demo`
    /// ignores it.
    #[serde(deserialize_with = "addresses")]
    pub gaters: Vec<String>,
    /// How often the panels are refreshed, in milliseconds; from
    /// [`REFRESH_MS_MIN`] to [`REFRESH_MS_MAX`].
    pub refresh_ms: u64,
    /// Bearer token for gaters that require one (also `RECKON_TOKEN`, as for the
    /// `reckon` CLI, or `--token`). `--print-config` masks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for TuiConfig {
    fn default() -> Self {
        TuiConfig {
            gaters: vec![DEFAULT_GATER.to_owned()],
            refresh_ms: DEFAULT_REFRESH_MS,
            token: None,
        }
    }
}

/// A list of addresses, or one string of them separated by commas.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrList {
        Joined(String),
        List(Vec<String>),
    }
    Ok(match OneOrList::deserialize(d)? {
        OneOrList::Joined(s) => s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrList::List(list) => list,
    })
}

impl TuiConfig {
    /// Checks what deserialising cannot; the first problem is returned as
    /// [`ConfigError::Invalid`] naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gaters.is_empty() {
            return Err(invalid(
                "gaters",
                format!("must list at least one gater, e.g. [\"{DEFAULT_GATER}\"]"),
            ));
        }
        for (i, gater) in self.gaters.iter().enumerate() {
            let port = gater
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                return Err(invalid(
                    format!("gaters[{i}]"),
                    format!("{gater:?} is not HOST:PORT, e.g. \"{DEFAULT_GATER}\""),
                ));
            }
        }
        if !(REFRESH_MS_MIN..=REFRESH_MS_MAX).contains(&self.refresh_ms) {
            return Err(invalid(
                "refresh_ms",
                format!(
                    "{} ms is out of range; use {REFRESH_MS_MIN} to {REFRESH_MS_MAX}",
                    self.refresh_ms
                ),
            ));
        }
        Ok(())
    }

    /// The effective config as TOML: what `--print-config` prints.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let mut masked = self.clone();
        if masked.token.is_some() {
            masked.token = Some("***".into());
        }
        toml::to_string(&masked).map_err(ConfigError::Print)
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, reason)
}

/// Command line of `reckon-tui`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "reckon-tui",
    version,
    about = "reckon-tui: the live terminal console for a reckon-db cluster.\n\n\
             Shows streams, subscriptions, leaders and telemetry, refreshed live, \
             through a gater.",
    after_help = "Config layers, lowest first: built-in defaults, the --config file, \
                  RECKON_GATER (comma-separated gaters, as for the reckon CLI), \
                  RECKON_TUI_<KEY> environment variables, then these flags."
)]
pub struct TuiArgs {
    /// TOML config file (see config/tui.toml); it must exist when given.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Gater addresses, comma separated (key `gaters`, default 127.0.0.1:7700).
    #[arg(long = "gater", value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    pub gaters: Vec<String>,
    /// Refresh period in milliseconds (key `refresh_ms`, default 1000).
    #[arg(long, value_name = "N")]
    pub refresh_ms: Option<u64>,
    /// Bearer token for the gater (key `token`; also RECKON_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Start an in-process 3-node cluster and gater with sample events; the
    /// configured gaters are not used.
    #[arg(long)]
    pub demo: bool,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The CA that signed the gaters' certificates: dial them with TLS.
    #[arg(long, value_name = "FILE", env = "RECKON_CA")]
    pub ca: Option<PathBuf>,
    /// A client certificate to present to the gaters (with --key and --ca).
    #[arg(long, value_name = "FILE", env = "RECKON_CERT", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, value_name = "FILE", env = "RECKON_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl TuiArgs {
    /// The TLS files the flags name, when `--ca` is given.
    pub fn tls_files(&self) -> Option<reckon_gater::tls::ClientTlsFiles> {
        Some(reckon_gater::tls::ClientTlsFiles {
            ca: self.ca.clone()?,
            identity: self.cert.clone().zip(self.key.clone()),
        })
    }
}

/// The flag layer: only the keys whose flags were given.
#[derive(Debug, Default, Serialize)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    gaters: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// Builds the effective config from the layers in the module docs, then validates
/// it.
///
/// Errors: the file given cannot be read ([`ConfigError::File`]); a key is unknown
/// or has the wrong type ([`ConfigError::Figment`]); a value is out of range
/// ([`ConfigError::Invalid`]).
pub fn load(args: &TuiArgs) -> Result<TuiConfig, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(TuiConfig::default()));
    if let Some(path) = &args.config {
        check_readable_file(path)?;
        figment = figment.merge(Toml::file_exact(path));
    }
    let flags = FlagOverrides {
        gaters: (!args.gaters.is_empty()).then(|| args.gaters.clone()),
        refresh_ms: args.refresh_ms,
        token: args.token.clone(),
    };
    let config: TuiConfig = figment
        .merge(Env::raw().only(&[GATER_ENV]).map(|_| "gaters".into()))
        .merge(Env::raw().only(&[TOKEN_ENV]).map(|_| "token".into()))
        .merge(Env::prefixed(ENV_PREFIX))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| ConfigError::figment(e, ENV))?;
    config.validate()?;
    Ok(config)
}

/// How this binary's environment variables are named, for errors.
const ENV: EnvNaming = EnvNaming {
    prefix: ENV_PREFIX,
    nesting: "__",
    unprefixed: Some(GATER_ENV),
};

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's error type is fixed and large.
mod tests {
    use super::*;
    use clap::Parser;
    use figment::Jail;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/tui.toml");

    /// Runs `f` in a figment jail, refusing to start if the outer environment
    /// already sets config keys.
    fn jail(f: impl FnOnce(&mut Jail) -> figment::Result<()>) {
        Jail::expect_with(|jail| {
            let stray: Vec<String> = std::env::vars()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with(ENV_PREFIX) || k == GATER_ENV || k == TOKEN_ENV)
                .collect();
            assert!(
                stray.is_empty(),
                "unset {stray:?} before running these tests: they change the config under test"
            );
            f(jail)
        });
    }

    fn args(argv: &[&str]) -> TuiArgs {
        let mut full = vec!["reckon-tui"];
        full.extend_from_slice(argv);
        TuiArgs::try_parse_from(full).expect("test arguments parse")
    }

    fn load_ok(argv: &[&str]) -> figment::Result<TuiConfig> {
        load(&args(argv)).map_err(|e| figment::Error::from(e.to_string()))
    }

    fn load_err(argv: &[&str]) -> ConfigError {
        load(&args(argv)).expect_err("config should be rejected")
    }

    fn gaters(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn precedence_is_defaults_file_gater_env_tui_env_flags() {
        jail(|jail| {
            assert_eq!(load_ok(&[])?, TuiConfig::default());

            jail.create_file(
                "tui.toml",
                "gaters = [\"10.0.0.1:7700\", \"10.0.0.2:7700\"]\nrefresh_ms = 2000\n",
            )?;
            let config = load_ok(&["--config", "tui.toml"])?;
            assert_eq!(config.gaters, gaters(&["10.0.0.1:7700", "10.0.0.2:7700"]));
            assert_eq!(config.refresh_ms, 2000);

            jail.set_env(GATER_ENV, "10.0.0.3:7700, 10.0.0.4:7700");
            let config = load_ok(&["--config", "tui.toml"])?;
            assert_eq!(config.gaters, gaters(&["10.0.0.3:7700", "10.0.0.4:7700"]));
            assert_eq!(config.refresh_ms, 2000);

            jail.set_env("RECKON_TUI_GATERS", "[\"10.0.0.5:7700\"]");
            jail.set_env("RECKON_TUI_REFRESH_MS", 500);
            let config = load_ok(&["--config", "tui.toml"])?;
            assert_eq!(config.gaters, gaters(&["10.0.0.5:7700"]));
            assert_eq!(config.refresh_ms, 500);

            let config = load_ok(&[
                "--config",
                "tui.toml",
                "--gater",
                "10.0.0.6:7700,10.0.0.7:7700",
                "--refresh-ms",
                "250",
            ])?;
            assert_eq!(config.gaters, gaters(&["10.0.0.6:7700", "10.0.0.7:7700"]));
            assert_eq!(config.refresh_ms, 250);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        jail(|jail| {
            let err = load_err(&["--refresh-ms", "10"]);
            assert_eq!(err.key().as_deref(), Some("refresh_ms"), "{err}");
            assert!(
                err.to_string()
                    .starts_with("invalid value for key \"refresh_ms\": 10 ms"),
                "{err}"
            );

            let err = load_err(&["--gater", "127.0.0.1:7700,nowhere"]);
            assert_eq!(err.key().as_deref(), Some("gaters[1]"), "{err}");

            jail.create_file("typo.toml", "refresh = 500\n")?;
            let err = load_err(&["--config", "typo.toml"]);
            assert_eq!(err.key().as_deref(), Some("refresh"), "{err}");
            assert!(err.to_string().contains("typo.toml"), "{err}");

            jail.create_file("empty.toml", "gaters = []\n")?;
            let err = load_err(&["--config", "empty.toml"]);
            assert_eq!(err.key().as_deref(), Some("gaters"), "{err}");

            jail.set_env(GATER_ENV, "{}");
            let err = load_err(&[]);
            assert_eq!(err.key().as_deref(), Some("gaters"), "{err}");
            assert!(err.to_string().contains("RECKON_GATER)"), "{err}");
            jail.set_env(GATER_ENV, DEFAULT_GATER);

            jail.set_env("RECKON_TUI_REFRESH_MS", "often");
            let err = load_err(&[]);
            assert_eq!(err.key().as_deref(), Some("refresh_ms"), "{err}");
            assert!(err.to_string().contains("RECKON_TUI_REFRESH_MS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_names_the_path() {
        jail(|_| {
            let err = load_err(&["--config", "nowhere/tui.toml"]);
            assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
            assert!(err.to_string().contains("nowhere/tui.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn example_config_loads_as_the_defaults() {
        jail(|_| {
            assert_eq!(load_ok(&["--config", EXAMPLE])?, TuiConfig::default());
            Ok(())
        });
    }

    #[test]
    fn printed_config_reads_back() {
        jail(|jail| {
            let config = TuiConfig {
                gaters: gaters(&["10.0.0.1:7700", "10.0.0.2:7701"]),
                refresh_ms: 750,
                token: None,
            };
            jail.create_file("printed.toml", &config.to_toml().expect("prints"))?;
            assert_eq!(load_ok(&["--config", "printed.toml"])?, config);
            Ok(())
        });
    }

    #[test]
    fn the_token_comes_from_reckon_token_and_is_never_printed() {
        jail(|jail| {
            jail.set_env(TOKEN_ENV, "rkn_from_env");
            assert_eq!(load_ok(&[])?.token.as_deref(), Some("rkn_from_env"));
            let c = load_ok(&["--token", "rkn_from_flag"])?;
            assert_eq!(c.token.as_deref(), Some("rkn_from_flag"));
            let printed = c.to_toml().expect("prints");
            assert!(printed.contains("token = \"***\""), "{printed}");
            assert!(!printed.contains("rkn_from"), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn demo_and_print_config_parse() {
        let parsed = args(&["--demo", "--print-config"]);
        assert!(parsed.demo && parsed.print_config);
        use clap::CommandFactory;
        TuiArgs::command().debug_assert();
    }
}
