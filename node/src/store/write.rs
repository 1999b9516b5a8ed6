//! The write path: each write operation validated and made a [`Command`], then
//! routed to the leader.
//!
//! Every write carries its caller's deadline. On the leader it is queued to the
//! batcher (`batcher.rs`), which packs it with others into one Raft entry. A write
//! that reaches a follower is forwarded at once to the leader's batcher (one hop,
//! within [`FORWARD_TIMEOUT`]); the leader does not forward again. While this node
//! hands its leadership over, writes are refused, retryably.

use std::time::{Duration, Instant};

use reckon_gater::types::{AppendResult, ExpectedVersion, NewEvent, StoreError};
use tokio::sync::oneshot;

use super::batcher::{leadership, Pending};
use super::Store;
use crate::command::{Command, Outcome, ProposedEvent};
use crate::domain;
use crate::raft::network::{deadline_ctx, Lane};
use crate::raft::NodeId;

/// How long a write forwarded to the leader may take, at most.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Executes one write on the leader and waits for its result: queued to this
    /// node's batcher when it leads, forwarded to the leader it knows otherwise.
    /// Nothing is proposed after `deadline`.
    pub(crate) async fn submit(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        self.check_not_moving()?;
        match leadership(&self.raft, self.node_id, self.lease) {
            Ok(()) => self.enqueue(command, bytes, deadline).await,
            Err(StoreError::NotLeader {
                leader: Some(leader),
                leader_addr: Some(addr),
            }) => self.forward(leader, addr, command, bytes, deadline).await,
            Err(e) => Err(e),
        }
    }

    /// Executes a write forwarded by a follower: only the leader takes it (one hop).
    pub(crate) async fn submit_forwarded(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        self.check_not_moving()?;
        leadership(&self.raft, self.node_id, self.lease)?;
        self.enqueue(command, bytes, deadline).await
    }

    async fn enqueue(
        &self,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            command,
            bytes,
            deadline,
            reply,
        };
        let queued = tokio::time::timeout_at(deadline.into(), self.queue.send(pending)).await;
        match queued {
            Err(_) => {
                return Err(StoreError::Timeout {
                    what: format!(
                        "store {} queue stayed full until the caller's deadline",
                        self.name
                    ),
                })
            }
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable {
                    reason: format!("store {} is shutting down", self.name),
                })
            }
            Ok(Ok(())) => {}
        }
        rx.await.map_err(|_| StoreError::Unavailable {
            reason: format!("store {} stopped before answering", self.name),
        })?
    }

    /// Sends a write to the leader's batcher, within the caller's deadline (and at
    /// most [`FORWARD_TIMEOUT`]).
    async fn forward(
        &self,
        leader: NodeId,
        addr: String,
        command: Command,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Outcome, StoreError> {
        let client = match self.peers.client_on(&addr, Lane::Bulk).await {
            Ok(c) => c,
            Err(e) => {
                // The caller is sent to the leader itself, at its address as is.
                tracing::warn!(target: "reckon_db", store = %self.name, leader, addr = %addr, error = %e, "cannot reach the leader to forward a write");
                return Err(StoreError::NotLeader {
                    leader: Some(leader),
                    leader_addr: Some(addr),
                });
            }
        };
        let mut ctx = deadline_ctx(FORWARD_TIMEOUT);
        ctx.deadline = ctx.deadline.min(deadline);
        match client
            .forward(ctx, self.name.clone(), command, bytes as u64)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.peers.forget_on(&addr, Lane::Bulk);
                Err(StoreError::Unavailable {
                    reason: format!("forwarding to leader {leader} at {addr} failed: {e}"),
                })
            }
        }
    }

    /// Appends events; see the worker service for the contract.
    pub async fn append(
        &self,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        deadline: Instant,
    ) -> Result<AppendResult, StoreError> {
        domain::validate_append(&self.limits, &stream_id, &events)?;
        let bytes = events.iter().map(domain::event_size).sum();
        let events = events
            .into_iter()
            .map(|e| ProposedEvent {
                event_id: e.event_id.unwrap_or_else(uuid::Uuid::now_v7),
                event_type: e.event_type,
                data: e.data,
                metadata: e.metadata,
                content_type: e.content_type.into(),
                tags: e.tags,
            })
            .collect();
        let cmd = Command::Append {
            stream_id,
            expected: expected.into(),
            events,
        };
        match self.submit(cmd, bytes, deadline).await? {
            Outcome::Appended(r) => Ok(r),
            Outcome::Done | Outcome::Subscription(_) => Err(StoreError::Internal {
                message: "append answered without a result".into(),
            }),
        }
    }

    /// Deletes a stream (soft or hard) if it is at `expected`.
    pub async fn delete(
        &self,
        stream_id: String,
        expected: reckon_gater::types::ExpectedVersion,
        hard: bool,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_writable_stream_id(&self.limits, &stream_id)?;
        let cmd = Command::DeleteStream {
            stream_id,
            hard,
            expected: expected.into(),
        };
        self.submit(cmd, 0, deadline).await?;
        Ok(())
    }

    /// Sets how long a stream keeps its events.
    pub async fn set_retention(
        &self,
        stream_id: String,
        retention: reckon_gater::types::StreamRetention,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_writable_stream_id(&self.limits, &stream_id)?;
        if retention.max_count == Some(0) {
            return Err(StoreError::invalid(
                "retention.max_count",
                "0 would hide every event: give at least 1, or none to keep them all",
            ));
        }
        if retention.max_age_us == Some(0) {
            return Err(StoreError::invalid(
                "retention.max_age",
                "0 would hide every event: give more, or none to keep them all",
            ));
        }
        let cmd = Command::SetRetention {
            stream_id,
            max_age_us: retention.max_age_us,
            max_count: retention.max_count,
            truncate_before: retention.truncate_before,
        };
        self.submit(cmd, 0, deadline).await?;
        Ok(())
    }

    /// Saves a snapshot.
    pub async fn save_snapshot(
        &self,
        stream_id: String,
        version: u64,
        data: Vec<u8>,
        metadata: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_snapshot(&self.limits, &stream_id, &data, &metadata)?;
        let bytes = data.len() + metadata.len();
        let cmd = Command::SaveSnapshot {
            stream_id,
            version,
            data,
            metadata,
        };
        self.submit(cmd, bytes, deadline).await?;
        Ok(())
    }

    /// Deletes one snapshot or all of a stream's.
    pub async fn delete_snapshot(
        &self,
        stream_id: String,
        version: Option<u64>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        domain::validate_stream_id(&self.limits, &stream_id)?;
        self.submit(Command::DeleteSnapshot { stream_id, version }, 0, deadline)
            .await?;
        Ok(())
    }
}
