//! Logs of a real `reckon-node`: with `log.dir` set they go to a daily file named
//! after the binary and nowhere else, and every line is in the file once the node
//! has exited on SIGTERM; a bad `log.level` stops the start naming the key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reckon_gater::{ExpectedVersion, NewEvent};
use reckon_tests::dev::{gater_addr, wait_for_store};
use reckon_tests::{dev_command, FailedStart, NodeProc, DEV_GATER_ANY_PORT};
use serde_json::json;

/// The telemetry events a `--dev` node that served a few appends must have logged,
/// from start to a clean stop.
const EXPECTED_EVENTS: &[&str] = &[
    "reckon_db.store.started",
    "reckon_db.cluster.node.up",
    // The request lines, at debug (the test's level asks for reckon_db=debug).
    "reckon_db.stream.write.start store=default",
    "reckon_db.stream.write.stop store=default",
    "reckon_db.gater.worker.registered store=default",
    "reckon_db.store.stopped",
    "reckon_db.cluster.node.down",
];

/// The UTC calendar date of `t` as `YYYY-MM-DD`, the date in a daily log file's name.
fn utc_date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / 86_400;
    // Days since 1970-01-01 to a civil date, in the proleptic Gregorian calendar
    // (Howard Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The one log file in `dir`, which must be `<prefix>.<date>.log` for one of
/// `dates` (a test may run across midnight UTC).
fn the_log_file(dir: &Path, prefix: &str, dates: &[String]) -> PathBuf {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("log dir exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let expected: Vec<String> = dates.iter().map(|d| format!("{prefix}.{d}.log")).collect();
    let found: Vec<&String> = names.iter().filter(|n| expected.contains(n)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one of {expected:?} in {}, found {names:?}",
        dir.display()
    );
    dir.join(found[0])
}

/// Asserts that `log` holds a line with each of `events`, showing the log when not.
fn assert_logged(log: &str, events: &[&str]) {
    let missing: Vec<&&str> = events
        .iter()
        .filter(|event| !log.lines().any(|line| line.contains(**event)))
        .collect();
    assert!(
        missing.is_empty(),
        "{missing:?} not logged; the log:\n{log}"
    );
}

#[tokio::test]
async fn a_node_with_log_dir_writes_a_daily_file_and_nothing_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Not there yet: the node creates it.
    let logs = dir.path().join("logs");
    let mut cmd = dev_command(&data);
    cmd.env("RECKON_NODE_LOG__DIR", &logs)
        .env("RECKON_NODE_LOG__LEVEL", "info,reckon_db=debug")
        .env_remove("RUST_LOG");
    let started = SystemTime::now();
    let mut node = NodeProc::spawn_capturing_stderr(cmd, &data);
    let client = wait_for_store(&gater_addr(&node), "default").await;
    let store = client.store("default");
    for n in 0..5 {
        store
            .append(
                "order-1",
                ExpectedVersion::Any,
                vec![NewEvent::json("placed", &json!({ "n": n }))],
            )
            .await
            .unwrap();
    }
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let stderr = node.stderr_after_exit();
    assert!(
        stderr.is_empty(),
        "with log.dir nothing goes to stderr:\n{stderr}"
    );

    let dates = [utc_date(started), utc_date(SystemTime::now())];
    let file = the_log_file(&logs, "reckon-node", &dates);
    let log = std::fs::read_to_string(&file).unwrap();
    assert_logged(&log, EXPECTED_EVENTS);
    assert!(!log.contains('\u{1b}'), "no colour codes in a file:\n{log}");
}

/// Starts a `--dev` node on `<dir>/data` with the config file `config` and its
/// embedded gater on a free port, expecting it to fail
/// ([`NodeProc::start_dev_expect_failure`]).
fn start_expect_failure(dir: &Path, config: &Path) -> FailedStart {
    NodeProc::start_dev_expect_failure(
        &dir.join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            DEV_GATER_ANY_PORT[0],
            DEV_GATER_ANY_PORT[1],
        ],
    )
}

#[test]
fn a_bad_log_level_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[log]\nlevel = \"info,reckon_db=loud\"\n").unwrap();
    let failed = start_expect_failure(dir.path(), &config);
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert!(
        failed.stderr.contains("\"log.level\""),
        "the error names log.level: {}",
        failed.stderr
    );
}

#[test]
fn an_unusable_log_dir_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let not_a_dir = dir.path().join("logs");
    std::fs::write(&not_a_dir, b"").unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[log]\ndir = {:?}\n", not_a_dir.join("node")),
    )
    .unwrap();
    let failed = start_expect_failure(dir.path(), &config);
    assert!(!failed.status.success(), "{failed:?}");
    assert!(
        failed.stderr.contains("\"log.dir\"") && failed.stderr.contains("logs"),
        "the error names log.dir and the directory: {}",
        failed.stderr
    );
}

#[test]
fn utc_dates_are_civil_dates() {
    let at = |secs: u64| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01");
    assert_eq!(at(951_782_400), "2000-02-29");
    assert_eq!(at(1_709_251_199), "2024-02-29");
    assert_eq!(at(1_735_689_600), "2025-01-01");
}
