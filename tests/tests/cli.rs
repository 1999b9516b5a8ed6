//! The `reckon` CLI, black box: the real binary against a `--dev` node with its
//! embedded gater. Covers the stream commands, the `--json` shapes and exit codes
//! scripts rely on, snapshots, health and cluster, and bad input.
//!
//! Every test starts its own node on free ports in its own temp dir, so tests run in
//! parallel without sharing state.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reckon_gater::{ContentType, ExpectedVersion, NewEvent};
use reckon_tests::{bin, dev, one_event, NodeProc};
use serde_json::{json, Value};

/// A dev node with its gater, and the temp dir it lives in.
struct Env {
    addr: String,
    client: reckon_gater::Client,
    dir: tempfile::TempDir,
    _node: NodeProc,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let (node, addr) = dev::start_dev_with_gater(dir.path(), &[]);
    let client = dev::wait_for_store(&addr, "default").await;
    Env {
        addr,
        client,
        dir,
        _node: node,
    }
}

/// What one `reckon` run gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("reckon was killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts success and gives stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "reckon failed: {self:?}");
        assert!(self.stderr.is_empty(), "stderr on success: {self:?}");
        &self.stdout
    }

    /// Asserts exit `code`, empty stdout and one `error: ` line on stderr; gives it
    /// without the newline.
    #[track_caller]
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "wrong exit code: {self:?}");
        assert!(self.stdout.is_empty(), "stdout on failure: {self:?}");
        assert!(
            self.stderr.starts_with("error: "),
            "stderr is not an error line: {self:?}"
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "the error is not one line: {self:?}"
        );
        self.stderr.trim_end()
    }

    /// stdout as one JSON value a line.
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }
}

fn reckon_cmd(gater: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("reckon"));
    cmd.env_remove("RECKON_GATER")
        .arg("--gater")
        .arg(gater)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs `reckon --gater ADDR args...`.
fn reckon_at(gater: &str, args: &[&str]) -> Run {
    Run::from(reckon_cmd(gater, args).output().expect("run reckon"))
}

impl Env {
    fn reckon(&self, args: &[&str]) -> Run {
        reckon_at(&self.addr, args)
    }

    /// Runs `reckon` with `stdin` as its standard input.
    fn reckon_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = reckon_cmd(&self.addr, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reckon");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        Run::from(child.wait_with_output().expect("wait for reckon"))
    }

    /// Writes `text` to a file in the test's temp dir; gives its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write batch file");
        path.to_str().expect("UTF-8 path").to_string()
    }

    /// Appends `n` events of type `t` to `stream`, one call each.
    fn append_n(&self, stream: &str, n: usize) {
        for _ in 0..n {
            self.reckon(&["append", stream, "--type", "t", "--data", "{}"])
                .ok();
        }
    }

    /// The stream's version through the CLI.
    fn version(&self, stream: &str) -> i64 {
        self.reckon(&["version", stream])
            .ok()
            .trim()
            .parse()
            .expect("version is a number")
    }

    /// The versions `read` prints (second column of each text line).
    fn read_versions(&self, args: &[&str]) -> Vec<u64> {
        let mut full = vec!["read"];
        full.extend_from_slice(args);
        text_column(self.reckon(&full).ok(), 1)
    }
}

/// Column `i` (0-based, space-separated) of each text line, as numbers.
fn text_column(stdout: &str, i: usize) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| {
            l.split(' ')
                .nth(i)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("column {i} of {l:?} is not a number"))
        })
        .collect()
}

fn batch_line(event_type: &str, data: Value) -> String {
    json!({"event_type": event_type, "data": data}).to_string()
}

// ---------------------------------------------------------------- appends

/// The arguments `append order-1 --type placed --data {"total":5}`, then `extra`.
fn append_placed<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "append",
        "order-1",
        "--type",
        "placed",
        "--data",
        r#"{"total":5}"#,
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn new_stream_then_next_append_then_any_twice() {
    let env = start().await;
    // new stream: NoStream, 1 event -> version 0
    let r = env.reckon(&append_placed(&["--expected", "no-stream"]));
    assert_eq!(r.ok(), "0\n");
    // next append: Exact(0) -> version 1
    let r = env.reckon(&["append", "order-1", "--type", "paid", "--expected", "0"]);
    assert_eq!(r.ok(), "1\n");
    // Any twice on a new stream: 0, then 1 (Any is the default; -2 is its integer)
    assert_eq!(env.reckon(&["append", "any-1", "--type", "t"]).ok(), "0\n");
    assert_eq!(
        env.reckon(&["append", "any-1", "--type", "t", "--expected", "-2"])
            .ok(),
        "1\n"
    );
    // The seed's integers: -1 = NoStream, -4 = StreamExists.
    assert_eq!(
        env.reckon(&["append", "ints-1", "--type", "t", "--expected", "-1"])
            .ok(),
        "0\n"
    );
    assert_eq!(
        env.reckon(&["append", "ints-1", "--type", "t", "--expected", "-4"])
            .ok(),
        "1\n"
    );
    // --json: {"version":N}
    let v = env
        .reckon(&[
            "--json",
            "append",
            "order-1",
            "--type",
            "shipped",
            "--expected",
            "1",
        ])
        .json_lines();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["version"], 2);
}

#[tokio::test]
async fn wrong_expected_version_exits_3_with_the_exact_line() {
    let env = start().await;
    env.reckon(&["append", "s", "--type", "t", "--expected", "no-stream"])
        .ok();
    // wrong version: stream at 0, Exact(5)
    let r = env.reckon(&["append", "s", "--type", "t", "--expected", "5"]);
    assert_eq!(
        r.fails(3),
        "error: WrongExpectedVersion: expected 5, current 0"
    );
    assert_eq!(
        r.stderr,
        "error: WrongExpectedVersion: expected 5, current 0\n"
    );
    // NoStream on an existing stream
    let r = env.reckon(&["append", "s", "--type", "t", "--expected", "no-stream"]);
    assert_eq!(
        r.fails(3),
        "error: WrongExpectedVersion: expected -1, current 0"
    );
    // StreamExists on a missing stream / on an existing one
    let r = env.reckon(&[
        "append",
        "missing",
        "--type",
        "t",
        "--expected",
        "stream-exists",
    ]);
    assert_eq!(
        r.fails(3),
        "error: WrongExpectedVersion: expected -4, current -1"
    );
    assert_eq!(
        env.reckon(&["append", "s", "--type", "t", "--expected", "stream-exists"])
            .ok(),
        "1\n"
    );
    // Nothing was written by the refused appends.
    assert_eq!(env.version("s"), 1);
    assert_eq!(env.version("missing"), -1);
}

#[tokio::test]
async fn a_batch_of_five_from_a_file_is_one_append_with_consecutive_positions() {
    let env = start().await;
    env.append_n("other", 2); // so that the batch does not start at position 0
    let lines: Vec<String> = (0..5)
        .map(|i| batch_line("item", json!({"n": i})))
        .collect();
    let f = env.file("five.jsonl", &(lines.join("\n") + "\n"));
    let v = env
        .reckon(&[
            "--json",
            "append",
            "batch-1",
            "--file",
            &f,
            "--expected",
            "no-stream",
        ])
        .json_lines();
    assert_eq!(v[0]["version"], 4);
    assert_eq!(v[0]["first_position"], 2);
    assert_eq!(v[0]["last_position"], 6);
    let events = env.reckon(&["--json", "read", "batch-1"]).json_lines();
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [0, 1, 2, 3, 4]);
    assert_eq!(positions, [2, 3, 4, 5, 6]);
    assert_eq!(events[3]["data"], json!({"n": 3}));

    // The same from stdin, with every field of a line.
    let id = uuid::Uuid::now_v7().to_string();
    let stdin = format!(
        "{}\n\n{}\n",
        json!({"event_type": "a", "data": {"x": 1}, "metadata": {"by": "me"}, "tags": ["eu"], "event_id": id}),
        json!({"event_type": "b"}),
    );
    let r = env.reckon_stdin(
        &[
            "append",
            "batch-2",
            "--file",
            "-",
            "--expected",
            "no-stream",
        ],
        &stdin,
    );
    assert_eq!(r.ok(), "1\n");
    let events = env.reckon(&["--json", "read", "batch-2"]).json_lines();
    assert_eq!(events[0]["event_id"], id.as_str());
    assert_eq!(events[0]["metadata"], json!({"by": "me"}));
    assert_eq!(events[0]["tags"], json!(["eu"]));
    assert_eq!(events[1]["event_type"], "b");
    assert_eq!(events[1]["data"], json!({}));
}

#[tokio::test]
async fn a_bad_batch_writes_nothing() {
    let env = start().await;
    // A file whose 3rd line is not JSON: exit 2 naming the line, nothing written.
    let text = format!(
        "{}\n{}\n{{\"event_type\": oops}}\n{}\n",
        batch_line("a", json!(1)),
        batch_line("b", json!(2)),
        batch_line("d", json!(4))
    );
    let f = env.file("bad.jsonl", &text);
    let r = env.reckon(&["append", "atomic-1", "--file", &f]);
    let line = r.fails(2);
    assert!(line.contains("line 3 of "), "{line}");
    assert!(
        line.contains("event_type"),
        "says what a line must hold: {line}"
    );
    assert_eq!(env.version("atomic-1"), -1);
    // A line with an unknown key (a typo) is refused the same way.
    let f = env.file("typo.jsonl", &json!({"type": "a"}).to_string());
    let line = env
        .reckon(&["append", "atomic-1", "--file", &f])
        .fails(2)
        .to_string();
    assert!(
        line.contains("line 1 of ") && line.contains("unknown field `type`"),
        "{line}"
    );
    assert_eq!(env.version("atomic-1"), -1);

    // A batch that violates the expected version writes none of its events.
    env.reckon(&["append", "atomic-2", "--type", "first"]).ok();
    let lines: Vec<String> = (0..3).map(|i| batch_line("x", json!(i))).collect();
    let f = env.file("three.jsonl", &lines.join("\n"));
    let r = env.reckon(&["append", "atomic-2", "--file", &f, "--expected", "7"]);
    assert_eq!(
        r.fails(3),
        "error: WrongExpectedVersion: expected 7, current 0"
    );
    assert_eq!(env.version("atomic-2"), 0);
    assert_eq!(env.read_versions(&["atomic-2"]), [0]);
    // A missing file is a usage error naming it.
    let line = env
        .reckon(&["append", "atomic-3", "--file", "/nonexistent/x.jsonl"])
        .fails(2)
        .to_string();
    assert!(line.contains("/nonexistent/x.jsonl"), "{line}");
}

#[tokio::test]
async fn concurrent_writers_exactly_one_wins_per_version() {
    let env = start().await;
    env.reckon(&["append", "race", "--type", "t", "--expected", "no-stream"])
        .ok();
    const WRITERS: usize = 20;
    for round in 0..3u64 {
        let expected = round.to_string();
        let children: Vec<_> = (0..WRITERS)
            .map(|i| {
                reckon_cmd(
                    &env.addr,
                    &[
                        "append",
                        "race",
                        "--type",
                        "t",
                        "--data",
                        &json!({"round": round, "writer": i}).to_string(),
                        "--expected",
                        &expected,
                    ],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn reckon")
            })
            .collect();
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from(c.wait_with_output().expect("wait for reckon")))
            .collect();
        let winners: Vec<&Run> = runs.iter().filter(|r| r.code == 0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {runs:#?}");
        assert_eq!(winners[0].stdout, format!("{}\n", round + 1));
        let want = format!(
            "error: WrongExpectedVersion: expected {round}, current {}",
            round + 1
        );
        for r in runs.iter().filter(|r| r.code != 0) {
            assert_eq!(r.fails(3), want, "round {round}");
        }
    }
    // No gap, no duplicate.
    assert_eq!(env.read_versions(&["race"]), [0, 1, 2, 3]);
}

#[tokio::test]
async fn idempotent_retry_with_the_same_event_id() {
    let env = start().await;
    let id = uuid::Uuid::now_v7().to_string();
    let args = [
        "--json",
        "append",
        "retry-1",
        "--type",
        "t",
        "--data",
        "{\"n\":1}",
        "--event-id",
        &id,
        "--expected",
        "no-stream",
    ];
    let first = env.reckon(&args).json_lines();
    let second = env.reckon(&args).json_lines();
    assert_eq!(first, second, "the same result twice");
    assert_eq!(first[0]["version"], 0);
    let events = env.reckon(&["--json", "read", "retry-1"]).json_lines();
    assert_eq!(events.len(), 1, "one copy stored: {events:?}");
    assert_eq!(events[0]["event_id"], id.as_str());

    // A batch retried with the same ids is recognised too.
    let lines: Vec<String> = (0..3)
        .map(|i| {
            json!({"event_type": "b", "data": i, "event_id": uuid::Uuid::now_v7()}).to_string()
        })
        .collect();
    let f = env.file("retry.jsonl", &lines.join("\n"));
    let args = ["append", "retry-2", "--file", &f, "--expected", "no-stream"];
    assert_eq!(env.reckon(&args).ok(), "2\n");
    assert_eq!(env.reckon(&args).ok(), "2\n");
    assert_eq!(env.read_versions(&["retry-2"]), [0, 1, 2]);

    // The first id in another append is refused: exit 1, one line naming it, and
    // nothing written.
    let r = env.reckon(&["append", "other", "--type", "t", "--event-id", &id]);
    assert_eq!(
        r.fails(1),
        format!("error: DuplicateEventId: event id {id} is already stored in this store")
    );
    let r = env.reckon(&["version", "other"]);
    assert_eq!(r.ok(), "-1\n");
}

// ---------------------------------------------------------------- reads

#[tokio::test]
async fn reads_forward_backward_counted_and_paged() {
    let env = start().await;
    env.append_n("five", 5);
    env.append_n("ten", 10);
    // read forward: 5 events, read(0, 10, fwd)
    assert_eq!(
        env.read_versions(&["five", "--from", "0", "--count", "10"]),
        [0, 1, 2, 3, 4]
    );
    // read backward: read(4, 5, bwd)
    assert_eq!(
        env.read_versions(&["five", "--from", "4", "--count", "5", "--backward"]),
        [4, 3, 2, 1, 0]
    );
    // --backward without --from starts at the end
    assert_eq!(
        env.read_versions(&["ten", "--backward", "--count", "3"]),
        [9, 8, 7]
    );
    // count limit: read(0, 3)
    assert_eq!(env.read_versions(&["ten", "--count", "3"]), [0, 1, 2]);
    // page: read(5, 3, fwd) / read(7, 3, bwd)
    assert_eq!(
        env.read_versions(&["ten", "--from", "5", "--count", "3"]),
        [5, 6, 7]
    );
    assert_eq!(
        env.read_versions(&["ten", "--from", "7", "--count", "3", "--backward"]),
        [7, 6, 5]
    );
    // the default count reads all ten
    assert_eq!(env.read_versions(&["ten"]).len(), 10);
    // past the end: 3 events, read(100, 10) -> empty, exit 0
    env.append_n("three", 3);
    assert_eq!(
        env.reckon(&["read", "three", "--from", "100", "--count", "10"])
            .ok(),
        ""
    );
    // missing stream: StreamNotFound, exit 4
    let r = env.reckon(&["read", "never-written"]);
    assert_eq!(
        r.fails(4),
        "error: StreamNotFound: stream \"never-written\" does not exist"
    );
}

#[tokio::test]
async fn text_lines_are_position_version_stream_type_data() {
    let env = start().await;
    env.reckon(&append_placed(&[])).ok();
    env.reckon(&[
        "append",
        "order-2",
        "--type",
        "placed",
        "--data",
        r#""text""#,
    ])
    .ok();
    env.reckon(&["append", "order-1", "--type", "paid", "--data", "[1,2]"])
        .ok();
    assert_eq!(
        env.reckon(&["read", "order-1"]).ok(),
        "0 0 order-1 placed {\"total\":5}\n2 1 order-1 paid [1,2]\n"
    );
    assert_eq!(
        env.reckon(&["read-all"]).ok(),
        "0 0 order-1 placed {\"total\":5}\n1 0 order-2 placed \"text\"\n2 1 order-1 paid [1,2]\n"
    );
}

#[tokio::test]
async fn versions_exists_and_streams() {
    let env = start().await;
    // get_version: new / 5 events / 7 events -> -1 / 4 / 6
    assert_eq!(env.reckon(&["version", "v"]).ok(), "-1\n");
    assert_eq!(
        env.reckon(&["--json", "version", "v"]).json_lines(),
        [json!({"version": -1})]
    );
    env.append_n("v", 5);
    assert_eq!(env.reckon(&["version", "v"]).ok(), "4\n");
    env.append_n("v", 2);
    assert_eq!(env.reckon(&["version", "v"]).ok(), "6\n");
    assert_eq!(
        env.reckon(&["--json", "version", "v"]).json_lines(),
        [json!({"version": 6})]
    );
    // exists: after append / never written
    assert_eq!(env.reckon(&["exists", "v"]).ok(), "true\n");
    assert_eq!(env.reckon(&["exists", "nope"]).ok(), "false\n");
    assert_eq!(
        env.reckon(&["--json", "exists", "v"]).json_lines(),
        [json!({"exists": true})]
    );
    assert_eq!(
        env.reckon(&["--json", "exists", "nope"]).json_lines(),
        [json!({"exists": false})]
    );
    // list_streams: after two appends, both with versions
    env.append_n("w", 1);
    assert_eq!(env.reckon(&["streams"]).ok(), "v 6\nw 0\n");
    assert_eq!(
        env.reckon(&["--json", "streams"]).json_lines(),
        [
            json!({"stream_id": "v", "version": 6}),
            json!({"stream_id": "w", "version": 0})
        ]
    );
}

#[tokio::test]
async fn streams_pages_through_more_than_one_page() {
    let env = start().await;
    // More streams than one page of `reckon streams` (1000), written in one go each.
    let store = env.client.store("default");
    let n = 1005;
    for i in 0..n {
        store
            .append(
                &format!("s-{i:05}"),
                ExpectedVersion::NoStream,
                one_event("t"),
            )
            .await
            .expect("append");
    }
    let out = env.reckon(&["streams"]).ok().to_string();
    let ids: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(ids.len(), n);
    assert_eq!(ids[0], "s-00000");
    assert_eq!(ids[n - 1], format!("s-{:05}", n - 1));
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in id order, no duplicate"
    );
}

#[tokio::test]
async fn read_all_gives_every_event_once_by_position() {
    let env = start().await;
    // 3 streams interleaved
    for round in 0..3 {
        for s in ["a", "b", "c"] {
            env.reckon(&[
                "append",
                s,
                "--type",
                "t",
                "--data",
                &json!({"s": s, "r": round}).to_string(),
            ])
            .ok();
        }
    }
    let events = env.reckon(&["--json", "read-all"]).json_lines();
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (0..9).collect::<Vec<_>>());
    let streams: Vec<&str> = events
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    assert_eq!(events[4]["data"], json!({"s": "b", "r": 1}));
    // paged forward, and backward from the end by default
    assert_eq!(
        text_column(
            env.reckon(&["read-all", "--from", "3", "--count", "2"])
                .ok(),
            0
        ),
        [3, 4]
    );
    assert_eq!(
        text_column(
            env.reckon(&["read-all", "--backward", "--count", "3"]).ok(),
            0
        ),
        [8, 7, 6]
    );
    assert_eq!(
        text_column(
            env.reckon(&["read-all", "--backward", "--from", "4", "--count", "2"])
                .ok(),
            0
        ),
        [4, 3]
    );
}

#[tokio::test]
async fn read_types_gives_the_events_of_a_type_in_position_order_paged() {
    let env = start().await;
    // types A,B,A over 2 streams
    env.reckon(&["append", "s1", "--type", "A", "--data", "1"])
        .ok();
    env.reckon(&["append", "s2", "--type", "B", "--data", "2"])
        .ok();
    env.reckon(&["append", "s2", "--type", "A", "--data", "3"])
        .ok();
    let events = env.reckon(&["--json", "read-types", "A"]).json_lines();
    let got: Vec<(&str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["stream_id"].as_str().unwrap(),
                e["position"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("s1", 0), ("s2", 2)]);
    // paged: one at a time
    assert_eq!(
        text_column(env.reckon(&["read-types", "A", "--count", "1"]).ok(), 0),
        [0]
    );
    assert_eq!(
        text_column(
            env.reckon(&["read-types", "A", "--from", "1", "--count", "1"])
                .ok(),
            0
        ),
        [2]
    );
    assert_eq!(env.reckon(&["read-types", "A", "--from", "3"]).ok(), "");
    // several types, comma-separated
    assert_eq!(
        text_column(env.reckon(&["read-types", "A,B"]).ok(), 0),
        [0, 1, 2]
    );
}

#[tokio::test]
async fn read_tags_any_and_all() {
    let env = start().await;
    // tags {x}, {x,y}, none
    env.reckon(&["append", "t", "--type", "e", "--tag", "x"])
        .ok();
    env.reckon(&["append", "t", "--type", "e", "--tag", "x", "--tag", "y"])
        .ok();
    env.reckon(&["append", "t", "--type", "e"]).ok();
    assert_eq!(
        text_column(env.reckon(&["read-tags", "x,y"]).ok(), 0),
        [0, 1]
    );
    assert_eq!(
        text_column(env.reckon(&["read-tags", "x,y", "--match", "any"]).ok(), 0),
        [0, 1]
    );
    assert_eq!(
        text_column(env.reckon(&["read-tags", "x,y", "--match", "all"]).ok(), 0),
        [1]
    );
    assert_eq!(text_column(env.reckon(&["read-tags", "y"]).ok(), 0), [1]);
    let events = env
        .reckon(&["--json", "read-tags", "x", "--match", "all"])
        .json_lines();
    assert_eq!(events[1]["tags"], json!(["x", "y"]));
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn delete_recreate_and_hard_delete() {
    let env = start().await;
    env.append_n("gone", 2);
    env.append_n("keep", 1);
    // delete: exists false, get_version -1, read StreamNotFound
    assert_eq!(env.reckon(&["delete", "gone"]).ok(), "deleted gone\n");
    assert_eq!(env.reckon(&["exists", "gone"]).ok(), "false\n");
    assert_eq!(env.version("gone"), -1);
    env.reckon(&["read", "gone"]).fails(4);
    // delete missing: ok
    env.reckon(&["delete", "never-written"]).ok();
    // recreate: append NoStream -> version 2 (versions are never reused); $all keeps
    // the old positions
    assert_eq!(
        env.reckon(&[
            "append",
            "gone",
            "--type",
            "again",
            "--expected",
            "no-stream"
        ])
        .ok(),
        "2\n"
    );
    let all = env.reckon(&["--json", "read-all"]).json_lines();
    let summary: Vec<(u64, &str, u64)> = all
        .iter()
        .map(|e| {
            (
                e["position"].as_u64().unwrap(),
                e["stream_id"].as_str().unwrap(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "gone", 0),
            (1, "gone", 1),
            (2, "keep", 0),
            (3, "gone", 2)
        ]
    );
    assert_eq!(text_column(env.reckon(&["read", "gone"]).ok(), 0), [3]);
    // delete at the wrong expected version: exit 3, the stream stays
    assert_eq!(
        env.reckon(&["delete", "keep", "--expected", "5"]).fails(3),
        "error: WrongExpectedVersion: expected 5, current 0"
    );
    assert_eq!(env.version("keep"), 0);
    // hard delete at its version, then append: StreamDeleted (exit 1)
    let v = env
        .reckon(&["--json", "delete", "keep", "--hard", "--expected", "0"])
        .json_lines();
    assert_eq!(v[0]["stream_id"], "keep");
    assert_eq!(v[0]["hard"], true);
    let r = env.reckon(&["append", "keep", "--type", "t"]);
    assert_eq!(
        r.fails(1),
        "error: StreamDeleted: stream \"keep\" was hard-deleted and cannot be written"
    );
    assert_eq!(env.reckon(&["exists", "keep"]).ok(), "false\n");
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_input_is_refused_by_name_and_writes_nothing() {
    let env = start().await;
    // empty type
    let line = env
        .reckon(&["append", "bad", "--type", ""])
        .fails(2)
        .to_string();
    assert!(
        line.starts_with("error: InvalidInput: ") && line.contains("event_type"),
        "{line}"
    );
    // `$x` stream
    let line = env
        .reckon(&["append", "$x", "--type", "t"])
        .fails(2)
        .to_string();
    assert!(line.starts_with("error: InvalidInput: stream_id"), "{line}");
    // 2 MiB event via --file
    let big = "x".repeat(2 * 1024 * 1024);
    let f = env.file("big.jsonl", &batch_line("big", json!(big)));
    let line = env
        .reckon(&["append", "bad", "--file", &f])
        .fails(2)
        .to_string();
    assert!(
        line.starts_with("error: InvalidInput: events[0].data"),
        "{line}"
    );
    // empty batch
    let f = env.file("empty.jsonl", "\n");
    let line = env
        .reckon(&["append", "bad", "--file", &f])
        .fails(2)
        .to_string();
    assert!(line.starts_with("error: InvalidInput: events"), "{line}");
    // nothing written
    assert_eq!(env.version("bad"), -1);
    assert_eq!(env.reckon(&["streams"]).ok(), "");
    assert_eq!(env.reckon(&["read-all"]).ok(), "");
}

#[test]
fn bad_command_lines_exit_2_and_say_what_to_fix() {
    // No gater is needed: these never get past argument parsing.
    let gater = closed_port();
    let usage = |args: &[&str]| {
        let r = reckon_at(&gater, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "one line: {args:?}: {r:?}");
        r.stderr
    };
    let e = usage(&["frobnicate"]);
    assert!(e.contains("unrecognized subcommand 'frobnicate'"), "{e}");
    let e = usage(&["append", "s", "--type", "t", "--data", "{total: 5}"]);
    assert!(
        e.contains("--data") && e.contains("not JSON") && e.contains(r#"'{"total":5}'"#),
        "{e}"
    );
    let e = usage(&["append", "s", "--type", "t", "--metadata", "nope"]);
    assert!(e.contains("--metadata") && e.contains("not JSON"), "{e}");
    let e = usage(&["append", "s", "--type", "t", "--expected", "sometimes"]);
    assert!(
        e.contains("--expected") && e.contains("any, no-stream, stream-exists"),
        "{e}"
    );
    let e = usage(&["append", "s", "--type", "t", "--expected", "-3"]);
    assert!(e.contains("--expected"), "{e}");
    let e = usage(&["append", "s", "--type", "t", "--event-id", "not-a-uuid"]);
    assert!(e.contains("--event-id"), "{e}");
    let e = usage(&["append", "s"]);
    assert!(e.contains("--type") && e.contains("--file"), "{e}");
    let e = usage(&["append", "s", "--file", "x", "--type", "t"]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = usage(&["read-tags", "x", "--match", "most"]);
    assert!(e.contains("--match") && e.contains("any or all"), "{e}");
    let e = usage(&["read"]);
    assert!(e.contains("<STREAM>"), "{e}");
    let e = usage(&["--timeout-ms", "0", "health"]);
    assert!(e.contains("--timeout-ms"), "{e}");
    let e = usage(&["subscribe", "stream", "s", "name", "--from", "nowhere"]);
    assert!(e.contains("beginning, end, or a position"), "{e}");
    let out = Command::new(bin("reckon"))
        .env_remove("RECKON_GATER")
        .args(["--gater", ",", "health"])
        .output()
        .expect("run reckon");
    let line = Run::from(out).fails(2).to_string();
    assert!(line.contains("--gater names no address"), "{line}");

    let help = reckon_at(&gater, &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("reckon-db"), "{help:?}");
    let help = reckon_at(&gater, &["read", "--help"]);
    assert!(help.stdout.contains("[default: 100]"), "{help:?}");
}

/// An address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

#[test]
fn an_unreachable_gater_exits_5() {
    let r = reckon_at(&closed_port(), &["version", "s"]);
    let line = r.fails(5);
    assert!(line.starts_with("error: Unavailable: "), "{line}");
    // Every address is tried; all closed is still 5.
    let both = format!("{},{}", closed_port(), closed_port());
    reckon_at(&both, &["exists", "s"]).fails(5);
}

#[tokio::test]
async fn a_second_gater_is_used_when_the_first_is_down() {
    let env = start().await;
    let both = format!("{},{}", closed_port(), env.addr);
    assert_eq!(
        reckon_at(&both, &["append", "s", "--type", "t"]).ok(),
        "0\n"
    );
    // $RECKON_GATER is the default for --gater.
    let out = Command::new(bin("reckon"))
        .env("RECKON_GATER", &both)
        .args(["version", "s"])
        .output()
        .expect("run reckon");
    assert_eq!(Run::from(out).ok(), "0\n");
}

#[tokio::test]
async fn a_store_without_workers_exits_5() {
    let env = start().await;
    let r = env.reckon(&["--store", "nope", "version", "s"]);
    assert_eq!(
        r.fails(5),
        "error: NoWorkers: no worker serves store \"nope\""
    );
}

#[tokio::test]
async fn stats_counts_appends_reads_and_errors_with_latency_percentiles() {
    let env = start().await;
    env.append_n("order-1", 3);
    env.append_n("order-2", 2);
    env.reckon(&["read", "order-1"]).ok();
    env.reckon(&["read-all"]).ok();
    env.reckon(&["append", "order-1", "--type", "t", "--expected", "0"])
        .fails(3);
    let lines = env.reckon(&["--json", "stats"]).json_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let s = &lines[0];
    assert_eq!(s["store"], "default");
    assert_eq!(s["node_id"], 1);
    assert_eq!(s["role"], "leader");
    assert_eq!(s["events"], 5);
    assert_eq!(s["appends"], 5);
    assert_eq!(s["appended_events"], 5);
    assert_eq!(
        s["appended_bytes"], 10,
        "five events of `{{}}` and no metadata"
    );
    assert_eq!(s["reads"], 2);
    assert_eq!(s["read_events"], 8);
    assert_eq!(s["errors"], json!({"WrongExpectedVersion": 1}));
    assert_eq!(s["append_latency_us"]["count"], 5);
    assert_eq!(s["read_latency_us"]["count"], 2);
    let (p50, p99) = (
        s["append_latency_us"]["p50"].as_u64().expect("p50"),
        s["append_latency_us"]["p99"].as_u64().expect("p99"),
    );
    assert!(p50 > 0 && p50 <= p99, "{s}");
    let text = env.reckon(&["stats"]).ok().to_string();
    assert!(
        text.starts_with("default node 1 leader events=5 appends=5 ")
            && text.contains(" errors=WrongExpectedVersion:1 "),
        "{text}"
    );
}

#[tokio::test]
async fn subscribe_tail_ack_list_and_unsubscribe() {
    let env = start().await;
    let key = env
        .reckon(&["subscribe", "event_type", "placed", "audit"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(key.len(), 32, "{key}");
    // Subscribing again with the same type, selector and name gives the same key.
    assert_eq!(
        env.reckon(&["subscribe", "event_type", "placed", "audit"])
            .ok()
            .trim()
            .to_string(),
        key
    );
    for (s, t, n) in [
        ("order-1", "placed", 5),
        ("order-2", "paid", 1),
        ("order-3", "placed", 7),
    ] {
        env.reckon(&[
            "append",
            s,
            "--type",
            t,
            "--data",
            &format!("{{\"n\":{n}}}"),
        ])
        .ok();
    }
    let out = env.reckon(&[
        "tail",
        "event_type",
        "placed",
        "audit",
        "--ack",
        "--max",
        "2",
    ]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].contains("order-1") && lines[1].contains("order-3"),
        "{lines:?}"
    );
    let listed = env.reckon(&["--json", "subscriptions"]);
    let v = listed.json_lines().remove(0);
    assert_eq!(v["key"], serde_json::json!(key));
    assert_eq!(v["type"], serde_json::json!("event_type"));
    assert_eq!(v["selector"], serde_json::json!("placed"));
    assert_eq!(v["name"], serde_json::json!("audit"));
    assert_eq!(
        v["checkpoint"],
        serde_json::json!(2),
        "acked up to position 2"
    );
    assert_eq!(
        v["delivered"],
        serde_json::json!(2),
        "the node counts deliveries"
    );
    env.reckon(&["unsubscribe", &key]).ok();
    let r = env.reckon(&["unsubscribe", &key]);
    assert_eq!(
        r.fails(4),
        format!("error: NotFound: subscription \"{key}\"")
    );
    let bad = env.reckon(&["subscribe", "event_payload", "{not json", "x"]);
    assert!(
        bad.fails(2).contains("selector"),
        "bad selector names the field"
    );
}

// ---------------------------------------------------------------- JSON shapes

#[tokio::test]
async fn json_event_shape() {
    let env = start().await;
    let id = uuid::Uuid::now_v7().to_string();
    env.reckon(&append_placed(&[
        "--metadata",
        r#"{"by":"me"}"#,
        "--tag",
        "eu",
        "--event-id",
        &id,
    ]))
    .ok();
    env.reckon(&["append", "order-1", "--type", "noted"]).ok();
    // Binary data can only be written through the library; the CLI shows it as base64.
    let mut binary = NewEvent::json("blob", &json!(null));
    binary.data = vec![0xff, 0x00, 0x01];
    binary.content_type = ContentType::Binary;
    env.client
        .store("default")
        .append("order-1", ExpectedVersion::Any, vec![binary])
        .await
        .expect("append binary");

    let events = env.reckon(&["--json", "read", "order-1"]).json_lines();
    assert_eq!(events.len(), 3);
    let e = &events[0];
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "stream_id",
        "version",
        "position",
        "event_id",
        "event_type",
        "data",
        "metadata",
        "tags",
        "timestamp_us",
    ];
    want.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, want, "{e}");
    assert_eq!(e["stream_id"], "order-1");
    assert_eq!(e["version"], 0);
    assert_eq!(e["position"], 0);
    assert_eq!(e["event_id"], id.as_str());
    assert_eq!(e["event_type"], "placed");
    assert_eq!(e["data"], json!({"total": 5}));
    assert_eq!(e["metadata"], json!({"by": "me"}));
    assert_eq!(e["tags"], json!(["eu"]));
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let ts = e["timestamp_us"]
        .as_u64()
        .expect("timestamp_us is a number");
    assert!(ts <= now_us && now_us - ts < 60_000_000, "{ts} vs {now_us}");
    // no --data: {}; no metadata: {}; no tags: []
    assert_eq!(events[1]["data"], json!({}));
    assert_eq!(events[1]["metadata"], json!({}));
    assert_eq!(events[1]["tags"], json!([]));
    // not JSON: data_base64 instead of data
    assert_eq!(events[2]["data_base64"], "/wAB");
    assert!(events[2].get("data").is_none(), "{}", events[2]);
    assert_eq!(
        env.reckon(&["read", "order-1", "--from", "2"]).ok(),
        "2 2 order-1 blob base64:/wAB\n"
    );
}

// ---------------------------------------------------------------- snapshots

#[tokio::test]
async fn snapshot_commands() {
    let env = start().await;
    // load none: NotFound, exit 4
    let line = env
        .reckon(&["snapshot", "load", "acct"])
        .fails(4)
        .to_string();
    assert!(line.starts_with("error: NotFound: "), "{line}");
    // save 5, load: version 5, same data; metadata round-trips
    let r = env.reckon(&[
        "snapshot",
        "save",
        "acct",
        "5",
        "--data",
        r#"{"name":"Bob","balance":500}"#,
        "--metadata",
        r#"{"by":"me"}"#,
    ]);
    assert_eq!(r.ok(), "saved snapshot of acct at version 5\n");
    let s = env
        .reckon(&["--json", "snapshot", "load", "acct"])
        .json_lines();
    assert_eq!(s[0]["stream_id"], "acct");
    assert_eq!(s[0]["version"], 5);
    assert_eq!(s[0]["data"], json!({"name": "Bob", "balance": 500}));
    assert_eq!(s[0]["metadata"], json!({"by": "me"}));
    assert!(s[0]["timestamp_us"].as_u64().is_some(), "{}", s[0]);
    assert_eq!(
        env.reckon(&["snapshot", "load", "acct"]).ok(),
        "5 {\"balance\":500,\"name\":\"Bob\"}\n"
    );
    // save the same version twice: the later data
    env.reckon(&[
        "snapshot",
        "save",
        "acct",
        "5",
        "--data",
        r#"{"balance":501}"#,
    ])
    .ok();
    let s = env
        .reckon(&["--json", "snapshot", "load", "acct", "--version", "5"])
        .json_lines();
    assert_eq!(s[0]["data"], json!({"balance": 501}));
    assert_eq!(s[0]["metadata"], json!({}));
    // save 15 then 10: load gives the highest
    env.reckon(&["snapshot", "save", "acct", "15", "--data", "15"])
        .ok();
    env.reckon(&["snapshot", "save", "acct", "10", "--data", "10"])
        .ok();
    assert_eq!(env.reckon(&["snapshot", "load", "acct"]).ok(), "15 15\n");
    assert_eq!(
        text_column(env.reckon(&["snapshot", "list", "acct"]).ok(), 0),
        [5, 10, 15]
    );
    // delete at one version, then all
    env.reckon(&["snapshot", "delete", "acct", "--version", "10"])
        .ok();
    let list = env
        .reckon(&["--json", "snapshot", "list", "acct"])
        .json_lines();
    let versions: Vec<u64> = list
        .iter()
        .map(|s| s["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [5, 15]);
    env.reckon(&["snapshot", "load", "acct", "--version", "10"])
        .fails(4);
    assert_eq!(
        env.reckon(&["snapshot", "delete", "acct"]).ok(),
        "deleted every snapshot of acct\n"
    );
    assert_eq!(env.reckon(&["snapshot", "list", "acct"]).ok(), "");
    env.reckon(&["snapshot", "load", "acct"]).fails(4);
    // bad JSON for the state is a usage error
    let r = env.reckon(&["snapshot", "save", "acct", "1", "--data", "{"]);
    assert_eq!(r.code, 2, "{r:?}");
}

// ---------------------------------------------------------------- health, cluster

/// A gater with no worker: `health` prints its report and exits 5, so a probe
/// or script sees an appliance that cannot take writes.
#[test]
fn health_exits_unavailable_without_a_worker() {
    let gater = reckon_tests::gater::GaterProc::start("127.0.0.1:0", &[]);
    let r = reckon_at(&gater.addr, &["--json", "health"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(
        r.stdout, "{\"status\":\"degraded\",\"stores\":{}}\n",
        "{r:?}"
    );
    assert_eq!(
        r.stderr, "error: Unavailable: no store has a registered worker\n",
        "{r:?}"
    );
    let r = reckon_at(&gater.addr, &["health"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stdout.starts_with("degraded\n"), "{r:?}");
}

#[tokio::test]
async fn health_and_cluster() {
    let env = start().await;
    // Health follows heartbeats (every lease / 3, 1 s by default): wait (bounded)
    // for the leader to be reported.
    let deadline = Instant::now() + reckon_tests::wait::BASE;
    let health = loop {
        let r = env.reckon(&["--json", "health"]);
        if r.code == 0 {
            let h = r.json_lines();
            if h[0]["status"] == "healthy" {
                break h;
            }
        } else {
            // Before the first heartbeat names the leader: exit 5, report printed.
            assert_eq!(r.code, 5, "{r:?}");
            assert!(r.stderr.starts_with("error: Unavailable: "), "{r:?}");
        }
        assert!(Instant::now() < deadline, "never healthy: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        health,
        [json!({"status": "healthy", "stores": {"default": {"workers": 1, "leader": 1}}})]
    );
    assert_eq!(
        env.reckon(&["health"]).ok(),
        "healthy\ndefault healthy workers=1 leader=1\n"
    );

    let cluster = env.reckon(&["--json", "cluster"]).json_lines();
    assert_eq!(cluster.len(), 1, "one store a line: {cluster:?}");
    let c = &cluster[0];
    assert_eq!(c["store"], "default");
    assert_eq!(c["leader"], 1);
    assert!(c["term"].as_u64().is_some_and(|t| t >= 1), "{c}");
    let nodes = c["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["node_id"], 1);
    assert_eq!(nodes[0]["role"], "leader");
    assert!(
        nodes[0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{c}"
    );
    assert!(nodes[0]["last_log_index"].as_u64().is_some(), "{c}");
    assert!(nodes[0]["applied_index"].as_u64().is_some(), "{c}");
    let text = env.reckon(&["cluster"]).ok().to_string();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("default leader=1 term=")),
        "{text}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("  node 1 127.0.0.1:") && l.contains(" leader ")),
        "{text}"
    );
}

// ---------------------------------------------------------------- as of a time

/// `version --at`, `read --until` and `read-all --since/--until` against the
/// timestamps the events were stored with (read back first, so nothing depends on
/// how fast the appends ran): each answers what stood at that time, in both TIME
/// forms.
#[tokio::test]
async fn reads_as_of_a_time_see_what_stood_then() {
    let env = start().await;
    env.append_n("a", 2);
    env.append_n("b", 1);
    env.append_n("a", 1);
    let all = env.reckon(&["--json", "read-all"]).json_lines();
    let ts: Vec<u64> = all
        .iter()
        .map(|e| e["timestamp_us"].as_u64().unwrap())
        .collect();
    assert_eq!(ts.len(), 4);
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go down: {ts:?}"
    );
    let at = |i: usize| ts[i].to_string();
    // Positions 0, 1 are a@0, a@1; 2 is b@0; 3 is a@2. What stood at each time:
    // the events written at or before it.
    let stood = |t: u64| -> Vec<u64> { (0..4).filter(|p| ts[*p as usize] <= t).collect() };

    for i in 0..4 {
        let t = ts[i];
        let a_then = stood(t).iter().filter(|p| **p != 2).count() as i64 - 1;
        assert_eq!(
            env.reckon(&["version", "a", "--at", &at(i)]).ok().trim(),
            a_then.to_string(),
            "version of a at {t}"
        );
        // read --until: the stream's events written by then.
        let read = env.reckon(&["read", "a", "--until", &at(i)]);
        if a_then < 0 {
            read.fails(4);
        } else {
            let versions = text_column(read.ok(), 1);
            assert_eq!(versions, (0..=a_then as u64).collect::<Vec<_>>(), "at {t}");
        }
        // read-all --until, forward and backward.
        let until = env.reckon(&["read-all", "--until", &at(i)]);
        assert_eq!(text_column(until.ok(), 0), stood(t), "read-all --until {t}");
        let back = env.reckon(&["read-all", "--until", &at(i), "--backward"]);
        let mut want = stood(t);
        want.reverse();
        assert_eq!(text_column(back.ok(), 0), want, "backward --until {t}");
        // read-all --since: what was written at or after it.
        let since = env.reckon(&["read-all", "--since", &at(i)]);
        let want: Vec<u64> = (0..4).filter(|p| ts[*p as usize] >= t).collect();
        assert_eq!(text_column(since.ok(), 0), want, "read-all --since {t}");
    }
    // Before anything was written: nothing stood.
    let before = (ts[0] - 1).to_string();
    assert_eq!(env.reckon(&["version", "a", "--at", &before]).ok(), "-1\n");
    assert_eq!(env.reckon(&["read-all", "--until", &before]).ok(), "");
    // A window holding only b's event, the bounds as RFC 3339.
    let rfc = |us: u64| {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    if ts[1] < ts[2] && ts[2] < ts[3] {
        let window = env.reckon(&["read-all", "--since", &rfc(ts[2]), "--until", &rfc(ts[2])]);
        assert_eq!(text_column(window.ok(), 0), [2]);
    }
    // A TIME that is neither form: usage error naming both.
    let bad = env
        .reckon(&["version", "a", "--at", "yesterday"])
        .fails(2)
        .to_string();
    assert!(bad.contains("RFC 3339"), "{bad}");
}

// ---------------------------------------------------------------- retention

/// `retention` sets and prints how long a stream keeps its events; reads of the
/// stream then skip what it drops, nothing is renumbered, `$all` keeps every event
/// until a scavenge, and `--clear` brings them back.
#[tokio::test]
async fn retention_hides_what_it_drops_from_stream_reads_and_renumbers_nothing() {
    let env = start().await;
    env.append_n("r", 6);
    assert_eq!(
        env.reckon(&["retention", "r"]).ok(),
        "r keeps every event\n"
    );
    assert_eq!(
        env.reckon(&["retention", "r", "--max-count", "3", "--max-age", "90d"])
            .ok(),
        "r keeps events max-age 90d, max-count 3\n"
    );
    assert_eq!(text_column(env.reckon(&["read", "r"]).ok(), 1), [3, 4, 5]);
    assert_eq!(
        text_column(
            env.reckon(&["read", "r", "--backward", "--count", "10"])
                .ok(),
            1
        ),
        [5, 4, 3]
    );
    assert_eq!(env.version("r"), 5);
    let v = env
        .reckon(&["--json", "retention", "r", "--truncate-before", "5"])
        .json_lines();
    assert_eq!(v[0]["truncate_before"], 5);
    assert!(
        v[0]["max_count"].is_null(),
        "flags not given are cleared: {v:?}"
    );
    assert_eq!(text_column(env.reckon(&["read", "r"]).ok(), 1), [5]);
    // The global log still holds them all until a scavenge.
    assert_eq!(env.reckon(&["read-all"]).ok().lines().count(), 6);
    // Appends go on after the head, whatever is hidden.
    env.append_n("r", 1);
    assert_eq!(text_column(env.reckon(&["read", "r"]).ok(), 1), [5, 6]);
    assert_eq!(
        env.reckon(&["retention", "r", "--clear"]).ok(),
        "r keeps every event\n"
    );
    assert_eq!(
        text_column(env.reckon(&["read", "r"]).ok(), 1),
        [0, 1, 2, 3, 4, 5, 6]
    );
    // Bad input: a usage error naming the form, or the store's InvalidInput.
    let bad = env
        .reckon(&["retention", "r", "--max-age", "3y"])
        .fails(2)
        .to_string();
    assert!(bad.contains("unknown unit"), "{bad}");
    let zero = env.reckon(&["retention", "r", "--max-count", "0"]);
    assert!(zero.fails(2).contains("retention.max_count"), "{zero:?}");
}
