//! The gater's configuration: built-in defaults, then the TOML file (`--config`), then
//! `RECKON_GATER_` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::access::{Authority, ClientEntry, TokenEntry};
use crate::gateway::GatewayOptions;
use crate::logging::LogConfig;
use crate::router::RetryPolicy;
pub use crate::settings::ConfigError;
use crate::settings::{check_readable_file, EnvNaming};
use crate::tls::{PeerCerts, Tls, TlsError, TlsFiles};

/// Environment variable prefix.
pub const ENV_PREFIX: &str = "RECKON_GATER_";
/// The shortest accepted cluster secret.
pub const SECRET_BYTES_MIN: usize = 32;
/// Default time in-flight requests get to finish on SIGTERM, in milliseconds.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5000;
/// Longest shutdown grace accepted, in milliseconds: well inside systemd's
/// `TimeoutStopSec` of the shipped unit (30 s), after which systemd kills.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 20_000;

/// The gater's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaterConfig {
    /// Where clients and nodes reach the gater.
    pub listen: SocketAddr,
    /// A worker not heard from for this long is dropped, in milliseconds.
    pub lease_ms: u64,
    /// Most retries of one routed call after its first attempt.
    pub retries_max: u32,
    /// First backoff between retries, in milliseconds.
    pub backoff_base_ms: u64,
    /// Largest backoff between retries, in milliseconds.
    pub backoff_max_ms: u64,
    /// On SIGTERM or SIGINT, how long requests already taken may run before they
    /// are cut off, in milliseconds; 0 cuts them off at once.
    pub shutdown_grace_ms: u64,
    /// Cluster secret (at least 32 bytes); registrations must be signed with it.
    pub secret: Option<String>,
    /// `[log]`: how much to log and where.
    pub log: LogConfig,
    /// `[[tokens]]`: bearer tokens (their hashes) and their grants. With any (or any
    /// `[[clients]]`), every call but `health` needs a valid token; with none, the
    /// gater is open.
    pub tokens: Vec<TokenEntry>,
    /// `[[clients]]`: grants for client certificates, by the certificate's name.
    pub clients: Vec<ClientEntry>,
    /// `[tls]`: serve clients and dial nodes with TLS (see [`TlsFiles`]).
    pub tls: Option<TlsFiles>,
    /// Serve without TLS on an address other than loopback. Off: such a gater
    /// refuses to start.
    pub insecure: bool,
    /// Where to serve KurrentDB's gRPC client protocol (`HOST` or `HOST:PORT`, port
    /// 2113 when not given); off when unset. See [`crate::kurrent`].
    pub kurrent_listen: Option<String>,
    /// The store KurrentDB connections read and write.
    pub kurrent_store: String,
}

impl Default for GaterConfig {
    fn default() -> Self {
        let d = GatewayOptions::default();
        GaterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            lease_ms: d.lease.as_millis() as u64,
            retries_max: d.retry.retries_max,
            backoff_base_ms: d.retry.backoff_base.as_millis() as u64,
            backoff_max_ms: d.retry.backoff_max.as_millis() as u64,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            secret: None,
            log: LogConfig::default(),
            tokens: Vec::new(),
            clients: Vec::new(),
            tls: None,
            insecure: false,
            kurrent_listen: None,
            kurrent_store: crate::kurrent::DEFAULT_STORE.to_string(),
        }
    }
}

/// Flags that override the file and environment.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GaterFlags {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// How this binary's environment variables are named, for errors.
const ENV: EnvNaming = EnvNaming {
    prefix: ENV_PREFIX,
    nesting: "__",
    unprefixed: None,
};

impl GaterConfig {
    /// Loads defaults < file < env < flags, then validates.
    pub fn load(file: Option<&std::path::Path>, flags: &GaterFlags) -> Result<Self, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(GaterConfig::default()));
        if let Some(path) = file {
            // A file named on the command line must be there: figment would read a
            // missing one as empty, and the gater would start on defaults.
            check_readable_file(path)?;
            f = f.merge(Toml::file_exact(path));
        }
        let c: GaterConfig = f
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(Serialized::defaults(flags.clone()))
            .extract()
            .map_err(|e| ConfigError::figment(e, ENV))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if self.lease_ms < 100 {
            return bad(
                "lease_ms",
                format!("{} ms is too short; use at least 100", self.lease_ms),
            );
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms {
            return bad(
                "backoff_base_ms",
                format!(
                    "must be at least 1 and at most backoff_max_ms ({})",
                    self.backoff_max_ms
                ),
            );
        }
        if self.retries_max > 100 {
            return bad(
                "retries_max",
                format!("{} is more than 100", self.retries_max),
            );
        }
        if self.shutdown_grace_ms > SHUTDOWN_GRACE_MS_MAX {
            return bad(
                "shutdown_grace_ms",
                format!(
                    "{} ms is more than {SHUTDOWN_GRACE_MS_MAX} ms; a service manager \
                     kills a gater that takes that long to stop",
                    self.shutdown_grace_ms
                ),
            );
        }
        if let Some(reason) =
            crate::settings::insecure_listen(self.listen, self.tls.is_some(), self.insecure)
        {
            return bad("tls", reason);
        }
        if let Some(addr) = self.kurrent_addr()? {
            if let Some(reason) =
                crate::settings::insecure_listen(addr, self.tls.is_some(), self.insecure)
            {
                return bad("kurrent_listen", reason);
            }
        }
        if self.kurrent_store.is_empty() {
            return bad("kurrent_store", "must name a store".into());
        }
        self.log.validate().map_err(|e| ConfigError::Invalid {
            key: e.key.into(),
            reason: e.reason,
        })?;
        if let Some(s) = &self.secret {
            if s.len() < SECRET_BYTES_MIN {
                return bad(
                    "secret",
                    format!(
                        "the secret is {} bytes; it must be at least {SECRET_BYTES_MIN}",
                        s.len()
                    ),
                );
            }
        }
        self.authority()?;
        Ok(())
    }

    /// The access rules of `[[tokens]]` and `[[clients]]`; an entry that does not hold
    /// is an error naming its key.
    pub fn authority(&self) -> Result<Authority, ConfigError> {
        Authority::new(&self.tokens, &self.clients).map_err(|e| ConfigError::Invalid {
            key: e.key,
            reason: e.reason,
        })
    }

    /// `kurrent_listen` as an address (port 2113 when it names none); `None` when the
    /// KurrentDB front door is off.
    pub fn kurrent_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = self.kurrent_listen.as_deref() else {
            return Ok(None);
        };
        parse_listen(text, crate::kurrent::DEFAULT_PORT)
            .map(Some)
            .ok_or_else(|| ConfigError::Invalid {
                key: "kurrent_listen".into(),
                reason: format!(
                    "{text:?} is not an address: give IP or IP:PORT (e.g. 127.0.0.1:2113)"
                ),
            })
    }

    /// `shutdown_grace_ms` as a [`Duration`].
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The gateway options this config describes, with `tls` loaded from `[tls]`; an
    /// error only for a config that [`validate`](Self::validate) refuses.
    pub fn gateway_options_with(&self, tls: Option<Tls>) -> Result<GatewayOptions, ConfigError> {
        Ok(GatewayOptions {
            tls,
            ..self.gateway_options()?
        })
    }

    /// Loads the `[tls]` files, when set: the gater serves clients that may or may
    /// not present a certificate. Errors name the file and its key.
    pub fn load_tls(&self) -> Result<Option<Tls>, TlsError> {
        self.tls
            .as_ref()
            .map(|files| Tls::load(files, "tls", PeerCerts::Optional))
            .transpose()
    }

    /// The gateway options this config describes, without TLS; an error only for a
    /// config that [`validate`](Self::validate) refuses.
    pub fn gateway_options(&self) -> Result<GatewayOptions, ConfigError> {
        Ok(GatewayOptions {
            tls: None,
            lease: Duration::from_millis(self.lease_ms),
            retry: RetryPolicy {
                retries_max: self.retries_max,
                backoff_base: Duration::from_millis(self.backoff_base_ms),
                backoff_max: Duration::from_millis(self.backoff_max_ms),
            },
            secret: self.secret.clone(),
            authority: std::sync::Arc::new(self.authority()?),
        })
    }

    /// The config as TOML with the secret masked, for `--print-config`. Tokens are
    /// printed as their hashes, which is all the config holds of them.
    pub fn masked_toml(&self) -> String {
        let mut c = self.clone();
        if c.secret.is_some() {
            c.secret = Some("***".into());
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// An IP address with or without a port (`default_port` then); `None` when it is
/// neither.
fn parse_listen(text: &str, default_port: u16) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = text.trim_start_matches('[').trim_end_matches(']');
    if text == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], default_port)));
    }
    ip.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's error type is fixed and large.
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn precedence_defaults_file_env_flags() {
        Jail::expect_with(|jail| {
            assert_eq!(
                GaterConfig::load(None, &GaterFlags::default()).unwrap(),
                GaterConfig::default()
            );
            jail.create_file(
                "g.toml",
                "listen = \"127.0.0.1:1001\"\nlease_ms = 5000\nretries_max = 3\n",
            )?;
            let path = jail.directory().join("g.toml");
            let c = GaterConfig::load(Some(&path), &GaterFlags::default()).unwrap();
            assert_eq!(
                (c.listen.port(), c.lease_ms, c.retries_max),
                (1001, 5000, 3)
            );
            jail.set_env("RECKON_GATER_LISTEN", "127.0.0.1:1002");
            jail.set_env("RECKON_GATER_LEASE_MS", "6000");
            jail.set_env("RECKON_GATER_SHUTDOWN_GRACE_MS", "250");
            let c = GaterConfig::load(Some(&path), &GaterFlags::default()).unwrap();
            assert_eq!(
                (c.listen.port(), c.lease_ms, c.retries_max),
                (1002, 6000, 3)
            );
            assert_eq!(c.shutdown_grace(), Duration::from_millis(250));
            let flags = GaterFlags {
                listen: Some("127.0.0.1:1003".parse().unwrap()),
            };
            let c = GaterConfig::load(Some(&path), &flags).unwrap();
            assert_eq!((c.listen.port(), c.lease_ms), (1003, 6000));
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("g.toml", "lease_ms = \"soon\"\n")?;
            let e = GaterConfig::load(
                Some(&jail.directory().join("g.toml")),
                &GaterFlags::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("\"lease_ms\""), "{e}");
            assert!(e.contains("g.toml"), "names the file: {e}");
            jail.set_env("RECKON_GATER_RETRIES_MAX", "many");
            let e = GaterConfig::load(None, &GaterFlags::default()).unwrap_err();
            assert_eq!(e.key().as_deref(), Some("retries_max"));
            assert!(
                e.to_string()
                    .contains("(from environment variable RECKON_GATER_RETRIES_MAX)"),
                "{e}"
            );
            jail.set_env("RECKON_GATER_RETRIES_MAX", "3");
            jail.create_file("h.toml", "leese_ms = 1\n")?;
            let e = GaterConfig::load(
                Some(&jail.directory().join("h.toml")),
                &GaterFlags::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("leese_ms"), "{e}");
            jail.set_env("RECKON_GATER_SHUTDOWN_GRACE_MS", "600000");
            let e = GaterConfig::load(None, &GaterFlags::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("\"shutdown_grace_ms\""), "{e}");
            jail.set_env("RECKON_GATER_SHUTDOWN_GRACE_MS", "0");
            jail.set_env("RECKON_GATER_LOG__LEVEL", "info,reckon_db=loud");
            let e = GaterConfig::load(None, &GaterFlags::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("\"log.level\""), "{e}");
            jail.set_env("RECKON_GATER_LOG__LEVEL", "debug");
            jail.set_env("RECKON_GATER_LOG__DIR", "/var/log/reckon");
            let c = GaterConfig::load(None, &GaterFlags::default()).unwrap();
            assert_eq!(c.log.level, "debug");
            assert_eq!(
                c.log.dir.as_deref(),
                Some(std::path::Path::new("/var/log/reckon"))
            );
            jail.set_env("RECKON_GATER_SECRET", "short");
            let e = GaterConfig::load(None, &GaterFlags::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("\"secret\"") && !e.contains("short"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn tokens_load_and_bad_grants_name_the_key() {
        Jail::expect_with(|jail| {
            let token = crate::access::new_token();
            let entry = TokenEntry {
                name: "app".into(),
                hash: crate::access::token_digest(&token),
                grants: vec!["default:read+write".into()],
            };
            jail.create_file("g.toml", &entry.to_toml())?;
            let path = jail.directory().join("g.toml");
            let c = GaterConfig::load(Some(&path), &GaterFlags::default()).unwrap();
            assert_eq!(c.tokens, vec![entry.clone()]);
            let a = c.authority().unwrap();
            assert_eq!(a.authenticate_token(&token).unwrap().name, "app");
            let printed = c.masked_toml();
            assert!(printed.contains(&entry.hash), "{printed}");
            assert!(!printed.contains(&token), "the token never: {printed}");
            let reread: GaterConfig = toml::from_str(&printed).unwrap();
            assert_eq!(reread.tokens, c.tokens);

            jail.create_file("bad.toml", &entry.to_toml().replace("read+write", "raed"))?;
            let e = GaterConfig::load(
                Some(&jail.directory().join("bad.toml")),
                &GaterFlags::default(),
            )
            .unwrap_err();
            assert_eq!(e.key().as_deref(), Some("tokens[0].grants"));
            assert!(e.to_string().contains("\"raed\""), "{e}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = GaterConfig::load(
            Some(std::path::Path::new("/nonexistent/g.toml")),
            &GaterFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/g.toml"), "{e}");
    }

    #[test]
    fn the_example_config_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/gater.toml");
        Jail::expect_with(|_| {
            let c = GaterConfig::load(Some(std::path::Path::new(path)), &GaterFlags::default())
                .unwrap();
            assert_eq!(c.listen.port(), 7700);
            Ok(())
        });
    }

    #[test]
    fn a_non_loopback_listener_needs_tls_or_insecure() {
        Jail::expect_with(|jail| {
            let flags = GaterFlags {
                listen: Some("0.0.0.0:7700".parse().unwrap()),
            };
            let e = GaterConfig::load(None, &flags).unwrap_err();
            assert_eq!(e.key().as_deref(), Some("tls"), "{e}");
            assert!(e.to_string().contains("insecure = true"), "{e}");
            jail.set_env("RECKON_GATER_INSECURE", "true");
            assert!(GaterConfig::load(None, &flags).unwrap().insecure);
            jail.set_env("RECKON_GATER_INSECURE", "false");
            jail.set_env("RECKON_GATER_TLS__CA", "ca.crt");
            jail.set_env("RECKON_GATER_TLS__CERT", "gater-gw.crt");
            jail.set_env("RECKON_GATER_TLS__KEY", "gater-gw.key");
            let c = GaterConfig::load(None, &flags).unwrap();
            assert!(c.masked_toml().contains("key = \"gater-gw.key\""));
            // The files are read at start, and a missing one is named with its key.
            let e = c.load_tls().unwrap_err().to_string();
            assert!(e.contains("ca.crt") && e.contains("tls.ca"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn kurrent_listen_is_off_by_default_and_takes_a_port_or_not() {
        Jail::expect_with(|jail| {
            let none = GaterConfig::load(None, &GaterFlags::default()).unwrap();
            assert_eq!(none.kurrent_addr().unwrap(), None);
            assert_eq!(none.kurrent_store, "default");
            jail.set_env("RECKON_GATER_KURRENT_LISTEN", "127.0.0.1");
            let c = GaterConfig::load(None, &GaterFlags::default()).unwrap();
            assert_eq!(
                c.kurrent_addr().unwrap(),
                Some("127.0.0.1:2113".parse().unwrap())
            );
            jail.set_env("RECKON_GATER_KURRENT_LISTEN", "127.0.0.1:0");
            jail.set_env("RECKON_GATER_KURRENT_STORE", "orders");
            let c = GaterConfig::load(None, &GaterFlags::default()).unwrap();
            assert_eq!(c.kurrent_addr().unwrap().map(|a| a.port()), Some(0));
            assert_eq!(c.kurrent_store, "orders");
            jail.set_env("RECKON_GATER_KURRENT_LISTEN", "nowhere:x");
            let e = GaterConfig::load(None, &GaterFlags::default()).unwrap_err();
            assert_eq!(e.key().as_deref(), Some("kurrent_listen"), "{e}");
            jail.set_env("RECKON_GATER_KURRENT_LISTEN", "0.0.0.0");
            let e = GaterConfig::load(None, &GaterFlags::default()).unwrap_err();
            assert_eq!(e.key().as_deref(), Some("kurrent_listen"), "{e}");
            Ok(())
        });
    }
}
