//! Backups under test: `reckon backup` and `reckon-node restore` as processes, the
//! layout of a backup file's head, and digests of stream contents to compare a
//! restored store with its source.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use reckon_gater::types::EventRecord;

use crate::{bin, clear_env};

/// Runs `reckon-node restore --from F... --data-dir DIR --node-id N --listen ADDR`
/// with none of the caller's `RECKON_NODE_` settings: its exit code, stdout, stderr.
pub fn restore_run(
    from: &[&Path],
    data_dir: &Path,
    node_id: u64,
    listen: &str,
) -> (i32, String, String) {
    let mut cmd = Command::new(bin("reckon-node"));
    clear_env(&mut cmd, "RECKON_NODE_");
    cmd.arg("restore");
    for f in from {
        cmd.arg("--from").arg(f);
    }
    let out = cmd
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--node-id")
        .arg(node_id.to_string())
        .arg("--listen")
        .arg(listen)
        .stdin(Stdio::null())
        .output()
        .expect("run reckon-node restore");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Where the body starts in a backup file's bytes: after the 16-byte preamble, the
/// header (its length at bytes 12..16) and the header's 32-byte checksum.
pub fn body_offset(file: &[u8]) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(&file[12..16]);
    16 + u32::from_le_bytes(len) as usize + 32
}

/// Per stream: its last version and a digest of its events' contents (version, id,
/// type, data, metadata, tags, timestamp, in position order), over `events`.
pub fn stream_digests(events: &[EventRecord]) -> BTreeMap<String, (u64, String)> {
    let mut by_stream: BTreeMap<String, Vec<&EventRecord>> = BTreeMap::new();
    for e in events {
        by_stream.entry(e.stream_id.clone()).or_default().push(e);
    }
    by_stream
        .into_iter()
        .map(|(stream, mut evs)| {
            evs.sort_by_key(|e| e.position);
            let mut text = String::new();
            for e in &evs {
                text.push_str(&format!(
                    "{}|{}|{}|{}|{:?}|{:?}|{:?}|{}\n",
                    e.version,
                    e.position,
                    e.event_id,
                    e.event_type,
                    e.data,
                    e.metadata,
                    e.tags,
                    e.timestamp_us
                ));
            }
            let last = evs.last().map_or(0, |e| e.version);
            (stream, (last, digest(text.as_bytes())))
        })
        .collect()
}

/// A 64-bit FNV-1a digest of `bytes`, in hex: enough to tell two contents apart in a
/// test, with no dependency.
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
