//! The network task: runs the [`Command`]s that `update` asks for with the gater
//! client and sends the answers back as [`Event`]s over a bounded channel.
//!
//! The UI never awaits the network: it hands commands over with `try_send` and
//! drains events between frames. This task owns the [`Client`]; when no gater
//! answers it drops the client, says [`Event::Disconnected`], answers the command
//! with an error, and dials again on the next command, so the console survives the
//! gater going away and coming back. With a token, every connection the client
//! makes presents it; after connecting, the task asks the gater who the console acts
//! as and tells the UI ([`Event::Access`]), which offers only what that allows.
//!
//! Each panel has a [`Lane`]: commands of one lane run one at a time, in order, and
//! lanes run side by side, so a slow call (stats from a node far away, a leadership
//! transfer) never holds up the other panels' refresh.

use std::collections::VecDeque;
use std::time::Duration;

use reckon_gater::tls::Tls;
use reckon_gater::{Client, ClientError, Direction, ExpectedVersion, NewEvent, StreamPage};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::app::{ClusterData, Command, Event, ALL_STREAM};

/// Capacity of the command and event channels.
pub const CHANNEL_CAPACITY: usize = 64;
/// Deadline of each call to the gater.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Commands one lane holds waiting; more are answered with an error at once.
pub const LANE_QUEUE_MAX: usize = 16;

/// Starts the network task on the current tokio runtime: it connects to `gaters`
/// presenting `token` (if any), with `tls` (if given).
pub fn spawn(
    gaters: Vec<String>,
    token: Option<String>,
    tls: Option<Tls>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(gaters, token, tls, commands, events))
}

async fn connect(
    gaters: &[String],
    token: Option<&str>,
    tls: Option<Tls>,
) -> Result<Client, ClientError> {
    let mut builder = Client::builder(gaters)
        .token(token.unwrap_or_default())
        .timeout(CALL_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.connect().await
}

/// Which commands wait for each other: one lane a panel, and one for actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Cluster status and health.
    Cluster,
    /// Node stats.
    Stats,
    /// Stream lists and searches.
    Streams,
    /// Pages of events.
    Events,
    /// Subscriptions.
    Subscriptions,
    /// Confirmed actions, in the order they were confirmed.
    Actions,
}

impl Lane {
    const ALL: [Lane; 6] = [
        Lane::Cluster,
        Lane::Stats,
        Lane::Streams,
        Lane::Events,
        Lane::Subscriptions,
        Lane::Actions,
    ];

    /// The lane of a command.
    pub fn of(cmd: &Command) -> Lane {
        match cmd {
            Command::RefreshCluster => Lane::Cluster,
            Command::RefreshStats => Lane::Stats,
            Command::LoadStreams { .. } | Command::FindStreams { .. } => Lane::Streams,
            Command::LoadEvents { .. } => Lane::Events,
            Command::LoadSubscriptions { .. } => Lane::Subscriptions,
            Command::DeleteStream { .. }
            | Command::Unsubscribe { .. }
            | Command::AppendTest { .. }
            | Command::RemoveNode { .. }
            | Command::TransferLeader { .. } => Lane::Actions,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The waiting commands of every lane and which lanes have one running.
#[derive(Debug, Default)]
pub struct Lanes {
    waiting: [VecDeque<Command>; 6],
    busy: [bool; 6],
}

impl Lanes {
    /// Queues `cmd`; gives it back when its lane already holds [`LANE_QUEUE_MAX`].
    pub fn push(&mut self, cmd: Command) -> Result<(), Command> {
        let q = &mut self.waiting[Lane::of(&cmd).slot()];
        if q.len() >= LANE_QUEUE_MAX {
            return Err(cmd);
        }
        q.push_back(cmd);
        Ok(())
    }

    /// The next command of every idle lane that has one, each lane now marked busy.
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let i = lane.slot();
            if !self.busy[i] {
                if let Some(cmd) = self.waiting[i].pop_front() {
                    self.busy[i] = true;
                    out.push(cmd);
                }
            }
        }
        out
    }

    /// Notes that the running command of `lane` finished.
    pub fn done(&mut self, lane: Lane) {
        self.busy[lane.slot()] = false;
    }
}

async fn run(
    gaters: Vec<String>,
    token: Option<String>,
    tls: Option<Tls>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut client: Option<Client> = None;
    let mut lanes = Lanes::default();
    let mut running: JoinSet<(Event, Option<ClientError>)> = JoinSet::new();
    // The lane of each running task.
    let mut lanes_of: Vec<(tokio::task::Id, Lane)> = Vec::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            cmd = commands.recv(), if open => match cmd {
                Some(cmd) => {
                    if let Err(cmd) = lanes.push(cmd) {
                        let busy = format!("{:?} commands queue up; try again", Lane::of(&cmd));
                        if events.send(failed(cmd, busy)).await.is_err() {
                            return;
                        }
                    }
                }
                None => open = false,
            },
            Some(finished) = running.join_next_with_id(), if !running.is_empty() => {
                // Its lane is free again, whether the call answered or panicked.
                let id = match &finished {
                    Ok((id, _)) => *id,
                    Err(e) => e.id(),
                };
                if let Some(at) = lanes_of.iter().position(|(i, _)| *i == id) {
                    lanes.done(lanes_of.swap_remove(at).1);
                }
                let Ok((_, (event, err))) = finished else {
                    continue;
                };
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
        let starting = lanes.start();
        if starting.is_empty() {
            continue;
        }
        let c = match &client {
            Some(c) => c.clone(),
            None => match connect(&gaters, token.as_deref(), tls.clone()).await {
                Ok(c) => {
                    client = Some(c.clone());
                    if let Ok(p) = c.access().await {
                        if events.send(Event::Access(p)).await.is_err() {
                            return;
                        }
                    }
                    c
                }
                Err(e) => {
                    // No gater: every command about to start hears it, and the next
                    // command dials again.
                    let msg = e.to_string();
                    if events.send(Event::Disconnected(msg.clone())).await.is_err() {
                        return;
                    }
                    for cmd in starting {
                        lanes.done(Lane::of(&cmd));
                        if events.send(failed(cmd, msg.clone())).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            },
        };
        for cmd in starting {
            let lane = Lane::of(&cmd);
            let c = c.clone();
            let task = running.spawn(async move { execute(&c, cmd).await });
            lanes_of.push((task.id(), lane));
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
                } => {
                    c.store(&store)
                        .delete(&stream, ExpectedVersion::Any, hard)
                        .await
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events(from: u64) -> Command {
        Command::LoadEvents {
            store: "default".into(),
            stream: "s".into(),
            from,
            count: 10,
        }
    }

    #[test]
    fn a_busy_lane_holds_only_its_own_commands() {
        let mut lanes = Lanes::default();
        lanes.push(Command::RefreshStats).unwrap();
        assert_eq!(lanes.start(), [Command::RefreshStats]);
        // Stats still running: the cluster and a page of events start anyway.
        lanes.push(Command::RefreshStats).unwrap();
        lanes.push(Command::RefreshCluster).unwrap();
        lanes.push(events(0)).unwrap();
        lanes.push(events(10)).unwrap();
        assert_eq!(lanes.start(), [Command::RefreshCluster, events(0)]);
        assert_eq!(lanes.start(), []);
        // Each lane goes on in order once its command is done.
        lanes.done(Lane::Events);
        assert_eq!(lanes.start(), [events(10)]);
        lanes.done(Lane::Stats);
        assert_eq!(lanes.start(), [Command::RefreshStats]);
    }

    #[test]
    fn actions_run_one_at_a_time_in_the_order_confirmed() {
        let mut lanes = Lanes::default();
        let delete = Command::DeleteStream {
            store: "default".into(),
            stream: "s".into(),
            hard: false,
        };
        let unsubscribe = Command::Unsubscribe {
            store: "default".into(),
            key: "k".into(),
        };
        lanes.push(delete.clone()).unwrap();
        lanes.push(unsubscribe.clone()).unwrap();
        assert_eq!(lanes.start(), [delete]);
        assert_eq!(lanes.start(), []);
        lanes.done(Lane::Actions);
        assert_eq!(lanes.start(), [unsubscribe]);
    }

    #[test]
    fn a_full_lane_gives_the_command_back() {
        let mut lanes = Lanes::default();
        for from in 0..LANE_QUEUE_MAX as u64 {
            lanes.push(events(from)).unwrap();
        }
        assert_eq!(lanes.push(events(99)), Err(events(99)));
        // Other lanes still take commands.
        lanes.push(Command::RefreshCluster).unwrap();
    }
}
