//! Certificates for processes under test, made by the real `reckon certs`, and the
//! environment variables (`RECKON_NODE_TLS__*`, `RECKON_GATER_TLS__*`) that hand
//! them to nodes and gaters.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reckon_gater::tls::{ClientTlsFiles, Tls};

use crate::bin;

/// The gater's name in its certificate.
pub const GATER_NAME: &str = "gw";
/// The client's name in its certificate.
pub const CLIENT_NAME: &str = "alice";

/// Runs `reckon certs ARGS...`; panics with its stderr unless it exits 0.
pub fn reckon_certs(args: &[&str]) {
    let out = Command::new(bin("reckon"))
        .arg("certs")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run reckon certs");
    assert!(
        out.status.success(),
        "reckon certs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and the certificates it signed, in a directory of their own: nodes
/// `node-N` for the ids asked for, a gater `gater-gw` and a client `client-alice`,
/// all for host 127.0.0.1.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes a CA and certificates for nodes `node_ids`, the gater and the client.
    pub fn make(node_ids: &[u64]) -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().to_str().expect("utf-8 temp dir");
        reckon_certs(&["ca", "--dir", d]);
        for id in node_ids {
            reckon_certs(&[
                "node",
                "--dir",
                d,
                "--node-id",
                &id.to_string(),
                "--host",
                "127.0.0.1,localhost",
            ]);
        }
        reckon_certs(&[
            "gater",
            "--dir",
            d,
            "--name",
            GATER_NAME,
            "--host",
            "127.0.0.1",
        ]);
        reckon_certs(&["client", "--dir", d, "--name", CLIENT_NAME]);
        TestCerts { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    /// The certificate and key of `stem` (`node-1`, `gater-gw`, `client-alice`).
    pub fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir().join(format!("{stem}.crt")),
            self.dir().join(format!("{stem}.key")),
        )
    }

    /// `RECKON_NODE_TLS__*` for node `id`.
    pub fn node_env(&self, id: u64) -> Vec<(String, String)> {
        self.env("RECKON_NODE_TLS__", &format!("node-{id}"))
    }

    /// `RECKON_GATER_TLS__*` for the gater.
    pub fn gater_env(&self) -> Vec<(String, String)> {
        self.env("RECKON_GATER_TLS__", &format!("gater-{GATER_NAME}"))
    }

    fn env(&self, prefix: &str, stem: &str) -> Vec<(String, String)> {
        let (cert, key) = self.pair(stem);
        let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_string();
        vec![
            (format!("{prefix}CA"), path(self.ca())),
            (format!("{prefix}CERT"), path(cert)),
            (format!("{prefix}KEY"), path(key)),
        ]
    }

    /// A client's TLS that trusts this CA and presents no certificate.
    pub fn anonymous(&self) -> Tls {
        Tls::client(&ClientTlsFiles {
            ca: self.ca(),
            identity: None,
        })
        .expect("client TLS")
    }

    /// TLS that trusts this CA and presents the certificate of `stem`.
    pub fn presenting(&self, stem: &str) -> Tls {
        self.presenting_to(stem, &self.ca())
    }

    /// TLS that trusts the CA at `ca` and presents the certificate of `stem` from
    /// this directory.
    pub fn presenting_to(&self, stem: &str, ca: &Path) -> Tls {
        Tls::client(&ClientTlsFiles {
            ca: ca.to_path_buf(),
            identity: Some(self.pair(stem)),
        })
        .expect("client TLS")
    }

    /// The `reckon` CLI's flags for the client certificate.
    pub fn cli_flags(&self) -> Vec<String> {
        let (cert, key) = self.pair(&format!("client-{CLIENT_NAME}"));
        let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_string();
        vec![
            "--ca".into(),
            path(self.ca()),
            "--cert".into(),
            path(cert),
            "--key".into(),
            path(key),
        ]
    }
}
