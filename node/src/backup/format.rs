//! The backup file's format: a header that says what the file holds, then the
//! store's state file.
//!
//! ```text
//!  offset     bytes  what
//!  0          8      BACKUP_MAGIC, "RECKONBK"
//!  8          4      BACKUP_FORMAT, little-endian u32
//!  12         4      H, the header's length, little-endian u32 (at most HEADER_BYTES_MAX)
//!  16         H      the header: a BackupHeader, bincode
//!  16+H       32     SHA-256 of bytes 0..16+H (the header and what precedes it)
//!  48+H       B      the body: the store's state file (redb) as of the header's
//!                    `last_applied`, B = `body_bytes`, its SHA-256 = `body_sha256`
//! ```
//!
//! The file ends with the body: a longer or shorter file is refused, as is one
//! whose header or body does not match its checksum. Everything is checked before a
//! byte of it is trusted ([`read_head`], then the body's digest as it is copied).
//!
//! # Changing the format
//!
//! bincode encodes fields by position: never reorder, remove or retype a field of
//! [`BackupHeader`]. Any change bumps [`BACKUP_FORMAT`]; a node reads the formats it
//! knows and refuses a newer one by name. The body is a state file, versioned by its
//! own [`STATE_FORMAT`](crate::storage::format::STATE_FORMAT) (named in the header)
//! and upgraded when restored like any state file a node opens.
//!
//! History of [`BACKUP_FORMAT`]: 1, the first.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::raft::format::StoredLogId;

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"RECKONBK";

/// The format this node writes and the newest it reads.
pub const BACKUP_FORMAT: u32 = 1;

/// The longest header a file may declare: a header is a few hundred bytes, so a
/// larger length is damage, not a header to allocate for.
pub const HEADER_BYTES_MAX: u32 = 64 * 1024;

/// Bytes before the header: magic, format, header length.
pub const PREAMBLE_BYTES: u64 = 16;

/// Bytes of the header's checksum.
pub const DIGEST_BYTES: u64 = 32;

/// What a backup holds.
///
/// A persisted format: see [changing the format](self#changing-the-format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The store backed up.
    pub store: String,
    /// The node that wrote the backup.
    pub node_id: u64,
    /// The last Raft entry the body reflects.
    pub last_applied: StoredLogId,
    /// The store's next global position in the body: it holds every event below it.
    pub next_position: u64,
    /// Events in the body's global log (soft-deleted ones included).
    pub events: u64,
    /// When the state was pinned, in microseconds since the Unix epoch.
    pub created_us: u64,
    /// The body's state-file format.
    pub state_format: u32,
    /// The body's length in bytes.
    pub body_bytes: u64,
    /// SHA-256 of the body.
    pub body_sha256: [u8; 32],
}

impl BackupHeader {
    /// The file's bytes before the body: preamble, header and the header's checksum.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain in-memory structs into a Vec cannot fail.
        let header = bincode::serialize(self).expect("bincode serialization of an in-memory value");
        let mut out = Vec::with_capacity(header.len() + 48);
        out.extend_from_slice(&BACKUP_MAGIC);
        out.extend_from_slice(&BACKUP_FORMAT.to_le_bytes());
        // A header is a few hundred bytes: its length fits.
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }
}

/// Why a file is not a backup this node can restore. Each names the file and what
/// is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupFileError {
    /// The file cannot be read.
    #[error("cannot read backup file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// It does not start as a backup does.
    #[error("{} is not a reckon-db backup (it does not start with {:?})", path.display(), String::from_utf8_lossy(&BACKUP_MAGIC))]
    NotABackup {
        /// The file.
        path: PathBuf,
    },
    /// It is a backup of a format this node does not read.
    #[error(
        "{} is a backup of format {found}; this reckon-node reads format {supported}{}",
        path.display(),
        if *found > *supported { ": restore it with a newer reckon-node" } else { "" }
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
        /// The one this node reads.
        supported: u32,
    },
    /// Its header is damaged.
    #[error("{}: the backup's header is damaged ({reason}); the file cannot be trusted", path.display())]
    HeaderDamaged {
        /// The file.
        path: PathBuf,
        /// What does not check.
        reason: String,
    },
    /// It is shorter or longer than its header says.
    #[error(
        "{}: the backup is {found} bytes, its header says {expected}{}; the file cannot be trusted",
        path.display(),
        if found < expected { " (truncated)" } else { " (bytes after its end)" }
    )]
    Length {
        /// The file.
        path: PathBuf,
        /// The length its header implies.
        expected: u64,
        /// Its length.
        found: u64,
    },
    /// Its body does not match the checksum in its header.
    #[error(
        "{}: the backup's body has SHA-256 {found}, its header says {expected}: the file is damaged",
        path.display()
    )]
    BodyDamaged {
        /// The file.
        path: PathBuf,
        /// The checksum in the header.
        expected: String,
        /// The body's.
        found: String,
    },
}

/// A checked header, and where the body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The header.
    pub header: BackupHeader,
    /// Where the body starts in the file.
    pub body_offset: u64,
}

/// Reads and checks the head of the backup file `file` (at `path`, `len` bytes
/// long): magic, format, the header's checksum, and that the file ends where the
/// header says. Leaves `file` positioned at the body. The body's checksum is the
/// caller's to check as it reads the body ([`BodyDigest`]).
pub fn read_head(file: &mut impl Read, path: &Path, len: u64) -> Result<Head, BackupFileError> {
    let io = |source| BackupFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let damaged = |reason: String| BackupFileError::HeaderDamaged {
        path: path.to_path_buf(),
        reason,
    };
    let mut preamble = [0u8; PREAMBLE_BYTES as usize];
    if len < PREAMBLE_BYTES {
        // Too short even for the magic to be checked fully: say which it is.
        let mut start = vec![0u8; len as usize];
        file.read_exact(&mut start).map_err(io)?;
        if !BACKUP_MAGIC.starts_with(&start) || start.is_empty() {
            return Err(BackupFileError::NotABackup {
                path: path.to_path_buf(),
            });
        }
        return Err(BackupFileError::Length {
            path: path.to_path_buf(),
            expected: PREAMBLE_BYTES + DIGEST_BYTES,
            found: len,
        });
    }
    file.read_exact(&mut preamble).map_err(io)?;
    if preamble[..8] != BACKUP_MAGIC {
        return Err(BackupFileError::NotABackup {
            path: path.to_path_buf(),
        });
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&preamble[r]);
        u32::from_le_bytes(b)
    };
    let format = word(8..12);
    if format != BACKUP_FORMAT {
        return Err(BackupFileError::Version {
            path: path.to_path_buf(),
            found: format,
            supported: BACKUP_FORMAT,
        });
    }
    let header_len = word(12..16);
    if header_len > HEADER_BYTES_MAX {
        return Err(damaged(format!(
            "it declares a header of {header_len} bytes, more than {HEADER_BYTES_MAX}"
        )));
    }
    let body_offset = PREAMBLE_BYTES + u64::from(header_len) + DIGEST_BYTES;
    if len < body_offset {
        return Err(BackupFileError::Length {
            path: path.to_path_buf(),
            expected: body_offset,
            found: len,
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let mut digest = [0u8; DIGEST_BYTES as usize];
    file.read_exact(&mut digest).map_err(io)?;
    let mut h = Sha256::new();
    h.update(preamble);
    h.update(&header);
    if h.finalize().as_slice() != digest {
        return Err(damaged("it does not match its checksum".into()));
    }
    let header: BackupHeader =
        bincode::deserialize(&header).map_err(|e| damaged(format!("it does not decode: {e}")))?;
    let expected = body_offset.saturating_add(header.body_bytes);
    if len != expected {
        return Err(BackupFileError::Length {
            path: path.to_path_buf(),
            expected,
            found: len,
        });
    }
    Ok(Head {
        header,
        body_offset,
    })
}

/// The body's checksum, taken as it is read.
#[derive(Default)]
pub struct BodyDigest(Sha256);

impl BodyDigest {
    /// Takes in the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Checks the body read against the header of the file at `path`.
    pub fn check(self, header: &BackupHeader, path: &Path) -> Result<(), BackupFileError> {
        let found: [u8; 32] = self.0.finalize().into();
        if found == header.body_sha256 {
            return Ok(());
        }
        Err(BackupFileError::BodyDamaged {
            path: path.to_path_buf(),
            expected: hex(&header.body_sha256),
            found: hex(&found),
        })
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body: &[u8]) -> BackupHeader {
        BackupHeader {
            store: "default".into(),
            node_id: 2,
            last_applied: StoredLogId {
                term: 3,
                node_id: 2,
                index: 40,
            },
            next_position: 17,
            events: 17,
            created_us: 5,
            state_format: 2,
            body_bytes: body.len() as u64,
            body_sha256: Sha256::digest(body).into(),
        }
    }

    fn file(body: &[u8]) -> Vec<u8> {
        let mut f = header(body).encode();
        f.extend_from_slice(body);
        f
    }

    fn head(bytes: &[u8]) -> Result<Head, BackupFileError> {
        read_head(&mut &bytes[..], Path::new("b.rbk"), bytes.len() as u64)
    }

    #[test]
    fn a_whole_file_reads_back_its_header_and_body() {
        let body = b"the state file".to_vec();
        let f = file(&body);
        let h = head(&f).unwrap();
        assert_eq!(h.header, header(&body));
        let at = h.body_offset as usize;
        assert_eq!(&f[at..], body.as_slice());
        let mut d = BodyDigest::default();
        d.update(&f[at..]);
        d.check(&h.header, Path::new("b.rbk")).unwrap();
    }

    #[test]
    fn damage_anywhere_is_refused_by_name() {
        let body = vec![7u8; 300];
        let f = file(&body);
        let at = head(&f).unwrap().body_offset as usize;
        // Every byte of the head, flipped, is caught there.
        for i in 0..at {
            let mut g = f.clone();
            g[i] ^= 0x40;
            assert!(head(&g).is_err(), "a flip at {i} passed");
        }
        // A flip in the body is caught by its digest.
        let mut g = f.clone();
        g[at + 100] ^= 1;
        let h = head(&g).unwrap();
        let mut d = BodyDigest::default();
        d.update(&g[at..]);
        let e = d.check(&h.header, Path::new("b.rbk")).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        // Truncated anywhere, or with bytes after its end.
        for cut in [0, 3, 10, 20, at - 1, at, f.len() - 1] {
            let e = head(&f[..cut]).unwrap_err();
            assert!(
                matches!(
                    e,
                    BackupFileError::Length { .. } | BackupFileError::NotABackup { .. }
                ),
                "cut at {cut}: {e}"
            );
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(head(&longer)
            .unwrap_err()
            .to_string()
            .contains("bytes after its end"));
    }

    #[test]
    fn another_format_is_refused_naming_both() {
        let mut f = file(b"x");
        f[8..12].copy_from_slice(&(BACKUP_FORMAT + 1).to_le_bytes());
        let e = head(&f).unwrap_err();
        assert!(
            matches!(e, BackupFileError::Version { found, .. } if found == BACKUP_FORMAT + 1),
            "{e}"
        );
        assert!(e.to_string().contains("newer reckon-node"), "{e}");
        let e = head(b"SQLite format 3\0 and more").unwrap_err();
        assert!(matches!(e, BackupFileError::NotABackup { .. }), "{e}");
    }
}
