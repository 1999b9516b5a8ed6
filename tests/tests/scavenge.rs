//! Scavenge over a real `reckon-node --dev` and its embedded gater: half of the
//! store's events are in deleted (and tombstoned) streams; `reckon scavenge start`
//! removes them while appends and reads go on, the state file shrinks, and what
//! stands reads back exactly as a model of it says, through every index. A kill -9
//! in the middle of a scavenge leaves a consistent store that finishes it after the
//! restart, from where it stood.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reckon_gater::types::{ScavengeAction, ScavengePhase, ScavengeStatus};
use reckon_gater::{Client, Direction, EventRecord, ExpectedVersion, NewEvent, StoreHandle};
use reckon_tests::{dev, dev_command, reckon_run, NodeProc};
use serde_json::json;
use uuid::Uuid;

/// Streams written; every other one is deleted.
const STREAMS: usize = 16;
/// Events per stream.
const EVENTS: usize = 60;
/// Bytes of padding in each event, so that the file's size is the events'.
const PAD: usize = 2000;

/// A `--dev` node whose scavenge looks at `step` positions per step and pauses
/// `pause_ms` after each.
fn start(dir: &Path, step: u64, pause_ms: u64) -> (NodeProc, String) {
    let mut cmd = dev_command(dir);
    cmd.env("RECKON_NODE_SCAVENGE__STEP_POSITIONS", step.to_string())
        .env("RECKON_NODE_SCAVENGE__PAUSE_MS", pause_ms.to_string());
    let node = NodeProc::spawn(cmd, dir);
    let addr = dev::gater_addr(&node);
    (node, addr)
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("default").join("state.redb")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn event(stream: usize, n: usize) -> NewEvent {
    let ty = if stream.is_multiple_of(2) {
        "kept"
    } else {
        "doomed"
    };
    NewEvent::json(ty, &json!({ "s": stream, "n": n, "pad": "x".repeat(PAD) }))
        .with_tags([format!("t{}", stream % 3)])
        .with_id(Uuid::now_v7())
}

/// What the store should hold: per stream still standing, its events' ids by version.
type Model = BTreeMap<String, Vec<Uuid>>;

/// Writes [`STREAMS`] streams of [`EVENTS`] events, interleaved, then deletes every
/// odd one (one in four hard); returns the model of what stands.
async fn load(s: &StoreHandle) -> Model {
    let mut model = Model::new();
    for round in 0..EVENTS / 10 {
        for stream in 0..STREAMS {
            let events: Vec<NewEvent> = (0..10).map(|i| event(stream, round * 10 + i)).collect();
            let ids = events.iter().filter_map(|e| e.event_id).collect::<Vec<_>>();
            s.append(&format!("s-{stream}"), ExpectedVersion::Any, events)
                .await
                .expect("append");
            model.entry(format!("s-{stream}")).or_default().extend(ids);
        }
    }
    for stream in (1..STREAMS).step_by(2) {
        let id = format!("s-{stream}");
        s.delete(&id, ExpectedVersion::Any, stream % 4 == 3)
            .await
            .expect("delete");
        model.remove(&id);
    }
    model
}

async fn status(s: &StoreHandle) -> ScavengeStatus {
    s.scavenge(ScavengeAction::Status).await.expect("status")
}

/// Waits until `pred` holds for the scavenge's status, within `within`.
async fn wait_status(
    s: &StoreHandle,
    within: Duration,
    what: &str,
    pred: impl Fn(&ScavengeStatus) -> bool,
) -> ScavengeStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(st) = s.scavenge(ScavengeAction::Status).await {
            if pred(&st) {
                return st;
            }
            assert!(Instant::now() < deadline, "{what}: {st:?}");
        }
        assert!(Instant::now() < deadline, "{what}: no status");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a whole scavenge of `positions` may take: every step its pause plus a
/// generous second of work, and as much again for the compaction.
fn scavenge_bound(positions: u64, step: u64, pause_ms: u64) -> Duration {
    let steps = positions.div_ceil(step) + 1;
    Duration::from_millis(steps * (pause_ms + 1000)) * 2 + Duration::from_secs(30)
}

/// Everything standing reads back as the model says, by stream, in `$all` (which
/// skips what was removed and keeps every position), by type and by tag. `$all`
/// still holds the deleted events the scavenge has not looked at yet: those at
/// `looked_until` or after.
async fn check(s: &StoreHandle, model: &Model, looked_until: u64) {
    let mut standing: Vec<EventRecord> = Vec::new();
    for (stream, ids) in model {
        let got = s
            .read_stream(stream, 0, 10_000, Direction::Forward)
            .await
            .expect("read");
        let got_ids: Vec<Uuid> = got.iter().map(|e| e.event_id).collect();
        assert_eq!(&got_ids, ids, "{stream}");
        let versions: Vec<u64> = got.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (0..ids.len() as u64).collect::<Vec<_>>(),
            "{stream}"
        );
        standing.extend(got);
    }
    for stream in (1..STREAMS).step_by(2) {
        assert!(
            s.read_stream(&format!("s-{stream}"), 0, 10, Direction::Forward)
                .await
                .is_err(),
            "deleted s-{stream} reads"
        );
    }
    standing.sort_by_key(|e| e.position);
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let page = s
            .read_all(from, 1000, Direction::Forward)
            .await
            .expect("read all");
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        all.extend(page);
    }
    let key = |e: &EventRecord| (e.position, e.stream_id.clone(), e.version, e.event_id);
    let stands = |e: &EventRecord| model.contains_key(&e.stream_id);
    for e in all.iter().filter(|e| !stands(e)) {
        assert!(
            e.position >= looked_until,
            "a deleted event the scavenge looked at is still in $all: {}@{}",
            e.stream_id,
            e.position
        );
    }
    assert_eq!(
        all.iter()
            .filter(|e| stands(e))
            .map(key)
            .collect::<Vec<_>>(),
        standing.iter().map(key).collect::<Vec<_>>(),
        "$all holds what stands, in position order"
    );
    let by_type = s
        .read_by_event_types(&["kept", "doomed"], 0, 10_000)
        .await
        .expect("by type");
    assert_eq!(
        by_type.iter().map(key).collect::<Vec<_>>(),
        standing.iter().map(key).collect::<Vec<_>>(),
        "type index"
    );
    for t in 0..3 {
        let tag = format!("t{t}");
        let got = s
            .read_by_tags(&[tag.as_str()], reckon_gater::TagMatch::Any, 0, 10_000)
            .await
            .expect("by tag");
        let want: Vec<_> = standing
            .iter()
            .filter(|e| e.tags.contains(&tag))
            .map(key)
            .collect();
        assert_eq!(got.iter().map(key).collect::<Vec<_>>(), want, "tag {tag}");
    }
}

#[tokio::test]
async fn scavenge_removes_deleted_events_while_writes_go_on_and_gives_the_space_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (step, pause_ms) = (100, 50);
    let (_node, addr) = start(dir.path(), step, pause_ms);
    let client: Client = dev::wait_for_store(&addr, "default").await;
    let s = client.store("default");
    let mut model = load(&s).await;
    let written = (STREAMS * EVENTS) as u64;
    assert_eq!(status(&s).await.phase, ScavengePhase::Never);
    let before = file_len(&state_file(dir.path()));

    let (code, out, err) = reckon_run(&addr, &[], &["scavenge", "start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("running") || out.starts_with("done"),
        "{out}"
    );

    // Appends and reads while it runs.
    let mut during = Vec::new();
    for i in 0..20 {
        let id = Uuid::now_v7();
        let e = NewEvent::json("kept", &json!({ "during": i }))
            .with_tags(["t0"])
            .with_id(id);
        during.push(id);
        let r = s
            .append("during", ExpectedVersion::Any, vec![e])
            .await
            .expect("append during the scavenge");
        assert!(r.first_position >= written, "a position reused: {r:?}");
        s.read_stream("s-0", 0, 10, Direction::Forward)
            .await
            .expect("read during the scavenge");
    }
    model.insert("during".into(), during);

    let done = wait_status(
        &s,
        scavenge_bound(written + 40, step, pause_ms),
        "the scavenge done and the file compacted",
        |st| st.phase == ScavengePhase::Done && st.reclaimed_bytes > 0,
    )
    .await;
    // Half the events were in deleted streams.
    assert_eq!(done.removed_events, written / 2, "{done:?}");
    assert_eq!(done.generation, 1);
    let after = file_len(&state_file(dir.path()));
    println!(
        "state file {before} bytes before the scavenge, {after} after: {:.0}% smaller",
        100.0 * (1.0 - after as f64 / before as f64)
    );
    assert!(
        after < before,
        "the file did not shrink: {before} -> {after}"
    );
    check(&s, &model, u64::MAX).await;

    // New appends take new positions, never a removed one.
    let r = s
        .append("after", ExpectedVersion::NoStream, vec![event(0, 0)])
        .await
        .expect("append after");
    assert_eq!(r.first_position, written + 20);
    // `reckon scavenge status` says it is done.
    let (code, out, _) = reckon_run(&addr, &[], &["scavenge", "status"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("done 100%"), "{out}");
}

#[tokio::test]
async fn a_kill_9_mid_scavenge_leaves_a_consistent_store_that_finishes_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Slow: a step of 40 positions every 200 ms at least.
    let (step, pause_ms) = (40, 200);
    let (mut node, addr) = start(dir.path(), step, pause_ms);
    let client = dev::wait_for_store(&addr, "default").await;
    let s = client.store("default");
    let model = load(&s).await;
    let written = (STREAMS * EVENTS) as u64;
    let started = s.scavenge(ScavengeAction::Start).await.expect("start");
    assert_eq!(started.end, written);

    // Somewhere in the middle.
    let mid = wait_status(
        &s,
        scavenge_bound(written, step, pause_ms),
        "a scavenge under way",
        |st| st.phase == ScavengePhase::Running && st.next >= written / 4,
    )
    .await;
    assert!(mid.next < written, "{mid:?}");
    node.kill9();
    drop(client);

    let (_node, addr) = start(dir.path(), step, pause_ms);
    let client = dev::wait_for_store(&addr, "default").await;
    let s = client.store("default");
    // It stands where a step left it, not before where it was seen, and goes on.
    let resumed = status(&s).await;
    assert!(
        resumed.next >= mid.next && resumed.generation == 1,
        "{mid:?} then {resumed:?}"
    );
    // Consistent while unfinished: what stands reads as the model says.
    check(&s, &model, resumed.next).await;
    let done = wait_status(
        &s,
        scavenge_bound(written, step, pause_ms),
        "the scavenge finished after the restart",
        |st| st.phase == ScavengePhase::Done && st.reclaimed_bytes > 0,
    )
    .await;
    assert_eq!(done.removed_events, written / 2, "{done:?}");
    check(&s, &model, u64::MAX).await;
}

#[tokio::test]
async fn a_stopped_scavenge_stays_stopped_and_resumes_where_it_stood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (step, pause_ms) = (40, 200);
    let (_node, addr) = start(dir.path(), step, pause_ms);
    let client = dev::wait_for_store(&addr, "default").await;
    let s = client.store("default");
    let model = load(&s).await;
    let written = (STREAMS * EVENTS) as u64;
    s.scavenge(ScavengeAction::Start).await.expect("start");
    wait_status(
        &s,
        scavenge_bound(written, step, pause_ms),
        "under way",
        |st| st.next > 0,
    )
    .await;
    let (code, out, err) = reckon_run(&addr, &[], &["--json", "scavenge", "stop"]);
    assert_eq!(code, 0, "{err}");
    let stopped: ScavengeStatus = serde_json::from_str(out.trim()).expect("json status");
    assert_eq!(stopped.phase, ScavengePhase::Stopped);
    // A few steps' time later, it has not moved.
    tokio::time::sleep(Duration::from_millis(3 * (pause_ms + 100))).await;
    let still = status(&s).await;
    assert_eq!(
        (still.phase, still.next),
        (ScavengePhase::Stopped, stopped.next)
    );
    check(&s, &model, still.next).await;
    // Resumed, it goes on from there to the end.
    let resumed = s.scavenge(ScavengeAction::Start).await.expect("resume");
    assert!(
        resumed.next >= stopped.next && resumed.generation == 1,
        "{resumed:?}"
    );
    let done = wait_status(&s, scavenge_bound(written, step, pause_ms), "done", |st| {
        st.phase == ScavengePhase::Done
    })
    .await;
    assert_eq!(done.removed_events, written / 2);
    check(&s, &model, u64::MAX).await;
}
