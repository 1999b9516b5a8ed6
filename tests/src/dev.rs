//! The gater embedded by `reckon-node --dev`, and clients through it.

use std::time::{Duration, Instant};

use crate::NodeProc;

/// The address of the gater a `--dev` node embeds, from its second ready line.
pub fn gater_addr(node: &NodeProc) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for line in node.more_lines() {
            if let Some(rest) = line.split("embedded gater listening on ").nth(1) {
                return rest.trim().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the --dev node never printed its embedded gater's address"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The addresses of the embedded gater and of the KurrentDB front door a `--dev`
/// node serves, from its ready lines (the test helpers start every `--dev` node with
/// both on free ports).
pub fn gater_and_kurrent_addrs(node: &NodeProc) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut gater, mut kurrent) = (None, None);
    loop {
        for line in node.more_lines() {
            if let Some(rest) = line.split("embedded gater listening on ").nth(1) {
                gater = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("KurrentDB front door listening on ").nth(1) {
                kurrent = Some(rest.trim().to_string());
            }
        }
        if let (Some(g), Some(k)) = (&gater, &kurrent) {
            return (g.clone(), k.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the --dev node never printed its embedded gater's and KurrentDB front door's addresses"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `reckon-node --dev` with its embedded gater on a free port; returns the node
/// and the gater's address.
pub fn start_dev_with_gater(data_dir: &std::path::Path, extra: &[&str]) -> (NodeProc, String) {
    let mut flags = vec!["--dev-gater-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let node = NodeProc::start_dev(data_dir, &flags);
    let addr = gater_addr(&node);
    (node, addr)
}

/// Waits until the gater at `addr` has a worker for `store` (registration is
/// asynchronous after the node says it is ready).
pub async fn wait_for_store(addr: &str, store: &str) -> reckon_gater::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = reckon_gater::Client::connect(&[addr]).await {
            if let Ok(stores) = c.list_stores().await {
                if stores.iter().any(|s| s == store) {
                    return c;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "gater {addr} never saw a worker for store {store}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
