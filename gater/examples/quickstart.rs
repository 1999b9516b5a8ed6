//! A first program against reckon-db: append with optimistic concurrency, read a
//! stream back, fold it into state, and follow new events with a subscription.
//!
//! Start a node first (`cargo run --release --bin reckon-node -- --dev`), then:
//!
//! ```sh
//! cargo run -p reckon-gater --example quickstart
//! ```

use std::time::Duration;

use reckon_gater::aggregate;
use reckon_gater::subscription::{StartFrom, SubscribeOptions};
use reckon_gater::types::SubscriptionType;
use reckon_gater::{Client, ClientError, ExpectedVersion, NewEvent, StoreError};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let gater = std::env::var("RECKON_GATER").unwrap_or_else(|_| "127.0.0.1:7700".into());
    let client = Client::connect(&[gater.as_str()]).await?;
    let store = client.store("default");
    let stream = format!("account-{}", uuid::Uuid::now_v7());

    // A new stream: expect it not to exist yet.
    let opened = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::json(
                "opened",
                &json!({"owner": "Bob", "balance": 0}),
            )],
        )
        .await?;
    println!("opened {stream} at version {}", opened.version);

    // Two deposits in one atomic batch, expecting the version we just wrote.
    let deposited = store
        .append(
            &stream,
            ExpectedVersion::Exact(opened.version),
            vec![
                NewEvent::json("deposited", &json!({"balance": {"$sum": 100}})),
                NewEvent::json("deposited", &json!({"balance": {"$sum": 50}})),
            ],
        )
        .await?;
    println!("deposited: version {}", deposited.version);

    // A writer with a stale expectation is refused, and nothing is written.
    match store
        .append(
            &stream,
            ExpectedVersion::Exact(0),
            vec![NewEvent::json("x", &json!({}))],
        )
        .await
    {
        Err(ClientError::Store(StoreError::WrongExpectedVersion { expected, current })) => {
            println!("refused as expected: expected {expected}, current {current:?}")
        }
        other => println!("unexpected: {other:?}"),
    }

    // Read the stream and fold it into state.
    let events = store.read(&stream, 0, 100).await?;
    let state = aggregate::aggregate_records(&events, None, json!({}), true);
    println!("state: {state}");

    // Follow the stream: catch up from the beginning, then live.
    let sub = store
        .subscribe(
            SubscriptionType::Stream,
            &stream,
            "quickstart",
            SubscribeOptions {
                start_from: StartFrom::Beginning,
                pool_size: 1,
            },
        )
        .await?;
    let mut subscriber = store.subscriber(&sub.key, "quickstart-1");
    let batch = tokio::time::timeout(Duration::from_secs(5), subscriber.next_batch())
        .await
        .map_err(|_| ClientError::Timeout(Duration::from_secs(5)))??;
    for e in &batch {
        println!(
            "delivered {} v{} at {}",
            e.event_type, e.version, e.position
        );
    }
    if let Some(last) = batch.last() {
        subscriber.ack(last.position).await?;
    }
    store.unsubscribe(&sub.key).await?;
    Ok(())
}
