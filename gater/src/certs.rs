//! `reckon certs`: a cluster CA, and the certificates of nodes, gaters and clients
//! it signs, as PEM files in one directory.
//!
//! ```text
//!  DIR/ca.crt, ca.key                  certs ca
//!  DIR/node-N.crt, node-N.key          certs node --node-id N --host H,...
//!  DIR/gater-NAME.crt, .key            certs gater --name NAME --host H,...
//!  DIR/client-NAME.crt, .key           certs client --name NAME
//! ```
//!
//! Each certificate names its holder in a subject alternative name URI
//! (`reckon://node/N`, see [`Role`]) that servers check, and the hosts it serves on
//! as DNS or IP names that diallers check. Node and gater certificates serve and
//! dial (server and client authentication); client certificates only dial. Keys
//! are ECDSA P-256, written with mode 0600; an existing key is never replaced
//! unless asked (`force`). The signing is rcgen's; nothing here is cryptography.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::tls::{valid_name, Role, NAME_BYTES_MAX};

/// How long a CA certificate is valid, in days (ten years).
pub const CA_VALID_DAYS: i64 = 3650;
/// How long a node, gater or client certificate is valid, in days (about two years).
pub const LEAF_VALID_DAYS: i64 = 825;
/// The CA certificate's file name in the directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA key's file name in the directory.
pub const CA_KEY: &str = "ca.key";

/// Why a certificate could not be made. Messages name the file or the flag at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file or the directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file would be overwritten.
    #[error("{path} already exists; refusing to overwrite it (pass --force to replace it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The directory has no CA to sign with.
    #[error("no CA in {dir}: {missing} is missing; run `reckon certs ca --dir {dir}` first")]
    NoCa {
        /// The directory.
        dir: PathBuf,
        /// The missing file.
        missing: PathBuf,
    },
    /// The CA files do not parse.
    #[error("{path} is not a usable CA {what}: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// "certificate" or "key".
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A `--host` is neither an IP address nor a DNS name.
    #[error("--host {host:?} is neither an IP address nor a DNS name")]
    BadHost {
        /// The host as given.
        host: String,
    },
    /// A certificate that serves needs at least one `--host`.
    #[error("--host: give at least one host name or IP address the {kind} is reached at")]
    NoHost {
        /// "node" or "gater".
        kind: &'static str,
    },
    /// A `--name` cannot name a gater or client.
    #[error(
        "--name {name:?}: use 1 to {NAME_BYTES_MAX} of A-Z a-z 0-9 _ - . (not starting with .)"
    )]
    BadName {
        /// The name as given.
        name: String,
    },
    /// A `--node-id` of 0.
    #[error("--node-id must be at least 1")]
    BadNodeId,
    /// rcgen refused the parameters.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The files one command wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM, mode 0600.
    pub key: PathBuf,
}

/// The file name stem of `role`'s certificate and key: `node-3`, `gater-NAME`,
/// `client-NAME`.
pub fn file_stem(role: &Role) -> String {
    format!("{}-{}", role.kind(), role.name())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that lag the one that signed.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "reckon-db");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Makes a CA in `dir` (created if missing): `ca.crt` and `ca.key`.
pub fn make_ca(dir: &Path, force: bool) -> Result<Written, CertError> {
    let written = Written {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    refuse_overwrite(&written, force)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own, so that two clusters' CAs are told apart by name before
    // their signatures are compared.
    params.distinguished_name = dn(&format!(
        "reckon-db cluster CA {:016x}",
        rand::random::<u64>()
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALID_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_pair(dir, &written, &cert.pem(), &key.serialize_pem())?;
    Ok(written)
}

/// Makes the certificate of `role` in `dir`, signed by the CA there, serving on
/// `hosts` (needed for nodes and gaters, ignored for clients).
pub fn make_leaf(
    dir: &Path,
    role: &Role,
    hosts: &[String],
    force: bool,
) -> Result<Written, CertError> {
    let serves = match role {
        Role::Node(0) => return Err(CertError::BadNodeId),
        Role::Node(_) => true,
        Role::Gater(name) | Role::Client(name) if !valid_name(name) => {
            return Err(CertError::BadName { name: name.clone() })
        }
        Role::Gater(_) => true,
        Role::Client(_) => false,
    };
    let stem = file_stem(role);
    let written = Written {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    let issuer = load_issuer(dir)?;
    refuse_overwrite(&written, force)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    if serves {
        let hosts: Vec<&String> = hosts.iter().filter(|h| !h.trim().is_empty()).collect();
        if hosts.is_empty() {
            return Err(CertError::NoHost { kind: role.kind() });
        }
        for host in hosts {
            params.subject_alt_names.push(host_name(host.trim())?);
        }
    }
    params
        .subject_alt_names
        .push(SanType::URI(role.uri().try_into()?));
    params.distinguished_name = dn(&format!("reckon-db {role}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if serves {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_VALID_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_pair(dir, &written, &cert.pem(), &key.serialize_pem())?;
    Ok(written)
}

fn host_name(host: &str) -> Result<SanType, CertError> {
    let bad = || CertError::BadHost {
        host: host.to_string(),
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // What rustls accepts as a name to check a server against, it can match here.
    rustls::pki_types::DnsName::try_from(host).map_err(|_| bad())?;
    Ok(SanType::DnsName(host.try_into().map_err(|_| bad())?))
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for missing in [&cert_path, &key_path] {
        if !missing.exists() {
            return Err(CertError::NoCa {
                dir: dir.to_path_buf(),
                missing: missing.clone(),
            });
        }
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| CertError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| CertError::BadCa {
        path: key_path.clone(),
        what: "key",
        reason: e.to_string(),
    })?;
    Issuer::from_ca_cert_pem(&read(&cert_path)?, key).map_err(|e| CertError::BadCa {
        path: cert_path.clone(),
        what: "certificate",
        reason: e.to_string(),
    })
}

fn refuse_overwrite(written: &Written, force: bool) -> Result<(), CertError> {
    if force {
        return Ok(());
    }
    for path in [&written.key, &written.cert] {
        if path.exists() {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    Ok(())
}

fn write_pair(dir: &Path, written: &Written, cert: &str, key: &str) -> Result<(), CertError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The key first: a certificate without its key is of no use.
    write_file(&written.key, key, 0o600).map_err(io(&written.key))?;
    write_file(&written.cert, cert, 0o644).map_err(io(&written.cert))
}

/// Writes `text` to `path` with permissions `mode` (also when it replaces a file
/// that had others), flushed to disk.
fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        let mut file = options.open(path)?;
        // `mode` applies only to a file this call creates.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests;
