//! Backup and restore throughput (`--backup`), beside a raw copy of the same bytes on
//! the same disk.
//!
//! Each run, on a loaded node (W4's when W4 runs, else one of its own):
//!
//! ```text
//! backup   StoreHandle::backup through the node's embedded gater into DIR/backup-rN.rbk:
//!          the node pins its state, copies and checksums it, the client reads it in
//!          chunks, checks it, makes it durable and renames it
//! copy     the same file copied to DIR/copy-rN and fsynced, in this process
//! restore  reckon_node::backup::restore of that file into DIR/restored-rN: checked,
//!          copied, made the state of a group of one, fsynced, renamed
//! ```
//!
//! Each figure is MB/s of the backup file's bytes (1 MB = 10^6 bytes), and the table
//! shows backup and restore as a ratio to the copy of the same run (median of the
//! runs' ratios): absolute numbers drift on a shared machine, ratios taken in one run
//! do not. The copy reads a file just written, from the page cache, as the backup
//! reads the node's state from its own cache: both are bounded by the writes and
//! their fsync, which is what the ratio compares.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use reckon_gater::backup::BackupProgress;
use serde_json::{json, Value};

use super::process::gater_store;
use super::workloads::LoadedNode;

/// Bytes in the MB the table counts in.
const MB: f64 = 1e6;

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackupRun {
    /// The backup file's length.
    pub bytes: u64,
    /// Backup through the gater, MB/s.
    pub backup_mb_s: f64,
    /// The node's part of the backup (its copy and checksum, until the first chunk
    /// is read), MB/s.
    pub node_copy_mb_s: f64,
    /// Raw copy of the same bytes, MB/s.
    pub copy_mb_s: f64,
    /// Restore of the file, MB/s.
    pub restore_mb_s: f64,
}

impl BackupRun {
    /// Backup ÷ copy.
    pub fn backup_ratio(&self) -> f64 {
        ratio(self.backup_mb_s, self.copy_mb_s)
    }

    /// Restore ÷ copy.
    pub fn restore_ratio(&self) -> f64 {
        ratio(self.restore_mb_s, self.copy_mb_s)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The runs of the backup table.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    /// Events in the store backed up.
    pub events: u64,
    /// Every run.
    pub runs: Vec<BackupRun>,
}

use super::median_of as median;

impl BackupReport {
    /// The markdown table, appended to `out`.
    pub fn markdown(&self, out: &mut String) {
        use std::fmt::Write as _;
        let med = |f: fn(&BackupRun) -> f64| median(self.runs.iter().map(f).collect());
        let bytes = self.runs.first().map_or(0, |r| r.bytes);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Backup and restore of a store of {} events ({:.1} MB file), median of {} run(s), \
             beside a raw copy of the same file on the same disk in the same run:",
            super::report::thousands(self.events),
            bytes as f64 / MB,
            self.runs.len()
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| operation | MB/s (median) | min–max | ratio to raw copy |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|");
        let row = |out: &mut String, name: &str, f: fn(&BackupRun) -> f64, r: Option<f64>| {
            let all: Vec<f64> = self.runs.iter().map(f).collect();
            let min = all.iter().copied().fold(f64::INFINITY, f64::min);
            let max = all.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "| {name} | {:.1} | {:.1}–{:.1} | {} |",
                median(all),
                min,
                max,
                r.map_or("1.00x".to_string(), |r| format!("{r:.2}x"))
            );
        };
        row(out, "raw copy + fsync", |r| r.copy_mb_s, None);
        row(
            out,
            "`reckon backup` (library, through the gater)",
            |r| r.backup_mb_s,
            Some(med(BackupRun::backup_ratio)),
        );
        row(
            out,
            "of which the node's copy and checksum",
            |r| r.node_copy_mb_s,
            Some(med(|r| ratio(r.node_copy_mb_s, r.copy_mb_s))),
        );
        row(
            out,
            "`reckon-node restore` (library)",
            |r| r.restore_mb_s,
            Some(med(BackupRun::restore_ratio)),
        );
    }

    /// The figures as JSON.
    pub fn json(&self) -> Value {
        json!({
            "events": self.events,
            "runs": self.runs.iter().map(|r| json!({
                "bytes": r.bytes,
                "backup_mb_per_sec": r.backup_mb_s,
                "node_copy_mb_per_sec": r.node_copy_mb_s,
                "copy_mb_per_sec": r.copy_mb_s,
                "restore_mb_per_sec": r.restore_mb_s,
            })).collect::<Vec<_>>(),
            "backup_ratio_to_copy": median(self.runs.iter().map(BackupRun::backup_ratio).collect()),
            "restore_ratio_to_copy": median(self.runs.iter().map(BackupRun::restore_ratio).collect()),
        })
    }
}

/// One run on `node`: backup, copy and restore, every file under `dir` removed after.
pub async fn run(node: &LoadedNode, dir: &Path, r: u32) -> anyhow::Result<BackupRun> {
    let store = gater_store(&node.node().ready_gater().await?).await?;
    let file = dir.join(format!("backup-r{r}.rbk"));
    let copy = dir.join(format!("copy-r{r}"));
    let restored = dir.join(format!("restored-r{r}"));
    let measured = async {
        let started = Instant::now();
        let mut ready = None;
        let info = store
            .backup(&file, false, &mut |p| {
                if matches!(p, BackupProgress::Downloading { .. }) && ready.is_none() {
                    ready = Some(started.elapsed().as_secs_f64());
                }
            })
            .await
            .context("backup")?;
        let backup_secs = started.elapsed().as_secs_f64();
        let node_secs = ready.unwrap_or(backup_secs);
        let (from, to) = (file.clone(), copy.clone());
        let copy_secs = tokio::task::spawn_blocking(move || raw_copy(&from, &to))
            .await
            .context("copy task")??;
        let from = file.clone();
        let target = reckon_node::backup::restore::RestoreTarget {
            data_dir: restored.clone(),
            node_id: 1,
            advertise: "127.0.0.1:7600".into(),
        };
        let restore_secs = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            reckon_node::backup::restore::restore(&[from], &target)?;
            Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64())
        })
        .await
        .context("restore task")??;
        let mb = info.bytes as f64 / MB;
        Ok::<_, anyhow::Error>(BackupRun {
            bytes: info.bytes,
            backup_mb_s: mb / backup_secs,
            node_copy_mb_s: mb / node_secs,
            copy_mb_s: mb / copy_secs,
            restore_mb_s: mb / restore_secs,
        })
    }
    .await;
    for f in [&file, &copy] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(&restored);
    measured
}

/// Copies `from` to `to` and makes it durable; the seconds it took.
fn raw_copy(from: &PathBuf, to: &PathBuf) -> anyhow::Result<f64> {
    let started = Instant::now();
    std::fs::copy(from, to).with_context(|| format!("copying to {}", to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", to.display()))?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_each_operation_as_a_ratio_to_the_copy() {
        let run = |backup, restore| BackupRun {
            bytes: 2_000_000,
            backup_mb_s: backup,
            node_copy_mb_s: backup * 2.0,
            copy_mb_s: 100.0,
            restore_mb_s: restore,
        };
        let report = BackupReport {
            events: 1000,
            runs: vec![run(50.0, 80.0), run(70.0, 60.0), run(60.0, 70.0)],
        };
        let mut out = String::new();
        report.markdown(&mut out);
        assert!(
            out.contains("| raw copy + fsync | 100.0 | 100.0–100.0 | 1.00x |"),
            "{out}"
        );
        assert!(out.contains("| 60.0 | 50.0–70.0 | 0.60x |"), "{out}");
        assert!(out.contains("| 70.0 | 60.0–80.0 | 0.70x |"), "{out}");
        let j = report.json();
        assert_eq!(j["backup_ratio_to_copy"], 0.6);
    }
}
