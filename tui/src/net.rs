//! The network task: runs the [`Command`]s that `update` asks for with the gater
//! client and sends the answers back as [`Event`]s over a bounded channel.
//!
//! The UI never awaits the network: it hands commands over with `try_send` and
//! drains events between frames. This task owns the [`Client`]; when no gater
//! answers it drops the client, says [`Event::Disconnected`], answers the command
//! with an error, and dials again on the next command, so the console survives the
//! gater going away and coming back.

use std::time::Duration;

use reckon_gater::{Client, ClientError, Direction, ExpectedVersion, NewEvent, StreamPage};
use tokio::sync::mpsc;

use crate::app::{ClusterData, Command, Event, ALL_STREAM};

/// Capacity of the command and event channels.
pub const CHANNEL_CAPACITY: usize = 64;
/// Deadline of each call to the gater.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the network task on the current tokio runtime.
pub fn spawn(
    gaters: Vec<String>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(gaters, commands, events))
}

async fn run(
    gaters: Vec<String>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut client: Option<Client> = None;
    while let Some(cmd) = commands.recv().await {
        let c = match &client {
            Some(c) => c.clone(),
            None => match Client::connect(&gaters).await {
                Ok(c) => {
                    let c = c.with_timeout(CALL_TIMEOUT);
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    let msg = e.to_string();
                    if events.send(Event::Disconnected(msg.clone())).await.is_err()
                        || events.send(failed(cmd, msg)).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
            },
        };
        let (event, err) = execute(&c, cmd).await;
        let link = match err {
            Some(e) if is_link_error(&e) => {
                client = None;
                Event::Disconnected(e.to_string())
            }
            _ => Event::Connected,
        };
        if events.send(link).await.is_err() || events.send(event).await.is_err() {
            return;
        }
    }
}

/// Whether the error says no gater answered (rather than a store refusing).
fn is_link_error(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport(_) | ClientError::Timeout(_))
}

/// The event answering `cmd` with `error`.
pub fn failed(cmd: Command, error: String) -> Event {
    match cmd {
        Command::RefreshCluster => Event::Cluster(Err(error)),
        Command::RefreshStats => Event::Stats(Err(error)),
        Command::LoadStreams { store, after, .. } => Event::Streams {
            store,
            contains: None,
            after,
            result: Err(error),
        },
        Command::FindStreams {
            store,
            contains,
            after,
            ..
        } => Event::Streams {
            store,
            contains: Some(contains),
            after,
            result: Err(error),
        },
        Command::LoadEvents {
            store,
            stream,
            from,
            ..
        } => Event::Events {
            store,
            stream,
            from,
            result: Err(error),
        },
        Command::LoadSubscriptions { store } => Event::Subscriptions {
            store,
            result: Err(error),
        },
        other => Event::ActionDone {
            what: describe(&other),
            result: Err(error),
        },
    }
}

fn describe(cmd: &Command) -> String {
    match cmd {
        Command::DeleteStream { stream, hard, .. } => {
            format!("{} delete of {stream}", if *hard { "hard" } else { "soft" })
        }
        Command::Unsubscribe { key, .. } => format!("removed subscription {key}"),
        Command::AppendTest { stream, .. } => format!("appended a test event to {stream}"),
        Command::RemoveNode { node_id, .. } => format!("removed node {node_id}"),
        Command::TransferLeader { node_id, .. } => format!("node {node_id} leads"),
        other => format!("{other:?}"),
    }
}

fn split<T>(r: Result<T, ClientError>) -> (Result<T, String>, Option<ClientError>) {
    match r {
        Ok(v) => (Ok(v), None),
        Err(e) => (Err(e.to_string()), Some(e)),
    }
}

/// Runs one command; gives its event and the error, if any.
async fn execute(c: &Client, cmd: Command) -> (Event, Option<ClientError>) {
    match cmd {
        Command::RefreshCluster => {
            let r = async {
                let status = c.cluster_status().await?;
                let health = c.health().await?;
                Ok(ClusterData { status, health })
            }
            .await;
            let (r, e) = split(r);
            (Event::Cluster(r), e)
        }
        Command::RefreshStats => {
            let (r, e) = split(c.stats().await);
            (Event::Stats(r), e)
        }
        Command::LoadStreams {
            store,
            after,
            limit,
        } => {
            let r = c.store(&store).list_streams(after.as_deref(), limit).await;
            // A full page may have more after it; a short one is the last.
            let r = r.map(|streams| StreamPage {
                resume_after: (streams.len() as u32 >= limit)
                    .then(|| streams.last().map(|s| s.stream_id.clone()))
                    .flatten(),
                streams,
            });
            let (result, e) = split(r);
            (
                Event::Streams {
                    store,
                    contains: None,
                    after,
                    result,
                },
                e,
            )
        }
        Command::FindStreams {
            store,
            contains,
            after,
            limit,
        } => {
            let r = c
                .store(&store)
                .find_streams(&contains, after.as_deref(), limit)
                .await;
            let (result, e) = split(r);
            (
                Event::Streams {
                    store,
                    contains: Some(contains),
                    after,
                    result,
                },
                e,
            )
        }
        Command::LoadEvents {
            store,
            stream,
            from,
            count,
        } => {
            let h = c.store(&store);
            let r = if stream == ALL_STREAM {
                h.read_all(from, count, Direction::Forward).await
            } else {
                h.read_stream(&stream, from, count, Direction::Forward)
                    .await
            };
            let (result, e) = split(r);
            (
                Event::Events {
                    store,
                    stream,
                    from,
                    result,
                },
                e,
            )
        }
        Command::LoadSubscriptions { store } => {
            let r = c.store(&store).subscriptions().await;
            let (result, e) = split(r);
            (Event::Subscriptions { store, result }, e)
        }
        action => {
            let what = describe(&action);
            let r = match action {
                Command::DeleteStream {
                    store,
                    stream,
                    hard,
                } => c.store(&store).delete(&stream, hard).await,
                Command::Unsubscribe { store, key } => c.store(&store).unsubscribe(&key).await,
                Command::AppendTest { store, stream, at } => {
                    let data = serde_json::json!({ "source": "reckon-tui", "at_ms": at });
                    c.store(&store)
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            vec![NewEvent::json("reckon-tui.test", &data)],
                        )
                        .await
                        .map(|_| ())
                }
                Command::RemoveNode { store, node_id } => {
                    c.store(&store).remove_node(node_id).await
                }
                Command::TransferLeader { store, node_id } => {
                    c.store(&store).transfer_leader(node_id).await
                }
                _ => Ok(()),
            };
            let (result, e) = split(r);
            (Event::ActionDone { what, result }, e)
        }
    }
}
