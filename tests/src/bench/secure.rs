//! The rows of `--secure`: one `reckon-node` in single mode registered with a
//! standalone `reckon-gater` on loopback, either in clear text with an open gater
//! ([`Via::Standalone`], the fair "plain" side) or with TLS on every link and a token
//! the gater checks ([`Via::Secure`]). The two differ in nothing else, so their ratio
//! is the cost of security.
//!
//! Why not the `--dev` node's embedded gater: it takes the node's `[tls]` but no
//! `[[tokens]]`, so it cannot check a token. A standalone gater takes both.
//!
//! The secure setup is made the way an operator makes it, with the library code the
//! CLI uses: `reckon certs` ([`reckon_gater::certs`]: a CA, `node-1` and `gater-bench`
//! for 127.0.0.1) and `reckon token create` ([`reckon_gater::access`]: a random token,
//! its `[[tokens]]` entry granting `default:read+write` in the gater's config file). TLS
//! reaches both processes through `RECKON_NODE_TLS__*` and `RECKON_GATER_TLS__*`; the
//! clients trust the CA, present no certificate, and authenticate with the token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use reckon_gater::access::{new_token, token_digest, TokenEntry};
use reckon_gater::certs::{make_ca, make_leaf, CA_CERT};
use reckon_gater::tls::{ClientTlsFiles, Role, Tls};
use reckon_gater::Client;
use reckon_tests::NodeProc;

use super::process::{spawn_ready, wait_ready, Conn, Endpoint, NodeSetup, NODE_LOG_FILTER, STORE};
use super::Via;

/// The gater's name in its certificate.
const GATER_NAME: &str = "bench";
/// The token's name in the gater's config.
const TOKEN_NAME: &str = "bench";
/// What the token may do: everything the write workloads and the readiness probe ask.
const TOKEN_GRANT: &str = "default:read+write";
/// The host the certificates serve on.
const HOST: &str = "127.0.0.1";
/// How long the node may take to register with the gater and have a leader.
const FORM_WAIT: Duration = Duration::from_secs(30);
/// Pause between two health probes while it forms.
const FORM_PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A bearer token that does not print itself.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// How a client reaches the secure gater: its CA and the token.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Trusts the bench's CA, presents no certificate.
    pub tls: Tls,
    /// Granted [`TOKEN_GRANT`].
    pub token: Token,
}

/// The files of the secure setup, all under one directory.
struct Kit {
    ca: PathBuf,
    node: (PathBuf, PathBuf),
    gater: (PathBuf, PathBuf),
    gater_config: PathBuf,
    credentials: Credentials,
}

impl Kit {
    /// Certificates, a token and the gater's config under `dir`.
    fn make(dir: &Path) -> anyhow::Result<Kit> {
        let certs = dir.join("certs");
        make_ca(&certs, false).context("making the bench's CA")?;
        let hosts = [HOST.to_string()];
        let node = make_leaf(&certs, &Role::Node(1), &hosts, false)
            .context("making the node's certificate")?;
        let gater = make_leaf(&certs, &Role::Gater(GATER_NAME.into()), &hosts, false)
            .context("making the gater's certificate")?;
        let token = new_token();
        let entry = TokenEntry {
            name: TOKEN_NAME.to_string(),
            hash: token_digest(&token),
            grants: vec![TOKEN_GRANT.to_string()],
        };
        let gater_config = dir.join("gater.toml");
        std::fs::write(&gater_config, entry.to_toml())
            .with_context(|| format!("writing {}", gater_config.display()))?;
        let ca = certs.join(CA_CERT);
        let tls = Tls::client(&ClientTlsFiles {
            ca: ca.clone(),
            identity: None,
        })
        .context("loading the client's TLS")?;
        Ok(Kit {
            ca,
            node: (node.cert, node.key),
            gater: (gater.cert, gater.key),
            gater_config,
            credentials: Credentials {
                tls,
                token: Token(token),
            },
        })
    }

    /// `{prefix}CA`, `{prefix}CERT`, `{prefix}KEY` for `pair`.
    fn env(&self, cmd: &mut Command, prefix: &str, (cert, key): &(PathBuf, PathBuf)) {
        cmd.env(format!("{prefix}CA"), &self.ca)
            .env(format!("{prefix}CERT"), cert)
            .env(format!("{prefix}KEY"), key);
    }
}

/// A node registered with a standalone gater, both on loopback, on a fresh directory.
/// Dropping it kills both and then removes the directory.
pub struct FrontedNode {
    node: Option<NodeProc>,
    gater: Option<NodeProc>,
    endpoint: Endpoint,
    dir: PathBuf,
}

/// Removes `RECKON_{NODE,GATER}_*` inherited from the bench's environment, so that
/// the processes get exactly the settings given here; sets the log filter.
fn clean_env(cmd: &mut Command, prefix: &str) {
    for (k, _) in std::env::vars() {
        if k.starts_with(prefix) {
            cmd.env_remove(k);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", NODE_LOG_FILTER);
    }
}

impl FrontedNode {
    /// Starts a gater and a node on `<parent>/<name>` (which must not exist yet),
    /// secure when `via` is [`Via::Secure`], in clear text for [`Via::Standalone`],
    /// and waits until a linearizable read through the gater succeeds.
    pub async fn start(setup: &NodeSetup, name: &str, via: Via) -> anyhow::Result<FrontedNode> {
        ensure!(
            matches!(via, Via::Standalone | Via::Secure),
            "a fronted node is reached through a standalone gater, not via {}",
            via.id()
        );
        let dir = setup.fresh_dir(name)?;
        let mut fronted = FrontedNode {
            node: None,
            gater: None,
            endpoint: Endpoint::Gater(String::new()),
            dir,
        };
        // On error, dropping `fronted` kills what started and removes the directory.
        fronted.spawn(setup, via == Via::Secure).await?;
        fronted.formed().await?;
        Ok(fronted)
    }

    async fn spawn(&mut self, setup: &NodeSetup, secure: bool) -> anyhow::Result<()> {
        let kit = secure.then(|| Kit::make(&self.dir)).transpose()?;
        let mut cmd = Command::new(&setup.gater_bin);
        clean_env(&mut cmd, "RECKON_GATER_");
        cmd.arg("--listen").arg("127.0.0.1:0");
        if let Some(kit) = &kit {
            cmd.arg("--config").arg(&kit.gater_config);
            kit.env(&mut cmd, "RECKON_GATER_TLS__", &kit.gater);
        }
        let gater_dir = self.dir.join("gater");
        std::fs::create_dir_all(&gater_dir)?;
        let gater = spawn_ready(cmd, &gater_dir, &setup.gater_bin.display().to_string()).await?;
        let gater_addr = gater.addr.clone();
        self.gater = Some(gater);

        let data = self.dir.join("node");
        let mut cmd = Command::new(&setup.bin);
        clean_env(&mut cmd, "RECKON_NODE_");
        cmd.arg("--node-id")
            .arg("1")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .arg("--gater")
            .arg(&gater_addr)
            .arg("--store")
            .arg(STORE)
            .env("RECKON_NODE_MODE", "single");
        if let Some(kit) = &kit {
            kit.env(&mut cmd, "RECKON_NODE_TLS__", &kit.node);
        }
        let node = spawn_ready(cmd, &data, &setup.bin.display().to_string()).await?;
        self.node = Some(node);
        self.endpoint = match kit {
            Some(kit) => Endpoint::SecureGater {
                addr: gater_addr,
                credentials: kit.credentials,
            },
            None => Endpoint::Gater(gater_addr),
        };
        Ok(())
    }

    /// Waits until the gater knows the node as the store's leader, then for a
    /// linearizable read through it.
    async fn formed(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + FORM_WAIT;
        let (addr, tls) = match &self.endpoint {
            Endpoint::Gater(addr) | Endpoint::Kurrent { gater: addr, .. } => (addr.clone(), None),
            Endpoint::SecureGater { addr, credentials } => {
                (addr.clone(), Some(credentials.tls.clone()))
            }
            Endpoint::Worker(addr) => bail!("{addr} is a worker, not a gater"),
        };
        loop {
            let mut builder = Client::builder(&[addr.as_str()]);
            if let Some(tls) = &tls {
                builder = builder.tls(tls.clone());
            }
            // Health is open to every caller: no token needed.
            let health = match builder.connect().await {
                Ok(client) => client.health().await,
                Err(e) => Err(e),
            };
            let last = match health {
                Ok(h) => {
                    if h.stores
                        .iter()
                        .any(|s| s.store == STORE && s.workers == 1 && s.leader.is_some())
                    {
                        break;
                    }
                    format!("{h:?}")
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the node did not register with its gater in {FORM_WAIT:?}; the gater \
                     last said: {last}"
                );
            }
            tokio::time::sleep(FORM_PROBE_INTERVAL).await;
        }
        let conn = Conn::connect(&self.endpoint).await?;
        wait_ready(&conn, "the standalone gater").await
    }

    /// Where clients reach the gater, with what they need.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for FrontedNode {
    fn drop(&mut self) {
        // Kill first: no process may hold the files we remove.
        drop(self.node.take());
        drop(self.gater.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
