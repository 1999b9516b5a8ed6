//! A standalone `reckon-gater` process, and single-mode nodes registered with it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reckon_gater::router::RetryPolicy;

use crate::{after_marker, bin, clear_env, forward_lines, NodeProc};

/// A running `reckon-gater` process; killed on drop.
pub struct GaterProc {
    child: Child,
    /// Its address.
    pub addr: String,
    /// Its KurrentDB front door's address, when started with `RECKON_GATER_KURRENT_LISTEN`.
    pub kurrent: Option<String>,
    /// Its config file and log, when started with [`GaterProc::start_with_config`].
    dir: Option<tempfile::TempDir>,
}

impl GaterProc {
    /// Starts a gater on `listen` (use `127.0.0.1:0` for a free port) with extra
    /// environment, and waits for its ready line.
    pub fn start(listen: &str, env: &[(&str, &str)]) -> GaterProc {
        Self::spawn(listen, None, env)
    }

    /// Starts a gater on `listen` with `config` (TOML: `[[tokens]]` and the like) as
    /// its `--config` file, logging to a file [`GaterProc::log`] reads.
    pub fn start_with_config(listen: &str, config: &str, env: &[(&str, &str)]) -> GaterProc {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("gater.toml"), config).expect("write gater.toml");
        Self::spawn(listen, Some(dir), env)
    }

    /// Everything the gater logged so far (only when started with a config).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("gater.log")).ok())
            .unwrap_or_default()
    }

    fn spawn(listen: &str, dir: Option<tempfile::TempDir>, env: &[(&str, &str)]) -> GaterProc {
        let mut cmd = Command::new(bin("reckon-gater"));
        cmd.arg("--listen").arg(listen);
        clear_env(&mut cmd, "RECKON_GATER_");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let stderr = match &dir {
            Some(d) => {
                cmd.arg("--config").arg(d.path().join("gater.toml"));
                Stdio::from(std::fs::File::create(d.path().join("gater.log")).expect("log file"))
            }
            None => Stdio::inherit(),
        };
        cmd.stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().expect("spawn reckon-gater");
        let rx = forward_lines(child.stdout.take().expect("stdout"));
        let Some(rest) = after_marker(&rx, "listening on ") else {
            let _ = child.kill();
            panic!("reckon-gater did not become ready");
        };
        let kurrent = if env.iter().any(|(k, _)| *k == "RECKON_GATER_KURRENT_LISTEN") {
            let Some(k) = after_marker(&rx, "KurrentDB front door listening on ") else {
                let _ = child.kill();
                panic!("reckon-gater did not serve its KurrentDB front door");
            };
            Some(k.trim().to_string())
        } else {
            None
        };
        GaterProc {
            child,
            addr: rest.trim().to_string(),
            kurrent,
            dir,
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        crate::send_term(self.child.id());
        self.child.wait().expect("wait")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for the exit; its status, or `None` while it still runs.
    pub fn exit_within(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        crate::exit_within(&mut self.child, within)
    }

    /// Kills it with SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GaterProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts a single-mode node with id `node_id` serving `stores`, registered with the
/// gater at `gater`, with extra environment.
pub fn start_node(
    data_dir: &Path,
    node_id: u64,
    stores: &[&str],
    gater: &str,
    env: &[(&str, &str)],
) -> NodeProc {
    let mut cmd = Command::new(bin("reckon-node"));
    cmd.arg("--node-id")
        .arg(node_id.to_string())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--gater")
        .arg(gater);
    for s in stores {
        cmd.arg("--store").arg(s);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    NodeProc::spawn(cmd, data_dir)
}

/// The least time a gater with the default retry policy (the standalone gater's
/// unless configured, and the one `--dev` embeds) pauses between the retries of one
/// call before it gives up on it: every backoff at its smallest jitter. A gater
/// that answered well within this did not wait out its retries.
pub fn default_retry_pauses_min() -> Duration {
    let p = RetryPolicy::default();
    (0..p.retries_max)
        .map(|attempt| p.backoff(attempt, 0.0))
        .sum()
}

/// Deadline of the call [`assert_no_workers_at_once`] makes: long, so that a slow
/// machine cannot turn the answer into a timeout.
pub const NO_WORKERS_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Reads from `store`, which has no worker, through `client`, and checks that the
/// answer is `NoWorkers` and came at once.
///
/// "At once" is told apart from its alternatives by a wide margin, not by this
/// machine's speed: the gater either answers without waiting (an in-memory lookup:
/// milliseconds here, and still far from the bound on a machine many times slower),
/// or it waits out its retries (at least [`default_retry_pauses_min`], 5.6 s, of
/// pauses alone) or the caller's deadline ([`NO_WORKERS_CALL_DEADLINE`]). The bound
/// is half the shorter of the two waits.
pub async fn assert_no_workers_at_once(client: &reckon_gater::Client, store: &str) {
    let waited_out = default_retry_pauses_min().min(NO_WORKERS_CALL_DEADLINE);
    let started = Instant::now();
    let e = client
        .clone()
        .with_timeout(NO_WORKERS_CALL_DEADLINE)
        .store(store)
        .read("s", 0, 1)
        .await
        .expect_err("a store without workers cannot answer a read");
    let took = started.elapsed();
    assert_eq!(
        e,
        reckon_gater::ClientError::Store(reckon_gater::StoreError::NoWorkers {
            store: store.into()
        })
    );
    assert!(
        took < waited_out / 2,
        "NoWorkers took {took:?}: the gater waited (retries take {:?} at least)",
        default_retry_pauses_min()
    );
}
