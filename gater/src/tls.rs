//! TLS for every link: the `[tls]` files, the rustls configurations built from them,
//! and what a certificate says its holder is.
//!
//! ```text
//!  [tls] ca, cert, key ──Tls::load──▶ Tls ─┬─ connector: dials, presenting `cert`
//!                                           └─ acceptor:  serves, asking for a peer
//!                                                         certificate of the same CA
//! ```
//!
//! Every certificate `reckon certs` makes names its holder in one subject
//! alternative name, a URI: `reckon://node/3`, `reckon://gater/NAME` or
//! `reckon://client/NAME` ([`Role`]). A server reads it from the verified peer
//! certificate and checks it against the service the connection's preamble asks for
//! ([`admits`]): Raft only from nodes, the worker service only from gaters and
//! nodes, the gater service from anyone its CA vouches for, or from a peer with no
//! certificate at all (a client that authenticates otherwise). A dialler checks the
//! server the same way ([`serves`]): a Raft or worker call goes only to a node.
//!
//! The cryptography is rustls's (with the `ring` provider); this module only reads
//! PEM files, builds configurations and reads the role URI out of a certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::service::Service;

/// The scheme and authority of the URI that names a certificate's holder.
pub const ROLE_URI_PREFIX: &str = "reckon://";

/// Longest gater or client name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// What a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Node `N` of the cluster: speaks Raft, serves workers, registers with gaters.
    Node(u64),
    /// A gater: calls nodes' worker services.
    Gater(String),
    /// A client: speaks only to gaters.
    Client(String),
}

impl Role {
    /// The URI a certificate carries for this role: `reckon://node/3`.
    pub fn uri(&self) -> String {
        match self {
            Role::Node(id) => format!("{ROLE_URI_PREFIX}node/{id}"),
            Role::Gater(name) => format!("{ROLE_URI_PREFIX}gater/{name}"),
            Role::Client(name) => format!("{ROLE_URI_PREFIX}client/{name}"),
        }
    }

    /// The role a URI names, or `None` when it is not a role URI (a node id that is
    /// not a number above 0, a name [`valid_name`] refuses, an unknown kind).
    pub fn from_uri(uri: &str) -> Option<Role> {
        let rest = uri.strip_prefix(ROLE_URI_PREFIX)?;
        let (kind, name) = rest.split_once('/')?;
        match kind {
            "node" => {
                // Digits only: `u64::from_str` would also take a leading `+`.
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                name.parse().ok().filter(|id| *id > 0).map(Role::Node)
            }
            "gater" if valid_name(name) => Some(Role::Gater(name.to_string())),
            "client" if valid_name(name) => Some(Role::Client(name.to_string())),
            _ => None,
        }
    }

    /// The kind alone: `node`, `gater` or `client`.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Node(_) => "node",
            Role::Gater(_) => "gater",
            Role::Client(_) => "client",
        }
    }

    /// The holder's name within its kind: the node id, or the gater or client name.
    pub fn name(&self) -> String {
        match self {
            Role::Node(id) => id.to_string(),
            Role::Gater(name) | Role::Client(name) => name.clone(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// Whether `name` can name a gater or client: 1 to [`NAME_BYTES_MAX`] of
/// `A-Z a-z 0-9 _ - .`, not starting with a dot (it becomes part of a URI and of
/// file names).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Whether a TLS server admits a peer holding `peer` (`None`: no certificate) to
/// `service`: Raft only from nodes; the worker service from gaters and nodes; the
/// gater service from anyone (the gater authenticates clients itself).
pub fn admits(peer: Option<&Role>, service: Service) -> bool {
    match service {
        Service::Raft => matches!(peer, Some(Role::Node(_))),
        Service::Worker => matches!(peer, Some(Role::Node(_) | Role::Gater(_))),
        Service::Gater => true,
    }
}

/// Whether a TLS client accepts a server holding `server` for `service`: Raft and
/// workers are served by nodes; the gater service by gaters, or by a node that
/// embeds one.
pub fn serves(server: Option<&Role>, service: Service) -> bool {
    match service {
        Service::Raft | Service::Worker => matches!(server, Some(Role::Node(_))),
        Service::Gater => matches!(server, Some(Role::Gater(_) | Role::Node(_))),
    }
}

/// Whether a peer holding `peer` may register, heartbeat or deregister the workers
/// of node `node_id` with a TLS gater: only that node itself.
pub fn may_register(peer: Option<&Role>, node_id: u64) -> bool {
    matches!(peer, Some(Role::Node(id)) if *id == node_id)
}

/// The role named by a DER certificate's `reckon://` URI, when it has exactly one.
pub fn role_of(cert: &[u8]) -> Option<Role> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = x509.subject_alternative_name().ok()??;
    let mut roles = san.value.general_names.iter().filter_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(ROLE_URI_PREFIX) => {
            Some(Role::from_uri(uri))
        }
        _ => None,
    });
    match (roles.next(), roles.next()) {
        (Some(role), None) => role,
        _ => None,
    }
}

/// The `[tls]` table of a node's or a gater's config: PEM files.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA's certificate: peers must present certificates it signed.
    pub ca: PathBuf,
    /// This process's certificate (chain), signed by the CA.
    pub cert: PathBuf,
    /// Its private key. Only the path is ever printed or logged.
    pub key: PathBuf,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// Why TLS could not be set up. Each message names the file and the config key (or
/// flag) it came from; never the key's contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path} ({key}): {source}")]
    Read {
        /// Where the path was given: `tls.key`, `--ca`.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path} ({key}) holds no {what}: {reason}")]
    Pem {
        /// Where the path was given.
        key: String,
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate", "private key".
        what: &'static str,
        /// What was found wrong.
        reason: String,
    },
    /// The certificate and key do not make a usable identity, or the CA cannot be
    /// used to verify peers.
    #[error("{what}: {reason}")]
    Config {
        /// Which part: "tls.cert and tls.key".
        what: String,
        /// rustls's reason.
        reason: String,
    },
    /// A certificate does not name its holder with a `reckon://` URI.
    #[error(
        "{path} ({key}) does not say whose it is (no reckon:// URI); make it with `reckon certs`"
    )]
    NoRole {
        /// Where the path was given.
        key: String,
        /// The file.
        path: PathBuf,
    },
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of the PEM file at `path` (given as `key`), at least one.
pub fn load_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, key)?;
    let pem_error = |reason: String| TlsError::Pem {
        key: key.to_string(),
        path: path.to_path_buf(),
        what: "certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The private key of the PEM file at `path` (given as `key`).
pub fn load_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, key)?;
    // The error says what kind of problem, never what the file holds.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        key: key.to_string(),
        path: path.to_path_buf(),
        what: "private key",
        reason: e.to_string(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(path: &Path, key: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, key)? {
        roots.add(cert).map_err(|e| TlsError::Config {
            what: format!("{} ({key})", path.display()),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Whether a TLS server insists on a peer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCerts {
    /// Every peer must present one (a node: all its services are for nodes and
    /// gaters).
    Required,
    /// A peer may present one (a gater: clients may authenticate otherwise).
    Optional,
}

/// A client's TLS files: the CA to trust, and optionally a certificate to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA that signed the gaters' certificates (`--ca`, `RECKON_CA`).
    pub ca: PathBuf,
    /// A client certificate and its key (`--cert`, `--key`).
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// TLS set up for one process: how it dials and, when it has a certificate, how it
/// serves. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    connector: tokio_rustls::TlsConnector,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// What `acceptor` serves with, kept to derive variants of it (HTTP/2 for gRPC).
    server: Option<Arc<ServerConfig>>,
    own: Option<Role>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("own", &self.own)
            .field("serves", &self.acceptor.is_some())
            .finish()
    }
}

impl Tls {
    /// A node's or gater's TLS from its `[tls]` files, serving with `peers`; errors
    /// name the files and the keys `{table}.ca`, `{table}.cert`, `{table}.key`.
    pub fn load(files: &TlsFiles, table: &str, peers: PeerCerts) -> Result<Tls, TlsError> {
        let (ca_key, cert_key, key_key) = (
            format!("{table}.ca"),
            format!("{table}.cert"),
            format!("{table}.key"),
        );
        let roots = roots(&files.ca, &ca_key)?;
        let chain = load_certs(&files.cert, &cert_key)?;
        let own = role_of(&chain[0]).ok_or_else(|| TlsError::NoRole {
            key: cert_key.clone(),
            path: files.cert.clone(),
        })?;
        let key = load_key(&files.key, &key_key)?;
        let pair = format!("{cert_key} and {key_key}");
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let verifier = match peers {
            PeerCerts::Required => verifier,
            PeerCerts::Optional => verifier.allow_unauthenticated(),
        }
        .build()
        .map_err(|e| TlsError::Config {
            what: ca_key.clone(),
            reason: e.to_string(),
        })?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(&pair, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| config_error(&pair, e))?;
        let client = client_config(roots, Some((chain, key)), &pair)?;
        let server = Arc::new(server);
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: Some(tokio_rustls::TlsAcceptor::from(server.clone())),
            server: Some(server),
            own: Some(own),
        })
    }

    /// A client's TLS: it trusts `files.ca` and presents `files.identity` when
    /// given. Errors name the flags `--ca`, `--cert`, `--key`.
    pub fn client(files: &ClientTlsFiles) -> Result<Tls, TlsError> {
        let roots = roots(&files.ca, "--ca")?;
        let (identity, own) = match &files.identity {
            Some((cert, key)) => {
                let chain = load_certs(cert, "--cert")?;
                let own = role_of(&chain[0]);
                (Some((chain, load_key(key, "--key")?)), own)
            }
            None => (None, None),
        };
        let client = client_config(roots, identity, "--cert and --key")?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: None,
            server: None,
            own,
        })
    }

    /// The role this process's own certificate names, when it has one.
    pub fn own_role(&self) -> Option<&Role> {
        self.own.as_ref()
    }

    pub(crate) fn connector(&self) -> &tokio_rustls::TlsConnector {
        &self.connector
    }

    pub(crate) fn acceptor(&self) -> Option<&tokio_rustls::TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// An acceptor with the same certificates and client verification that offers
    /// the application protocols `alpn` (gRPC clients insist on `h2`); `None` for a
    /// client's TLS, which does not serve.
    pub(crate) fn acceptor_with_alpn(&self, alpn: &[&[u8]]) -> Option<tokio_rustls::TlsAcceptor> {
        let mut config = ServerConfig::clone(self.server.as_ref()?);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

fn config_error(what: &str, e: rustls::Error) -> TlsError {
    TlsError::Config {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pair: &str,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(pair, e))?
        .with_root_certificates(roots);
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| config_error(pair, e)),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The name a server at `addr` (`HOST:PORT`, `[V6]:PORT`) must hold a certificate
/// for: its IP address or DNS name.
pub fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: not a host name a certificate can be checked against: {e}"),
        )
    })
}

#[cfg(test)]
mod tests;
