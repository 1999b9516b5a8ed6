//! `Streams.Read`: reads of a stream or of `$all`, and catch-up subscriptions.
//!
//! A read is paged through [`StoreRequest::ReadStream`] / [`StoreRequest::ReadAll`]
//! ([`READ_PAGE_EVENTS`] a page) into a bounded queue the client drains
//! ([`READ_QUEUE_MAX`]): a slow client slows the reading, never fills memory.
//!
//! A catch-up subscription is served by the store's own subscription delivery, not by
//! polling reads: one store subscription on `$all`
//! ([`CATCH_UP_SUBSCRIPTION`], created once per store and shared), long-polled with an
//! explicit position ([`StoreRequest::Poll`] with `from`), so each client keeps its
//! own place and nothing is acknowledged. A poll answers as soon as there are events
//! past the position, or after [`POLL_WAIT`]; its `next` is where the following poll
//! starts, so the client sees every event once, in order, through catch-up and live
//! alike: there is no seam between two mechanisms to fall into.
//!
//! ```text
//!  $all from P:     confirmation, Poll(from P)…  ─▶ events / checkpoints
//!                                               ─▶ caught-up once next ≥ head, then live
//!  stream S from R: confirmation, head H of $all, ReadStream(S, R…) pages ─▶ events
//!                   ─▶ caught-up ─▶ Poll(from H), S's events past the last revision sent
//! ```
//!
//! A stream subscription reads the head of `$all` before its catch-up reads, so an
//! event appended meanwhile is either in those reads or at or after the head, and
//! the live phase skips revisions already sent: no gap, no repeat. A poll that fails
//! over (a leader killed) is retried by the gateway within its deadline, and by the
//! subscription after that ([`SUBSCRIPTION_RETRIES_MAX`]), from the same position.

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::convert::{self, after_commit, at_commit, commit_of, status_of, stream_name};
use super::filter::Filter;
use super::proto::event_store::client::streams::read_req::options::{
    self as opts, all_options, stream_options, CountOption, FilterOption, StreamOption,
};
use super::proto::event_store::client::streams::{read_resp, ReadReq, ReadResp};
use super::streams::unexpected;
use super::{receiver_stream, Call, Door};
use crate::access::Permission;
use crate::request::{StoreRequest, StoreResponse};
use crate::subscription::{Delivery, StartFrom, SubscribeOptions};
use crate::types::{Direction, EventRecord, ReadConsistency, StoreError, SubscriptionType};

/// Events asked of the store in one page of a read.
pub const READ_PAGE_EVENTS: u32 = 1000;
/// Messages queued for one read's client before reading waits for it.
pub const READ_QUEUE_MAX: usize = 256;
/// The name of the store subscription on `$all` that catch-up subscriptions poll.
pub const CATCH_UP_SUBSCRIPTION: &str = "kurrent-catch-up";
/// The consumer name catch-up subscriptions poll as.
const CATCH_UP_CONSUMER: &str = "kurrent";
/// Events one poll of a catch-up subscription asks for.
pub const POLL_EVENTS: u32 = 1000;
/// How long one poll waits for new events.
pub const POLL_WAIT: Duration = Duration::from_secs(5);
/// Time a poll's answer may take beyond its wait (a failover inside the gateway).
pub const POLL_MARGIN: Duration = Duration::from_secs(10);
/// Polls in a row that may fail (the store unreachable) before the subscription
/// ends with the error; a client then resubscribes from its last position.
pub const SUBSCRIPTION_RETRIES_MAX: u32 = 30;
/// Pause between two failed polls.
pub const SUBSCRIPTION_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Where a stream read or subscription starts, as the client said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// The first revision.
    Start,
    /// Past the last revision.
    End,
    /// This revision (a read includes it, a subscription starts after it).
    Revision(u64),
}

/// Where a `$all` read or subscription starts, as the client said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllStart {
    /// The first event.
    Start,
    /// Past the last event.
    End,
    /// This commit position (a read includes it, a subscription starts after it).
    Commit(u64),
}

/// What a read reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One stream.
    Stream {
        /// Its name.
        name: String,
        /// Where to start.
        start: StreamStart,
    },
    /// The global log.
    All {
        /// Where to start.
        start: AllStart,
    },
}

/// A read request, checked and in our terms.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// What is read.
    pub source: Source,
    /// Which way.
    pub direction: Direction,
    /// Most events (`None`: a subscription, with no end).
    pub count: Option<u64>,
    /// The `$all` filter, if any.
    pub filter: Option<Filter>,
    /// Send ids as two 64-bit halves rather than strings.
    pub structured_ids: bool,
}

impl ReadPlan {
    /// The plan of a `ReadReq`'s options; errors name the field at fault.
    pub fn from_request(request: ReadReq) -> Result<ReadPlan, StoreError> {
        let o = request
            .options
            .ok_or_else(|| StoreError::invalid("options", "a read needs its options"))?;
        let direction = if o.read_direction == opts::ReadDirection::Backwards as i32 {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let source = match o.stream_option {
            Some(StreamOption::Stream(s)) => Source::Stream {
                name: stream_name(s.stream_identifier.as_ref())?,
                start: match s.revision_option {
                    Some(stream_options::RevisionOption::Revision(r)) => StreamStart::Revision(r),
                    Some(stream_options::RevisionOption::End(_)) => StreamStart::End,
                    Some(stream_options::RevisionOption::Start(_)) | None => StreamStart::Start,
                },
            },
            Some(StreamOption::All(a)) => Source::All {
                start: match a.all_option {
                    Some(all_options::AllOption::Position(p)) => {
                        AllStart::Commit(p.commit_position)
                    }
                    Some(all_options::AllOption::End(_)) => AllStart::End,
                    Some(all_options::AllOption::Start(_)) | None => AllStart::Start,
                },
            },
            None => {
                return Err(StoreError::invalid(
                    "stream_option",
                    "a read is of a stream or of $all",
                ))
            }
        };
        let count = match o.count_option {
            Some(CountOption::Count(n)) => Some(n),
            Some(CountOption::Subscription(_)) => None,
            None => {
                return Err(StoreError::invalid(
                    "count_option",
                    "a read needs a count, or is a subscription",
                ))
            }
        };
        if count.is_none() && direction == Direction::Backward {
            return Err(StoreError::invalid(
                "read_direction",
                "a subscription reads forwards",
            ));
        }
        let filter = match o.filter_option {
            Some(FilterOption::Filter(f)) => {
                if !matches!(source, Source::All { .. }) {
                    return Err(StoreError::invalid(
                        "filter",
                        "only a read of $all is filtered",
                    ));
                }
                Some(Filter::from_options(&f)?)
            }
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let structured_ids = matches!(
            o.uuid_option.and_then(|u| u.content),
            Some(opts::uuid_option::Content::Structured(_))
        );
        Ok(ReadPlan {
            source,
            direction,
            count,
            filter,
            structured_ids,
        })
    }
}

/// Where a read of `$all` starts in global positions; `None` when it reads nothing
/// (forwards from the end, backwards from before the first event).
pub fn all_read_from(start: AllStart, direction: Direction) -> Option<u64> {
    match (start, direction) {
        (AllStart::Start, Direction::Forward) => Some(0),
        (AllStart::Start, Direction::Backward) => None,
        (AllStart::End, Direction::Forward) => None,
        (AllStart::End, Direction::Backward) => Some(u64::MAX),
        (AllStart::Commit(c), Direction::Forward) => Some(at_commit(c).unwrap_or(0)),
        (AllStart::Commit(c), Direction::Backward) => at_commit(c),
    }
}

/// Where a read of a stream starts, in versions.
pub fn stream_read_from(start: StreamStart, direction: Direction) -> Option<u64> {
    match (start, direction) {
        (StreamStart::Start, Direction::Forward) => Some(0),
        (StreamStart::Start, Direction::Backward) => Some(0),
        (StreamStart::End, Direction::Forward) => Some(u64::MAX),
        (StreamStart::End, Direction::Backward) => Some(u64::MAX),
        (StreamStart::Revision(r), _) => Some(r),
    }
}

/// What a read or subscription sends: a bounded queue to its client.
struct Out {
    tx: mpsc::Sender<Result<ReadResp, Status>>,
    structured_ids: bool,
}

/// The client went away: stop.
struct Gone;

impl Out {
    async fn send(&self, content: read_resp::Content) -> Result<(), Gone> {
        self.tx
            .send(Ok(ReadResp {
                content: Some(content),
            }))
            .await
            .map_err(|_| Gone)
    }

    async fn event(&self, e: EventRecord) -> Result<(), Gone> {
        self.send(read_resp::Content::Event(convert::read_event(
            e,
            self.structured_ids,
        )))
        .await
    }

    async fn fail(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }
}

fn now_timestamp() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn events_of(answer: StoreResponse, what: &str) -> Result<Vec<EventRecord>, StoreError> {
    match answer {
        StoreResponse::Events(page) => page.decode().map_err(|e| StoreError::Internal {
            message: e.to_string(),
        }),
        other => Err(unexpected(what, &other)),
    }
}

/// Why a read or subscription stopped early.
enum Stop {
    Gone,
    Failed(Status),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Stop {
        Stop::Gone
    }
}

impl Door {
    /// `Streams.Read`.
    pub(crate) async fn serve_read(
        &self,
        request: Request<ReadReq>,
    ) -> Result<Response<tonic::codegen::BoxStream<ReadResp>>, Status> {
        let call = self.call(&request).await?;
        let plan = ReadPlan::from_request(request.into_inner()).map_err(|e| status_of(&e, None))?;
        let (tx, rx) = mpsc::channel(READ_QUEUE_MAX);
        let out = Out {
            tx,
            structured_ids: plan.structured_ids,
        };
        let door = self.clone();
        tokio::spawn(async move {
            let done = match (plan.count, &plan.source) {
                (Some(count), Source::Stream { name, start }) => {
                    read_stream(&call, &out, name, *start, plan.direction, count).await
                }
                (Some(count), Source::All { start }) => {
                    read_all(
                        &call,
                        &out,
                        *start,
                        plan.direction,
                        count,
                        plan.filter.as_ref(),
                    )
                    .await
                }
                (None, Source::Stream { name, start }) => {
                    door.subscribe_stream(&call, &out, name, *start).await
                }
                (None, Source::All { start }) => {
                    door.subscribe_all(&call, &out, *start, plan.filter.as_ref())
                        .await
                }
            };
            if let Err(Stop::Failed(status)) = done {
                out.fail(status).await;
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }

    /// The key of the shared store subscription catch-up subscriptions poll, created
    /// the first time (creating it again gives the same key). The client needs only
    /// to read: the subscription is the front door's means, shared, never acknowledged.
    async fn catch_up_key(&self, call: &Call, fresh: bool) -> Result<String, StoreError> {
        let mut slot = self.inner.catch_up_key.lock().await;
        if let (Some(key), false) = (slot.as_ref(), fresh) {
            return Ok(key.clone());
        }
        let request = StoreRequest::Subscribe {
            kind: SubscriptionType::Stream,
            selector: "$all".into(),
            name: CATCH_UP_SUBSCRIPTION.into(),
            options: SubscribeOptions {
                start_from: StartFrom::End,
                pool_size: 1,
            },
        };
        match call
            .send_needing(request, Permission::Read, call.deadline())
            .await?
        {
            StoreResponse::Subscription(info) => {
                *slot = Some(info.key.clone());
                Ok(info.key)
            }
            other => Err(unexpected("subscribe", &other)),
        }
    }

    /// One long-poll of `$all` from `from`, retried while the store is unreachable
    /// (within [`SUBSCRIPTION_RETRIES_MAX`]); ends early when the client leaves or
    /// the server stops.
    async fn poll(&self, call: &Call, out: &Out, from: u64) -> Result<Delivery, Stop> {
        let mut failures = 0u32;
        let mut fresh_key = false;
        let mut stopping = self.stopping();
        loop {
            if *stopping.borrow() {
                return Err(Stop::Failed(Status::unavailable(
                    "the gater is shutting down: resubscribe from your last position",
                )));
            }
            if call.expired() {
                return Err(Stop::Failed(Status::deadline_exceeded(
                    "the subscription's deadline passed",
                )));
            }
            let key = match self.catch_up_key(call, fresh_key).await {
                Ok(k) => k,
                Err(e) if e.is_retryable() && failures < SUBSCRIPTION_RETRIES_MAX => {
                    failures += 1;
                    tokio::time::sleep(SUBSCRIPTION_RETRY_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(Stop::Failed(status_of(&e, None))),
            };
            let request = StoreRequest::Poll {
                key,
                consumer: CATCH_UP_CONSUMER.into(),
                from: Some(from),
                max: POLL_EVENTS,
                wait_ms: POLL_WAIT.as_millis() as u32,
            };
            let deadline = call.within(Instant::now() + POLL_WAIT + POLL_MARGIN);
            let answer = tokio::select! {
                a = call.send_needing(request, Permission::Read, deadline) => a,
                _ = out.tx.closed() => return Err(Stop::Gone),
                _ = stopping.wait_for(|s| *s) => continue,
            };
            match answer {
                Ok(StoreResponse::Delivery(d)) => return Ok(d),
                Ok(other) => {
                    return Err(Stop::Failed(status_of(&unexpected("poll", &other), None)))
                }
                // The shared subscription was removed (by an operator): make it again.
                Err(StoreError::NotFound { .. }) if !fresh_key => fresh_key = true,
                Err(e) if e.is_retryable() && failures < SUBSCRIPTION_RETRIES_MAX => {
                    tracing::debug!(error = %e, failures, "kurrent: a subscription's poll failed; retrying");
                    failures += 1;
                    tokio::time::sleep(SUBSCRIPTION_RETRY_PAUSE).await;
                }
                Err(e) => return Err(Stop::Failed(status_of(&e, None))),
            }
        }
    }

    /// The first global position not yet written.
    async fn head(&self, call: &Call) -> Result<u64, StoreError> {
        let answer = call
            .send(StoreRequest::ReadAll {
                from_position: u64::MAX,
                count: 1,
                direction: Direction::Backward,
                consistency: ReadConsistency::Linearizable,
            })
            .await?;
        Ok(events_of(answer, "read_all")?
            .first()
            .map_or(0, |e| e.position + 1))
    }

    /// A catch-up subscription to `$all` (see the module docs).
    async fn subscribe_all(
        &self,
        call: &Call,
        out: &Out,
        start: AllStart,
        filter: Option<&Filter>,
    ) -> Result<(), Stop> {
        out.send(confirmation()).await?;
        let mut next = match start {
            AllStart::Start => 0,
            AllStart::End => self
                .head(call)
                .await
                .map_err(|e| Stop::Failed(status_of(&e, None)))?,
            AllStart::Commit(c) => after_commit(c),
        };
        let mut caught_up = false;
        let mut scanned = 0u64;
        loop {
            let d = self.poll(call, out, next).await?;
            for e in d.events {
                // Defensive: a poll never answers before where it was asked to start.
                if e.position < next {
                    continue;
                }
                if filter.is_none_or(|f| f.matches(&e)) {
                    out.event(e).await?;
                }
            }
            let seen = d.next.max(next);
            scanned += seen - next;
            next = seen;
            if let Some(f) = filter {
                if scanned >= f.checkpoint_every {
                    scanned = 0;
                    out.send(checkpoint(next)).await?;
                }
            }
            if !caught_up && next >= d.head {
                caught_up = true;
                let position = next.checked_sub(1).map(|last| read_resp::Position {
                    commit_position: commit_of(last),
                    prepare_position: commit_of(last),
                });
                out.send(read_resp::Content::CaughtUp(read_resp::CaughtUp {
                    timestamp: Some(now_timestamp()),
                    stream_revision: None,
                    position,
                }))
                .await?;
            }
        }
    }

    /// A catch-up subscription to one stream (see the module docs).
    async fn subscribe_stream(
        &self,
        call: &Call,
        out: &Out,
        name: &str,
        start: StreamStart,
    ) -> Result<(), Stop> {
        out.send(confirmation()).await?;
        let failed = |e: StoreError| Stop::Failed(status_of(&e, Some(name)));
        // The first revision to send.
        let mut next_revision = match start {
            StreamStart::Start => 0,
            StreamStart::Revision(r) => r.saturating_add(1),
            StreamStart::End => {
                let answer = call
                    .send(StoreRequest::GetVersion {
                        stream_id: name.to_string(),
                        consistency: ReadConsistency::Linearizable,
                    })
                    .await
                    .map_err(failed)?;
                match answer {
                    StoreResponse::Version(v) => v.map_or(0, |v| v + 1),
                    other => return Err(failed(unexpected("get_version", &other))),
                }
            }
        };
        let mut last_sent = next_revision.checked_sub(1);
        // Everything before this position is in the catch-up reads below.
        let mut next = self.head(call).await.map_err(failed)?;
        loop {
            let answer = call
                .send(StoreRequest::ReadStream {
                    stream_id: name.to_string(),
                    from: next_revision,
                    count: READ_PAGE_EVENTS,
                    direction: Direction::Forward,
                    consistency: ReadConsistency::Linearizable,
                })
                .await;
            let events = match answer {
                Ok(a) => events_of(a, "read_stream").map_err(failed)?,
                // Not written yet (or deleted): the live phase will see it.
                Err(StoreError::StreamNotFound { .. }) => Vec::new(),
                Err(e) => return Err(failed(e)),
            };
            if events.is_empty() {
                break;
            }
            for e in events {
                next_revision = e.version + 1;
                last_sent = Some(e.version);
                out.event(e).await?;
            }
        }
        out.send(read_resp::Content::CaughtUp(read_resp::CaughtUp {
            timestamp: Some(now_timestamp()),
            stream_revision: last_sent.map(|r| r as i64),
            position: None,
        }))
        .await?;
        loop {
            let d = self.poll(call, out, next).await?;
            for e in d.events {
                if e.position < next || e.stream_id != name || e.version < next_revision {
                    continue;
                }
                next_revision = e.version + 1;
                out.event(e).await?;
            }
            next = d.next.max(next);
        }
    }
}

fn confirmation() -> read_resp::Content {
    read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
        subscription_id: uuid::Uuid::new_v4().to_string(),
    })
}

/// A checkpoint for a client that has seen every position before `next`.
fn checkpoint(next: u64) -> read_resp::Content {
    // The commit position of the last event looked at, which is `next`.
    read_resp::Content::Checkpoint(read_resp::Checkpoint {
        commit_position: next,
        prepare_position: next,
        timestamp: Some(now_timestamp()),
    })
}

/// A read of one stream, paged.
async fn read_stream(
    call: &Call,
    out: &Out,
    name: &str,
    start: StreamStart,
    direction: Direction,
    count: u64,
) -> Result<(), Stop> {
    let Some(mut from) = stream_read_from(start, direction) else {
        return Ok(());
    };
    let mut left = count;
    let mut first = true;
    while left > 0 {
        let page = left.min(u64::from(READ_PAGE_EVENTS)) as u32;
        let answer = call
            .send(StoreRequest::ReadStream {
                stream_id: name.to_string(),
                from,
                count: page,
                direction,
                consistency: ReadConsistency::Linearizable,
            })
            .await;
        let events = match answer {
            Ok(a) => {
                events_of(a, "read_stream").map_err(|e| Stop::Failed(status_of(&e, Some(name))))?
            }
            Err(StoreError::StreamNotFound { .. }) if first => {
                out.send(read_resp::Content::StreamNotFound(
                    read_resp::StreamNotFound {
                        stream_identifier: Some(convert::stream_id(name)),
                    },
                ))
                .await?;
                return Ok(());
            }
            // Deleted while being read: it ends here.
            Err(StoreError::StreamNotFound { .. }) => return Ok(()),
            Err(e) => return Err(Stop::Failed(status_of(&e, Some(name)))),
        };
        first = false;
        let Some(last) = events.last().map(|e| e.version) else {
            return Ok(());
        };
        left = left.saturating_sub(events.len() as u64);
        for e in events {
            out.event(e).await?;
        }
        from = match direction {
            Direction::Forward => last + 1,
            Direction::Backward => match last.checked_sub(1) {
                Some(f) => f,
                None => return Ok(()),
            },
        };
    }
    Ok(())
}

/// A read of `$all`, paged, filtered (the count is of events that pass).
async fn read_all(
    call: &Call,
    out: &Out,
    start: AllStart,
    direction: Direction,
    count: u64,
    filter: Option<&Filter>,
) -> Result<(), Stop> {
    let Some(mut from) = all_read_from(start, direction) else {
        return Ok(());
    };
    let mut left = count;
    while left > 0 {
        // Unfiltered, ask for no more than is wanted; filtered, whole pages.
        let page = match filter {
            None => left.min(u64::from(READ_PAGE_EVENTS)) as u32,
            Some(_) => READ_PAGE_EVENTS,
        };
        let answer = call
            .send(StoreRequest::ReadAll {
                from_position: from,
                count: page,
                direction,
                consistency: ReadConsistency::Linearizable,
            })
            .await
            .map_err(|e| Stop::Failed(status_of(&e, None)))?;
        let events =
            events_of(answer, "read_all").map_err(|e| Stop::Failed(status_of(&e, None)))?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(());
        };
        for e in events {
            if left == 0 {
                break;
            }
            if filter.is_none_or(|f| f.matches(&e)) {
                left -= 1;
                out.event(e).await?;
            }
        }
        from = match direction {
            Direction::Forward => last + 1,
            Direction::Backward => match last.checked_sub(1) {
                Some(f) => f,
                None => return Ok(()),
            },
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests;
