//! `reckon-tui --demo`: a 3-node cluster and a gater inside this process, on free
//! loopback ports with data in a temporary directory, a trickle of sample events
//! and one subscription, so that the console has something live to show.

use std::time::Duration;

use reckon_gater::subscription::SubscribeOptions;
use reckon_gater::types::SubscriptionType;
use reckon_gater::{Client, ExpectedVersion, NewEvent};
use reckon_node::embedded::EmbeddedCluster;
use tokio::sync::watch;

/// Nodes in the demo cluster.
pub const DEMO_NODES: u64 = 3;
/// Pause between two sample appends.
pub const TRICKLE_INTERVAL: Duration = Duration::from_millis(400);

/// A running demo; dropping it stops the cluster and removes its data.
pub struct Demo {
    /// The gater address the console connects to.
    pub gater: String,
    stop: watch::Sender<bool>,
    _cluster: EmbeddedCluster,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the gater, the three nodes and the trickle on the current runtime.
pub async fn start() -> anyhow::Result<Demo> {
    let dir = tempfile::tempdir()?;
    let cluster = EmbeddedCluster::start(DEMO_NODES, dir.path(), |_| {}).await?;
    let gater = cluster.gater().to_string();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(trickle(gater.clone(), stop_rx));
    Ok(Demo {
        gater,
        stop,
        _cluster: cluster,
        _dir: dir,
    })
}

/// Appends sample orders until stopped; creates one subscription once it can.
async fn trickle(gater: String, stop: watch::Receiver<bool>) {
    let mut subscribed = false;
    let mut n: u64 = 0;
    while !*stop.borrow() {
        tokio::time::sleep(TRICKLE_INTERVAL).await;
        let Ok(client) = Client::connect(std::slice::from_ref(&gater)).await else {
            continue;
        };
        let store = client.store("default");
        if !subscribed {
            // One subscription a consumer keeps up with, one nobody reads (its lag
            // grows), so the Subscriptions tab has both to show.
            let billing = store
                .subscribe(
                    SubscriptionType::EventPattern,
                    "order-*",
                    "demo-billing",
                    SubscribeOptions::default(),
                )
                .await;
            let audit = store
                .subscribe(
                    SubscriptionType::Stream,
                    "$all",
                    "demo-audit",
                    SubscribeOptions::default(),
                )
                .await;
            if let (Ok(billing), Ok(_)) = (billing, audit) {
                subscribed = true;
                let sub = store.subscriber(&billing.key, "demo-billing-1");
                tokio::spawn(consume(sub, stop.clone()));
            }
        }
        while !*stop.borrow() {
            let stream = format!("order-{}", n % 5);
            let kind = if n.is_multiple_of(5) {
                "OrderPlaced"
            } else {
                "ItemAdded"
            };
            let data =
                serde_json::json!({ "order": n % 5, "sku": format!("sku-{n}"), "qty": n % 3 + 1 });
            if store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::json(kind, &data)],
                )
                .await
                .is_err()
            {
                break;
            }
            n += 1;
            tokio::time::sleep(TRICKLE_INTERVAL).await;
        }
    }
}

/// Reads a subscription and acknowledges each batch until stopped; a failed poll is
/// retried after a pause (the cluster may be electing).
async fn consume(mut sub: reckon_gater::Subscriber, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match sub.next_batch().await {
            Ok(batch) => {
                if let Some(last) = batch.last() {
                    let _ = sub.ack(last.position).await;
                }
            }
            Err(_) => tokio::time::sleep(TRICKLE_INTERVAL).await,
        }
    }
}
