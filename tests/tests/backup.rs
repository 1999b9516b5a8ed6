//! Online backup and restore, over real processes.
//!
//! - A backup taken with `reckon backup` while writers append holds every event
//!   acknowledged before it was asked for, nothing at or after its position, and the
//!   same contents, stream by stream, as the source had below that position; a node
//!   restored from it answers reads, versions, snapshots and subscription checkpoints
//!   as the source did (a stream's retention too), and a 3-node cluster grown from it
//!   converges.
//! - A damaged, truncated or other-format backup, and a data directory that is not
//!   empty, are refused by `reckon-node restore` with a message naming the fault and
//!   nothing written.
//! - `--all-stores` writes one file per store, and a directory of them restores
//!   every store; a backup that fails leaves no file behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::types::{EventRecord, Role, StreamRetention, SubscriptionType};
use reckon_gater::{Client, ExpectedVersion, NewEvent, StoreHandle};
use reckon_tests::backup::{body_offset, restore_run, stream_digests};
use reckon_tests::cluster::{formed, Cluster};
use reckon_tests::dev::{start_dev_with_gater, wait_for_store};
use reckon_tests::wait::{self, wait_until};
use reckon_tests::{reckon_run, NodeProc};
use serde_json::json;

const STORE: &str = "default";
/// Concurrent writers during the backup, each to its own stream.
const WRITERS: usize = 4;
/// Appends acknowledged before the backup is asked for.
const ACKED_BEFORE: usize = 200;
/// Appends acknowledged after the backup returned: the load went on through it.
const ACKED_AFTER: usize = 40;

/// One acknowledged append: its stream, version and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Acked {
    writer: usize,
    version: u64,
    position: u64,
}

/// Appends to `writer-<i>` until `stop`, recording every acknowledged append.
async fn write_until(
    s: StoreHandle,
    i: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    count: Arc<AtomicUsize>,
) {
    let stream = format!("writer-{i}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let e = NewEvent::json(
            "written",
            &json!({ "writer": i, "n": n, "pad": "x".repeat(200) }),
        )
        .with_tags([format!("w{i}")]);
        if let Ok(r) = s.append(&stream, ExpectedVersion::Any, vec![e]).await {
            acked.lock().unwrap().push(Acked {
                writer: i,
                version: r.version,
                position: r.first_position,
            });
            count.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

/// Every event of the store, paging through `$all`.
async fn everything(s: &StoreHandle) -> Vec<EventRecord> {
    let mut out: Vec<EventRecord> = Vec::new();
    loop {
        let from = out.last().map_or(0, |e| e.position + 1);
        let page = s
            .read_all(from, 1000, reckon_gater::types::Direction::Forward)
            .await
            .expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Runs the CLI off the async workers.
async fn reckon(gater: &str, args: &[&str]) -> (i32, String, String) {
    let gater = gater.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        reckon_run(&gater, &[], &args)
    })
    .await
    .expect("reckon")
}

/// A restore into `dir` that must succeed.
fn restore_ok(from: &[&Path], dir: &Path, addr: &str) -> String {
    let (code, out, err) = restore_run(from, dir, 1, addr);
    assert_eq!(code, 0, "restore failed: {err}");
    out
}

/// `reckon-node --dev` on `dir` listening on `addr` (the address a restore recorded),
/// its embedded gater on a free port: the node and the gater's address.
fn start_dev_at(dir: &Path, addr: &str, extra: &[&str]) -> (NodeProc, String) {
    let mut cmd = std::process::Command::new(reckon_tests::bin("reckon-node"));
    reckon_tests::clear_env(&mut cmd, "RECKON_NODE_");
    cmd.args([
        "--dev",
        "--listen",
        addr,
        "--dev-gater-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir)
    .args(extra);
    let node = NodeProc::spawn(cmd, dir);
    let gater = reckon_tests::dev::gater_addr(&node);
    (node, gater)
}

/// A free loopback address for a node.
fn free_addr() -> String {
    format!("127.0.0.1:{}", reckon_tests::ports::free_ports(1)[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_holds_exactly_what_preceded_it_and_a_cluster_grows_from_it() {
    let root = tempfile::tempdir().unwrap();
    let (mut source, gater) = start_dev_with_gater(&root.path().join("source"), &[]);
    let client = wait_for_store(&gater, STORE).await;
    let s = client.store(STORE);

    // Besides events: a deleted stream, a snapshot, a subscription with a checkpoint.
    for i in 0..5 {
        s.append(
            "order-1",
            ExpectedVersion::Any,
            vec![NewEvent::json("placed", &json!({ "i": i })).with_tags(["eu"])],
        )
        .await
        .unwrap();
    }
    s.append(
        "gone-1",
        ExpectedVersion::Any,
        vec![NewEvent::json("x", &json!({}))],
    )
    .await
    .unwrap();
    s.delete("gone-1", ExpectedVersion::Any, false)
        .await
        .unwrap();
    s.save_snapshot(
        "order-1",
        4,
        b"{\"total\":5}".to_vec(),
        b"{\"m\":1}".to_vec(),
    )
    .await
    .unwrap();
    let sub = s
        .subscribe(
            SubscriptionType::Stream,
            "order-1",
            "audit",
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    s.ack(&sub.key, "c1", 2).await.unwrap();
    let retention = StreamRetention {
        truncate_before: Some(1),
        ..StreamRetention::default()
    };
    s.set_retention("order-1", retention).await.unwrap();

    // The load, through the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let gater = gater.clone();
            let (stop, acked, count) = (stop.clone(), acked.clone(), count.clone());
            tokio::spawn(async move {
                let c = Client::connect(&[gater.as_str()]).await.expect("connect");
                write_until(c.store(STORE), i, stop, acked, count).await
            })
        })
        .collect();
    wait_until(
        "appends before the backup",
        wait::for_appends(ACKED_BEFORE as u64),
        || async { count.load(Ordering::Relaxed) >= ACKED_BEFORE },
    )
    .await;
    let before: Vec<Acked> = acked.lock().unwrap().clone();
    let file = root.path().join("default.rbk");
    let (code, out, err) = reckon(
        &gater,
        &["--json", "backup", "--out", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "backup failed: {err}");
    let after_backup = count.load(Ordering::Relaxed);
    wait_until(
        "appends after the backup",
        wait::for_appends(ACKED_AFTER as u64),
        || async { count.load(Ordering::Relaxed) >= after_backup + ACKED_AFTER },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let info: serde_json::Value = serde_json::from_str(out.trim()).expect("backup's JSON line");
    let position = info["next_position"].as_u64().expect("next_position");
    assert_eq!(info["store"], STORE);
    assert!(!Path::new(&format!("{}.partial", file.display())).exists());

    // Every append acknowledged before the backup was asked for is below its
    // position; the writes went on past it.
    for a in &before {
        assert!(
            a.position < position,
            "{a:?} was acknowledged before the backup, which ends at {position}"
        );
    }
    let source_all = everything(&s).await;
    assert!(
        source_all.last().unwrap().position >= position,
        "no write landed after the backup's position {position}: not a backup under load"
    );
    let source_below: Vec<EventRecord> = source_all
        .into_iter()
        .filter(|e| e.position < position)
        .collect();
    let source_versions: BTreeMap<String, Option<u64>> = {
        let mut m = BTreeMap::new();
        for st in ["order-1", "gone-1", "writer-0", "writer-1"] {
            m.insert(st.to_string(), None);
        }
        for e in &source_below {
            if e.stream_id != "gone-1" {
                m.insert(e.stream_id.clone(), Some(e.version));
            }
        }
        m
    };
    let sub_at_backup = s.subscription(&sub.key).await.unwrap();
    drop(client);
    source.terminate();

    // Restored alone: exactly the events below the position, the same contents
    // stream by stream, and the same versions, snapshot and checkpoint.
    let addr = free_addr();
    let restored_dir = root.path().join("restored");
    let said = restore_ok(&[&file], &restored_dir, &addr);
    assert!(
        said.contains(&format!("every position below {position}")),
        "{said}"
    );
    let (node, rgater) = start_dev_at(&restored_dir, &addr, &[]);
    let rclient = wait_for_store(&rgater, STORE).await;
    let r = rclient.store(STORE);
    let restored_all = everything(&r).await;
    let positions: Vec<u64> = restored_all.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (0..position)
            .filter(|p| source_below.iter().any(|e| e.position == *p))
            .collect::<Vec<_>>(),
        "the restored log is not the source's below {position}"
    );
    assert_eq!(
        positions.last().copied().unwrap_or(0) + 1,
        position,
        "the last event below the position is missing"
    );
    assert_eq!(stream_digests(&restored_all), stream_digests(&source_below));
    for a in &before {
        let e = restored_all
            .iter()
            .find(|e| e.position == a.position)
            .unwrap_or_else(|| panic!("{a:?} is not in the restored store"));
        assert_eq!(
            (e.stream_id.clone(), e.version),
            (format!("writer-{}", a.writer), a.version)
        );
    }
    for (stream, version) in &source_versions {
        assert_eq!(&r.get_version(stream).await.unwrap(), version, "{stream}");
    }
    let snap = r.load_snapshot("order-1", None).await.unwrap();
    assert_eq!(
        (snap.version, snap.data.as_slice()),
        (4, b"{\"total\":5}".as_slice())
    );
    assert_eq!(r.retention("order-1").await.unwrap(), retention);
    let first = r.read("order-1", 0, 1).await.unwrap();
    assert_eq!(
        first[0].version, 1,
        "the restored retention hides version 0"
    );
    let rsub = r.subscription(&sub.key).await.unwrap();
    assert_eq!(rsub.cursor, sub_at_backup.cursor, "the checkpoint moved");
    // A restored store writes on after the backup's position.
    let next = r
        .append(
            "order-1",
            ExpectedVersion::Exact(4),
            vec![NewEvent::json("paid", &json!({}))],
        )
        .await
        .unwrap();
    assert_eq!((next.version, next.first_position), (5, position));
    drop(rclient);
    drop(node);

    // A cluster grown from the restored node: the two new nodes join it and catch up.
    let c = Cluster::start_seeded(3, &[STORE], |dir, addr| {
        restore_ok(&[&file], dir, addr);
    });
    let client = formed(&c).await;
    let cs = client.store(STORE);
    let marker = cs
        .append(
            "after-growth",
            ExpectedVersion::NoStream,
            vec![NewEvent::json("grown", &json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(marker.first_position, position);
    wait_until("every node a voter", wait::for_events(position), || async {
        client.cluster_status().await.is_ok_and(|st| {
            st.iter().any(|s| {
                s.store == STORE
                    && s.nodes.len() == 3
                    && s.nodes
                        .iter()
                        .all(|n| matches!(n.role, Role::Leader | Role::Follower))
            })
        })
    })
    .await;
    let mut expected = source_below.clone();
    let grown = everything(&cs).await;
    expected.push(grown.last().unwrap().clone());
    for i in 0..3 {
        let node = c.node(i);
        let direct =
            StoreHandle::direct(node.worker().await, STORE, Duration::from_secs(20)).stale();
        wait_until(
            &format!("node {} to hold the restored store", i + 1),
            wait::for_events(position),
            || async { everything(&direct).await.len() == expected.len() },
        )
        .await;
        assert_eq!(
            stream_digests(&everything(&direct).await),
            stream_digests(&expected),
            "node {} differs",
            i + 1
        );
    }
}

/// A real backup of a small store, made by a node that is stopped again.
async fn small_backup(dir: &Path) -> PathBuf {
    let (mut node, gater) = start_dev_with_gater(&dir.join("source"), &[]);
    let client = wait_for_store(&gater, STORE).await;
    let s = client.store(STORE);
    for i in 0..20 {
        s.append(
            &format!("s-{}", i % 3),
            ExpectedVersion::Any,
            vec![NewEvent::json("t", &json!({ "i": i }))],
        )
        .await
        .unwrap();
    }
    let file = dir.join("good.rbk");
    let (code, _, err) = reckon(&gater, &["backup", "--out", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    drop(client);
    node.terminate();
    file
}

/// What `dir`'s parent holds besides `keep`: a refused restore must leave nothing.
fn leftovers(parent: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn damaged_truncated_and_other_format_backups_and_a_used_data_dir_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let good = small_backup(root.path()).await;
    let bytes = std::fs::read(&good).unwrap();
    let body = body_offset(&bytes);
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let addr = free_addr();

    let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let p = root.path().join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            variant("body-flip.rbk", &|b| {
                let at = body + (b.len() - body) / 2;
                b[at] ^= 0x01
            }),
            "body has SHA-256",
        ),
        (
            variant("header-flip.rbk", &|b| b[20] ^= 0x01),
            "header is damaged",
        ),
        (
            variant("truncated.rbk", &|b| {
                b.truncate(body + (b.len() - body) / 3)
            }),
            "(truncated)",
        ),
        (
            variant("next-format.rbk", &|b| {
                b[8..12].copy_from_slice(&2u32.to_le_bytes())
            }),
            "backup of format 2",
        ),
        (
            variant("not-a-backup.rbk", &|b| b[0] = b'X'),
            "is not a reckon-db backup",
        ),
    ];
    for (file, says) in &cases {
        let dir = work.join("data");
        let (code, _, err) = restore_run(&[file], &dir, 1, &addr);
        assert_ne!(code, 0, "{} was restored", file.display());
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(!dir.exists(), "{}: the data dir was made", file.display());
        assert_eq!(
            leftovers(&work, &[]),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
    }

    // A data directory that holds something is refused and left as it was.
    let used = work.join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep.txt"), b"mine").unwrap();
    let (code, _, err) = restore_run(&[&good], &used, 1, &addr);
    assert_ne!(code, 0);
    assert!(
        err.contains("is not empty") && err.contains("keep.txt"),
        "{err}"
    );
    assert_eq!(leftovers(&used, &[]), vec!["keep.txt".to_string()]);
    assert_eq!(leftovers(&work, &["used"]), Vec::<String>::new());

    // The same file, untouched, restores into an empty directory: the refusals above
    // were for the damage.
    let empty = work.join("empty");
    std::fs::create_dir(&empty).unwrap();
    restore_ok(&[&good], &empty, &addr);
    let (node, _) = start_dev_at(&empty, &addr, &[]);
    let db = reckon_tests::StoreClient::connect_serving(&node, STORE).await;
    assert_eq!(db.read_all_everything().await.len(), 20);
}

#[tokio::test]
async fn every_store_backs_up_into_its_own_file_and_a_failed_backup_leaves_none() {
    let root = tempfile::tempdir().unwrap();
    let (node, gater) = start_dev_with_gater(
        &root.path().join("source"),
        &["--store", "alpha", "--store", "beta"],
    );
    wait_for_store(&gater, "beta").await;
    let client = wait_for_store(&gater, "alpha").await;
    for (store, n) in [("alpha", 3), ("beta", 7)] {
        for _ in 0..n {
            client
                .store(store)
                .append(
                    "s",
                    ExpectedVersion::Any,
                    vec![NewEvent::json("t", &json!({}))],
                )
                .await
                .unwrap();
        }
    }
    let dir = root.path().join("all");
    let (code, out, err) = reckon(
        &gater,
        &[
            "--json",
            "backup",
            "--all-stores",
            "--out",
            dir.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(leftovers(&dir, &[]).len(), 2);

    // A store that does not exist: an error, and no file under either name.
    let none = root.path().join("none.rbk");
    let (code, _, err) = reckon(
        &gater,
        &[
            "--store",
            "nosuch",
            "backup",
            "--out",
            none.to_str().unwrap(),
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");
    assert!(!none.exists() && !root.path().join("none.rbk.partial").exists());
    // An existing file is not replaced without --force.
    let (code, _, err) = reckon(
        &gater,
        &[
            "--store",
            "alpha",
            "backup",
            "--out",
            dir.join("alpha.rbk").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists already"), "{err}");
    drop(client);
    drop(node);

    // The directory restores both stores.
    let addr = free_addr();
    let restored = root.path().join("restored");
    let said = restore_ok(&[&dir], &restored, &addr);
    assert!(
        said.contains("store alpha") && said.contains("store beta"),
        "{said}"
    );
    let (node, _) = start_dev_at(&restored, &addr, &["--store", "alpha", "--store", "beta"]);
    for (store, n) in [("alpha", 3), ("beta", 7)] {
        let db = reckon_tests::StoreClient::connect_serving(&node, store).await;
        assert_eq!(db.read_all_everything().await.len(), n, "{store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_is_backed_up_from_its_leader_and_restores_whole() {
    let c = Cluster::start(3, &[STORE]);
    let client = formed(&c).await;
    let s = client.store(STORE);
    for i in 0..30 {
        s.append(
            &format!("c-{}", i % 4),
            ExpectedVersion::Any,
            vec![NewEvent::json("t", &json!({ "i": i }))],
        )
        .await
        .unwrap();
    }
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("cluster.rbk");
    let (code, out, err) = reckon(
        &c.gater.addr,
        &["--json", "backup", "--out", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let leader = reckon_tests::cluster::leader_of(&client, STORE).await;
    assert_eq!(info["node_id"].as_u64(), leader, "not taken on the leader");
    assert_eq!(info["next_position"], 30);
    let source = everything(&s).await;
    drop(client);
    drop(c);

    let addr = free_addr();
    let dir = root.path().join("restored");
    restore_ok(&[&file], &dir, &addr);
    let (_node, gater) = start_dev_at(&dir, &addr, &[]);
    let r = wait_for_store(&gater, STORE).await.store(STORE);
    assert_eq!(
        stream_digests(&everything(&r).await),
        stream_digests(&source)
    );
}

/// Delay of each backup chunk on every node: a download of a dozen chunks is still
/// under way when its leader dies.
const SLOW_CHUNK_MS: &str = "700";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_leader_dies_while_it_is_read_starts_again_on_the_new_leader() {
    let mut c = Cluster::start(3, &[STORE]);
    // Every node reads backup chunks slowly.
    for i in 0..3 {
        c.kill9(i);
        c.start_node_with_env(
            i,
            &[("RECKON_NODE_FAULTS__BACKUP_CHUNK_DELAY_MS", SLOW_CHUNK_MS)],
        );
    }
    let client = formed(&c).await;
    let s = client.store(STORE);
    // About a dozen 1 MiB chunks.
    let pad = "y".repeat(1000);
    for b in 0..12 {
        let events = (0..1000)
            .map(|i| NewEvent::json("bulk", &json!({ "b": b, "i": i, "pad": pad })))
            .collect();
        s.append(&format!("bulk-{}", b % 3), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let source = everything(&s).await;
    let old = reckon_tests::cluster::leader_of(&client, STORE)
        .await
        .expect("a leader");

    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("moved.rbk");
    let partial = root.path().join("moved.rbk.partial");
    let backup = {
        let (gater, file) = (c.gater.addr.clone(), file.clone());
        tokio::spawn(async move {
            reckon(
                &gater,
                &[
                    "--json",
                    "--timeout-ms",
                    "10000",
                    "backup",
                    "--out",
                    file.to_str().unwrap(),
                ],
            )
            .await
        })
    };
    wait_until("the download to start", wait::BASE, || async {
        partial.exists()
    })
    .await;
    c.kill9_id(old);
    let (code, out, err) = backup.await.unwrap();
    assert_eq!(code, 0, "the backup did not survive its leader: {err}");
    let info: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let taken_by = info["node_id"].as_u64().unwrap();
    assert_ne!(taken_by, old, "the file came from the node that died");
    assert!(!partial.exists());
    drop(client);
    drop(c);

    let addr = free_addr();
    let dir = root.path().join("restored");
    restore_ok(&[&file], &dir, &addr);
    let (_node, gater) = start_dev_at(&dir, &addr, &[]);
    let r = wait_for_store(&gater, STORE).await.store(STORE);
    let restored = everything(&r).await;
    let bulk = |evs: &[EventRecord]| {
        evs.iter()
            .filter(|e| e.stream_id.starts_with("bulk-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stream_digests(&bulk(&restored)),
        stream_digests(&bulk(&source))
    );
}
