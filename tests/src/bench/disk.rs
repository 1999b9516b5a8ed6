//! Bytes on disk per event of a loaded node: its data directory walked, every file's
//! size summed, split by what the file holds, and divided by the events loaded.
//!
//! A `reckon-node` data directory holds, per store, `<store>/log.redb` (the Raft log),
//! `<store>/state.redb` (the state machine: events and indexes) and
//! `<store>/snapshots/` (snapshot files and the `current` pointer), and a `LOCK` file
//! at the top. Files are sized two ways: by the blocks allocated to them
//! (`st_blocks` × 512, what the disk really gives up: redb grows its files ahead of
//! their contents, and the unwritten tail is sparse) and by their length (what `ls`
//! shows). The allocated size is the figure reported; the length is kept beside it.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use anyhow::{bail, Context};

/// The Raft log's file in a store's directory (as the node names it).
pub const LOG_FILE: &str = "log.redb";
/// The state machine's file in a store's directory.
pub const STATE_FILE: &str = "state.redb";
/// The directory of snapshot files in a store's directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Bytes in one unit of `st_blocks` (POSIX fixes it at 512, whatever the file
/// system's block size).
const ST_BLOCK_BYTES: u64 = 512;
/// Most directory entries a walk visits: a node's data directory holds a handful, so
/// more means the walk is somewhere it should not be.
const WALK_ENTRIES_MAX: usize = 10_000;

/// What a file in a data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A store's Raft log ([`LOG_FILE`]).
    Log,
    /// A store's state machine ([`STATE_FILE`]).
    State,
    /// A file under a store's [`SNAPSHOT_DIR`].
    Snapshots,
    /// Anything else (the `LOCK` file).
    Other,
}

impl Part {
    /// What the file at `rel` (relative to the data directory) holds.
    pub fn of(rel: &Path) -> Part {
        let in_snapshots = rel.parent().is_some_and(|p| {
            p.components()
                .any(|c| c == Component::Normal(SNAPSHOT_DIR.as_ref()))
        });
        if in_snapshots {
            return Part::Snapshots;
        }
        match rel.file_name().and_then(|n| n.to_str()) {
            Some(LOG_FILE) => Part::Log,
            Some(STATE_FILE) => Part::State,
            _ => Part::Other,
        }
    }
}

/// Bytes by part of a data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parts {
    /// Every file.
    pub total: u64,
    /// The Raft log files.
    pub log: u64,
    /// The state files.
    pub state: u64,
    /// The snapshot files.
    pub snapshots: u64,
    /// Everything else.
    pub other: u64,
}

impl Parts {
    fn add(&mut self, part: Part, bytes: u64) {
        self.total += bytes;
        *match part {
            Part::Log => &mut self.log,
            Part::State => &mut self.state,
            Part::Snapshots => &mut self.snapshots,
            Part::Other => &mut self.other,
        } += bytes;
    }

    /// Each part divided by `events` (none for no events).
    pub fn per(&self, events: u64) -> Option<PerEvent> {
        let per = |bytes: u64| bytes as f64 / events as f64;
        (events > 0).then(|| PerEvent {
            total: per(self.total),
            log: per(self.log),
            state: per(self.state),
            snapshots: per(self.snapshots),
            other: per(self.other),
        })
    }
}

/// Bytes per event by part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerEvent {
    /// Every file.
    pub total: f64,
    /// The Raft log files.
    pub log: f64,
    /// The state files.
    pub state: f64,
    /// The snapshot files.
    pub snapshots: f64,
    /// Everything else.
    pub other: f64,
}

/// One look at a loaded node's data directory.
#[derive(Debug, Clone)]
pub struct DiskUse {
    /// Short id of when it was taken, for JSON and `--compare`: `after-load`, ...
    pub when: &'static str,
    /// When it was taken, for the table.
    pub label: String,
    /// Blocks allocated to the files, in bytes.
    pub allocated: Parts,
    /// The files' lengths.
    pub apparent: Parts,
    /// Files counted.
    pub files: usize,
}

/// Sizes the files under `dir`, a node's data directory, by part. Fails on a file
/// that cannot be sized (one that vanishes during the walk, as a replaced snapshot
/// may, is skipped), on a directory of more than [`WALK_ENTRIES_MAX`] entries, and
/// when there is no log or no state file: then the node's layout is not the one this
/// knows, and the split would be wrong.
pub fn measure(dir: &Path, when: &'static str, label: String) -> anyhow::Result<DiskUse> {
    let mut use_ = DiskUse {
        when,
        label,
        allocated: Parts::default(),
        apparent: Parts::default(),
        files: 0,
    };
    let mut seen = 0usize;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            seen += 1;
            if seen > WALK_ENTRIES_MAX {
                bail!(
                    "{} holds more than {WALK_ENTRIES_MAX} entries; not a node's data \
                     directory?",
                    dir.display()
                );
            }
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("sizing {}", path.display())),
            };
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let part = Part::of(path.strip_prefix(dir).unwrap_or(&path));
                use_.allocated.add(part, meta.blocks() * ST_BLOCK_BYTES);
                use_.apparent.add(part, meta.len());
                use_.files += 1;
            }
        }
    }
    if use_.apparent.log == 0 || use_.apparent.state == 0 {
        bail!(
            "{} has no non-empty {LOG_FILE} or {STATE_FILE} in a store directory; the node's \
             data directory layout is not the one reckon-bench knows",
            dir.display()
        );
    }
    Ok(use_)
}

/// What a loaded node's data directory takes per event, looked at one or more times.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// The workload whose node it is (`W4`).
    pub of: &'static str,
    /// Events loaded.
    pub events: u64,
    /// Bytes of data per event.
    pub event_bytes: usize,
    /// The looks, in the order taken.
    pub looks: Vec<DiskUse>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{measure, Part};

    #[test]
    fn files_are_split_by_what_they_hold() {
        for (rel, part) in [
            ("default/log.redb", Part::Log),
            ("default/state.redb", Part::State),
            ("default/snapshots/current", Part::Snapshots),
            ("default/snapshots/1-2-3.redb", Part::Snapshots),
            ("default/snapshots/log.redb", Part::Snapshots),
            ("LOCK", Part::Other),
            ("log.redb.tmp", Part::Other),
        ] {
            assert_eq!(Part::of(Path::new(rel)), part, "{rel}");
        }
    }

    #[test]
    fn a_data_directory_is_summed_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("default");
        std::fs::create_dir_all(store.join("snapshots")).unwrap();
        std::fs::write(dir.path().join("LOCK"), b"").unwrap();
        std::fs::write(store.join("log.redb"), vec![1u8; 10_000]).unwrap();
        std::fs::write(store.join("state.redb"), vec![1u8; 20_000]).unwrap();
        std::fs::write(store.join("snapshots/current"), vec![1u8; 300]).unwrap();
        let use_ = measure(dir.path(), "t", "test".to_string()).unwrap();
        assert_eq!(use_.files, 4);
        assert_eq!(use_.apparent.log, 10_000);
        assert_eq!(use_.apparent.state, 20_000);
        assert_eq!(use_.apparent.snapshots, 300);
        assert_eq!(use_.apparent.other, 0);
        assert_eq!(use_.apparent.total, 30_300);
        // Written files take whole blocks.
        assert!(use_.allocated.log >= 10_000 && use_.allocated.state >= 20_000);
        assert_eq!(
            use_.allocated.total,
            use_.allocated.log
                + use_.allocated.state
                + use_.allocated.snapshots
                + use_.allocated.other
        );
        let per = use_.apparent.per(100).unwrap();
        assert_eq!((per.total, per.log, per.snapshots), (303.0, 100.0, 3.0));
        assert!(use_.apparent.per(0).is_none());
    }

    #[test]
    fn a_directory_without_a_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.redb"), b"x").unwrap();
        let e = measure(dir.path(), "t", "test".to_string()).unwrap_err();
        assert!(e.to_string().contains("log.redb"), "{e}");
        let gone = dir.path().join("gone");
        let e = measure(&gone, "t", "test".to_string()).unwrap_err();
        assert!(format!("{e:#}").contains("gone"), "{e:#}");
    }
}
