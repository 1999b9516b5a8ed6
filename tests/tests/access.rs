//! Tokens and roles per store through a real gater and node: tokens made by
//! `reckon token create` and pasted into the gater's config, refusals that change
//! nothing, the CLI's exit code 6, a token removed from the config, and no secret in
//! the gater's log or `--print-config`.

use std::process::{Command, Stdio};
use std::time::Duration;

use reckon_gater::{Client, ClientError, ExpectedVersion, StoreError};
use reckon_tests::gater::{start_node, GaterProc};
use reckon_tests::wait::wait_until;
use reckon_tests::{bin, one_event, reckon_run, NodeProc};

/// A token as `reckon token create` printed it.
struct Made {
    token: String,
    config: String,
}

/// Runs `reckon token create --name NAME --grant G...` and parses its JSON.
fn token_create(name: &str, grants: &[&str]) -> Made {
    let mut cmd = Command::new(bin("reckon"));
    cmd.env_remove("RECKON_TOKEN")
        .args(["token", "create", "--name", name]);
    for g in grants {
        cmd.args(["--grant", g]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run reckon");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("token create prints JSON");
    let token = v["token"].as_str().expect("token").to_string();
    let config = v["config"].as_str().expect("config").to_string();
    assert!(config.contains("[[tokens]]"), "{config}");
    assert!(
        !config.contains(&token),
        "the config holds a hash, not the token"
    );
    Made { token, config }
}

/// `reckon --gater ADDR args...` with `RECKON_TOKEN` set to `token` (if any):
/// exit code, stdout and stderr.
fn reckon(gater: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = token.map(|t| ("RECKON_TOKEN", t)).into_iter().collect();
    reckon_run(gater, &env, args)
}

async fn client(addr: &str, token: &str) -> Result<Client, ClientError> {
    Client::builder(&[addr]).token(token).connect().await
}

fn unauthenticated<T>(r: Result<T, ClientError>) {
    match r {
        Err(ClientError::Store(StoreError::Unauthenticated { .. })) => {}
        Ok(_) => panic!("expected Unauthenticated, the call went through"),
        Err(e) => panic!("expected Unauthenticated, got {e:?}"),
    }
}

fn denied<T>(r: Result<T, ClientError>, needs: &str) {
    match r {
        Err(ClientError::Store(StoreError::PermissionDenied { needs: n, .. })) if n == needs => {}
        Ok(_) => panic!("expected PermissionDenied (needs {needs}), the call went through"),
        Err(e) => panic!("expected PermissionDenied (needs {needs}), got {e:?}"),
    }
}

/// A gater with `config` and one single-mode node serving `default` and `other`,
/// both led, seen through an admin client.
async fn secured(config: &str, admin: &str) -> (GaterProc, NodeProc, tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gater = GaterProc::start_with_config(
        "127.0.0.1:0",
        config,
        &[("RECKON_GATER_LOG__LEVEL", "debug")],
    );
    let node = start_node(dir.path(), 1, &["default", "other"], &gater.addr, &[]);
    let c = client(&gater.addr, admin)
        .await
        .expect("the admin token connects");
    wait_until("both stores led", Duration::from_secs(30), || async {
        c.health()
            .await
            .is_ok_and(|h| h.stores.len() == 2 && h.stores.iter().all(|s| s.leader.is_some()))
    })
    .await;
    (gater, node, dir, c)
}

#[tokio::test]
async fn tokens_and_roles_per_store_through_a_real_gater() {
    let ops = token_create("ops", &["*:read+write+admin"]);
    let app = token_create("app", &["default:read+write"]);
    let reader = token_create("reader", &["default:read"]);
    let config = [ops.config.as_str(), &app.config, &reader.config].join("\n");
    let (gater, _node, _dir, admin) = secured(&config, &ops.token).await;
    let addr = gater.addr.as_str();

    // Data to protect, written with the admin token.
    admin
        .store("default")
        .append("s", ExpectedVersion::NoStream, one_event("placed"))
        .await
        .expect("admin appends");
    admin
        .store("other")
        .append("o", ExpectedVersion::NoStream, one_event("placed"))
        .await
        .expect("admin appends to other");

    // A wrong token: Unauthenticated, at connect. No token: health only.
    unauthenticated(client(addr, "rkn_not-a-token-this-gater-knows").await);
    let anonymous = Client::connect(&[addr]).await.expect("health is open");
    assert!(anonymous.health().await.is_ok());
    unauthenticated(anonymous.store("default").read("s", 0, 10).await);

    // A read token reads its store, and nothing else.
    let r = client(addr, &reader.token).await.expect("reader connects");
    let who = r.access().await.expect("access");
    assert_eq!(who.name, "reader");
    assert_eq!(who.grants_text(), "default:read");
    assert_eq!(
        r.store("default")
            .read("s", 0, 10)
            .await
            .expect("reads")
            .len(),
        1
    );
    denied(
        r.store("default")
            .append("s", ExpectedVersion::Any, one_event("sneaky"))
            .await,
        "write",
    );
    denied(
        r.store("default")
            .delete("s", ExpectedVersion::Any, false)
            .await,
        "admin",
    );
    denied(
        r.store("default")
            .delete("s", ExpectedVersion::Any, true)
            .await,
        "admin",
    );
    denied(r.store("default").remove_node(1).await, "admin");
    denied(r.store("other").read("o", 0, 10).await, "read");
    denied(r.stats().await, "admin");
    assert_eq!(
        r.list_stores().await.expect("list"),
        ["default"],
        "a principal sees only the stores it holds a role on"
    );

    // A read+write token for `default` appends and reads there, not in `other`.
    let w = client(addr, &app.token).await.expect("app connects");
    w.store("default")
        .append("s", ExpectedVersion::Exact(0), one_event("paid"))
        .await
        .expect("app appends");
    assert_eq!(
        w.store("default")
            .read("s", 0, 10)
            .await
            .expect("reads")
            .len(),
        2
    );
    denied(w.store("other").read("o", 0, 10).await, "read");
    denied(
        w.store("other")
            .append("o", ExpectedVersion::Any, one_event("sneaky"))
            .await,
        "write",
    );

    // Every refusal changed nothing: the admin reads what was there.
    let d = admin
        .store("default")
        .read("s", 0, 10)
        .await
        .expect("admin reads");
    let types: Vec<&str> = d.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["placed", "paid"]);
    let o = admin
        .store("other")
        .read("o", 0, 10)
        .await
        .expect("admin reads other");
    assert_eq!(o.len(), 1);
    let status = admin.cluster_status().await.expect("status");
    assert!(
        status
            .iter()
            .all(|s| s.nodes.iter().any(|n| n.node_id == 1)),
        "node 1 is still a member: {status:?}"
    );

    // An admin action is audited; refusals were counted.
    // (Whatever the store answers, deleting is an admin action.)
    let _ = admin
        .store("default")
        .delete("gone", ExpectedVersion::Any, false)
        .await;
    let audit = admin.health().await.expect("health").audit;
    assert_eq!(
        (
            audit.auth_failures,
            audit.permission_denied,
            audit.admin_actions
        ),
        (2, 8, 1),
        "two connects refused, eight calls denied, one delete let through"
    );

    // The CLI with RECKON_TOKEN.
    let (code, out, err) = reckon(addr, Some(&app.token), &["append", "s", "--type", "cli"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "2");
    let (code, _, err) = reckon(addr, Some(&reader.token), &["delete", "s"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.starts_with("error: PermissionDenied: "), "{err}");
    let (code, _, err) = reckon(addr, Some("rkn_wrong"), &["read", "s"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.starts_with("error: Unauthenticated: "), "{err}");
    let (code, _, err) = reckon(addr, None, &["read", "s"]);
    assert_eq!(code, 6, "{err}");
    let (code, out, err) = reckon(addr, None, &["health"]);
    assert_eq!(code, 0, "health is open to all: {err}");
    assert!(out.contains("\naudit auth_failures="), "{out}");
    let (code, out, err) = reckon(addr, Some(&reader.token), &["read", "s"]);
    assert_eq!((code, out.lines().count()), (0, 3), "{err}");

    // Subscriptions: an admin creates, a reader may not, but consumes it.
    let (code, _, err) = reckon(
        addr,
        Some(&reader.token),
        &["subscribe", "stream", "s", "feed"],
    );
    assert_eq!(code, 6, "{err}");
    let (code, _, err) = reckon(
        addr,
        Some(&ops.token),
        &["subscribe", "stream", "s", "feed"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = reckon(
        addr,
        Some(&reader.token),
        &["tail", "stream", "s", "feed", "--ack", "--max", "3"],
    );
    assert_eq!((code, out.lines().count()), (0, 3), "{err}");

    // The audit is in the log, naming principal, store and action; no token is.
    let log = gater.log();
    assert!(
        log.contains("reckon_db.gater.access.denied")
            && log.contains("principal=reader")
            && log.contains("action=delete_stream"),
        "{log}"
    );
    assert!(
        log.contains("reckon_db.gater.admin.action") && log.contains("principal=ops"),
        "{log}"
    );
    assert!(log.contains("reckon_db.gater.auth.failed"), "{log}");
    for t in [&ops.token, &app.token, &reader.token] {
        assert!(!log.contains(t.as_str()), "a token in the gater's log");
    }
    assert!(
        !log.contains("rkn_wrong"),
        "a presented token in the gater's log"
    );
}

#[tokio::test]
async fn a_token_removed_from_the_config_is_refused_after_a_restart() {
    let keep = token_create("keep", &["default:read"]);
    let drop = token_create("drop", &["default:read"]);
    let both = format!("{}\n{}", keep.config, drop.config);
    let mut gater = GaterProc::start_with_config("127.0.0.1:0", &both, &[]);
    let addr = gater.addr.clone();
    let dropped = client(&addr, &drop.token)
        .await
        .expect("drop connects at first");
    assert_eq!(dropped.access().await.expect("access").name, "drop");

    // --print-config shows hashes and never a token.
    let printed = Command::new(bin("reckon-gater"))
        .arg("--config")
        .arg(write_config(&both).path().join("g.toml"))
        .arg("--print-config")
        .output()
        .expect("print-config");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("[[tokens]]") && printed.contains("name = \"drop\""),
        "{printed}"
    );
    assert!(
        !printed.contains(&drop.token) && !printed.contains(&keep.token),
        "{printed}"
    );

    gater.kill9();
    let gater = GaterProc::start_with_config(&addr, &keep.config, &[]);
    assert_eq!(gater.addr, addr);
    unauthenticated(client(&addr, &drop.token).await);
    // The client made before the restart authenticates again on its new connection
    // (its first call may see the old connection die first).
    let mut answer = dropped.access().await;
    if matches!(answer, Err(ClientError::Transport(_))) {
        answer = dropped.access().await;
    }
    unauthenticated(answer);
    let (code, _, err) = reckon(&addr, Some(&drop.token), &["read", "s"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.starts_with("error: Unauthenticated: "), "{err}");
    let kept = client(&addr, &keep.token)
        .await
        .expect("keep still connects");
    assert_eq!(kept.access().await.expect("access").name, "keep");
}

fn write_config(text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("g.toml"), text).expect("write");
    d
}
