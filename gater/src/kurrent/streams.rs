//! The `Streams` service: appends (`Append`, `BatchAppend`), deletes (`Delete`,
//! `Tombstone`), and `Read`, which `read` serves.
//!
//! An append is gathered whole before it is sent, as one atomic [`StoreRequest::Append`]:
//! KurrentDB's append is a transaction over every message of the call (of one
//! correlation id for `BatchAppend`). What one append may gather is bounded by
//! [`APPEND_BYTES_MAX`] and [`APPEND_EVENTS_MAX`], the most any store could take in
//! one request; the store then applies its own configured limits and names them when
//! it refuses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{mpsc, Semaphore};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::convert::{self, commit_of, status_of, stream_name, uuid_from};
use super::proto::event_store::client as pb;
use super::proto::event_store::client::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, delete_req, delete_resp,
    streams_server::Streams, tombstone_req, tombstone_resp, AppendReq, AppendResp, BatchAppendReq,
    BatchAppendResp, DeleteReq, DeleteResp, ReadReq, ReadResp, TombstoneReq, TombstoneResp,
};
use super::proto::google::rpc;
use super::{receiver_stream, Call, Door, CALL_TIMEOUT_MAX};
use crate::request::{StoreRequest, StoreResponse};
use crate::types::{AppendResult, ExpectedVersion, NewEvent, StoreError};

/// Most bytes of event data and metadata one append may gather: what the gater can
/// forward to a node in one request.
pub const APPEND_BYTES_MAX: usize = crate::frame::MAX_FRAME_BYTES / 2;
/// Most events one append may gather (the store's default batch limit).
pub const APPEND_EVENTS_MAX: usize = 10_000;
/// Batches one `BatchAppend` call may have open (sent in part, not yet final) at once.
pub const BATCHES_OPEN_MAX: usize = 64;
/// Final batches of one `BatchAppend` call being appended at once; reading the
/// call's further batches waits for one of them to be answered.
pub const BATCHES_IN_FLIGHT_MAX: usize = 64;
/// Answers of one `BatchAppend` call queued for a slow client before appends wait.
const BATCH_ANSWERS_QUEUE_MAX: usize = 64;

/// An append being gathered: where it goes and what it holds so far.
struct Gathering {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    bytes: usize,
}

impl Gathering {
    fn new(stream: String, expected: ExpectedVersion) -> Gathering {
        Gathering {
            stream,
            expected,
            events: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds one proposed message, within the limits.
    fn push(
        &mut self,
        id: Option<&pb::Uuid>,
        metadata: &HashMap<String, String>,
        custom_metadata: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
        let index = self.events.len();
        if index >= APPEND_EVENTS_MAX {
            return Err(StoreError::invalid(
                "proposed_messages",
                format!("more than {APPEND_EVENTS_MAX} events in one append"),
            ));
        }
        self.bytes += data.len() + custom_metadata.len();
        if self.bytes > APPEND_BYTES_MAX {
            return Err(StoreError::invalid(
                "proposed_messages",
                format!("more than {APPEND_BYTES_MAX} bytes of events in one append"),
            ));
        }
        let event = convert::new_event(index, id, metadata, custom_metadata, data)?;
        self.events.push(event);
        Ok(())
    }

    async fn send(self, call: &Call) -> Result<AppendResult, StoreError> {
        let request = StoreRequest::Append {
            stream_id: self.stream,
            expected: self.expected,
            events: self.events,
        };
        match call.send(request).await? {
            StoreResponse::Appended(r) => Ok(r),
            other => Err(unexpected("append", &other)),
        }
    }
}

/// The error for an answer of the wrong kind (a node and gater out of step).
pub(crate) fn unexpected(what: &str, answer: &StoreResponse) -> StoreError {
    StoreError::Internal {
        message: format!("{what} was answered with {}", answer.name()),
    }
}

fn append_expected(e: Option<&append_req::options::ExpectedStreamRevision>) -> ExpectedVersion {
    use append_req::options::ExpectedStreamRevision as E;
    match e {
        Some(E::Revision(r)) => ExpectedVersion::Exact(*r),
        Some(E::NoStream(_)) => ExpectedVersion::NoStream,
        Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
        Some(E::Any(_)) | None => ExpectedVersion::Any,
    }
}

/// KurrentDB's answer to an append whose expectation failed.
fn wrong_expected_version(
    expected: ExpectedVersion,
    current: Option<u64>,
) -> append_resp::WrongExpectedVersion {
    use append_resp::wrong_expected_version as w;
    let empty = pb::Empty {};
    let current_revision_option = Some(match current {
        Some(c) => w::CurrentRevisionOption::CurrentRevision(c),
        None => w::CurrentRevisionOption::CurrentNoStream(empty),
    });
    let current_revision_option_20_6_0 = Some(match current {
        Some(c) => w::CurrentRevisionOption2060::CurrentRevision2060(c),
        None => w::CurrentRevisionOption2060::NoStream2060(empty),
    });
    let expected_revision_option = Some(match expected {
        ExpectedVersion::Exact(n) => w::ExpectedRevisionOption::ExpectedRevision(n),
        ExpectedVersion::Any => w::ExpectedRevisionOption::ExpectedAny(empty),
        ExpectedVersion::StreamExists => w::ExpectedRevisionOption::ExpectedStreamExists(empty),
        ExpectedVersion::NoStream => w::ExpectedRevisionOption::ExpectedNoStream(empty),
    });
    let expected_revision_option_20_6_0 = match expected {
        ExpectedVersion::Exact(n) => Some(w::ExpectedRevisionOption2060::ExpectedRevision2060(n)),
        ExpectedVersion::Any => Some(w::ExpectedRevisionOption2060::Any2060(empty)),
        ExpectedVersion::StreamExists => {
            Some(w::ExpectedRevisionOption2060::StreamExists2060(empty))
        }
        ExpectedVersion::NoStream => None,
    };
    append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0,
        expected_revision_option_20_6_0,
        current_revision_option,
        expected_revision_option,
    }
}

fn invalid_status(field: &str, reason: &str) -> Status {
    status_of(&StoreError::invalid(field, reason), None)
}

/// `details` of a batch's error, packed as KurrentDB packs them.
fn any_of<M: Message>(type_name: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

/// A store error as the `google.rpc.Status` of a `BatchAppendResp`, with the detail
/// the clients turn into their own error types.
fn batch_error(e: &StoreError, stream: &str) -> rpc::Status {
    use crate::types::StoreError as E;
    let status = status_of(e, Some(stream));
    let details = match e {
        E::WrongExpectedVersion { expected, current } => {
            use pb::wrong_expected_version as w;
            Some(any_of(
                "event_store.client.WrongExpectedVersion",
                &pb::WrongExpectedVersion {
                    current_stream_revision_option: Some(match current {
                        Some(c) => w::CurrentStreamRevisionOption::CurrentStreamRevision(*c),
                        None => w::CurrentStreamRevisionOption::CurrentNoStream(()),
                    }),
                    expected_stream_position_option: Some(match expected {
                        ExpectedVersion::Exact(n) => {
                            w::ExpectedStreamPositionOption::ExpectedStreamPosition(*n)
                        }
                        ExpectedVersion::Any => w::ExpectedStreamPositionOption::ExpectedAny(()),
                        ExpectedVersion::StreamExists => {
                            w::ExpectedStreamPositionOption::ExpectedStreamExists(())
                        }
                        ExpectedVersion::NoStream => {
                            w::ExpectedStreamPositionOption::ExpectedNoStream(())
                        }
                    }),
                },
            ))
        }
        E::StreamDeleted { stream_id } => Some(any_of(
            "event_store.client.StreamDeleted",
            &pb::StreamDeleted {
                stream_identifier: Some(convert::stream_id(stream_id)),
            },
        )),
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => Some(any_of(
            "event_store.client.AccessDenied",
            &pb::AccessDenied {},
        )),
        E::Timeout { .. } => Some(any_of("event_store.client.Timeout", &pb::Timeout {})),
        E::InvalidInput { .. } | E::DuplicateEventId { .. } => Some(any_of(
            "event_store.client.BadRequest",
            &pb::BadRequest {
                message: e.to_string(),
            },
        )),
        _ => Some(any_of("event_store.client.Unknown", &pb::Unknown {})),
    };
    rpc::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details,
    }
}

fn batch_expected(
    e: Option<&batch_append_req::options::ExpectedStreamPosition>,
) -> ExpectedVersion {
    use batch_append_req::options::ExpectedStreamPosition as E;
    match e {
        Some(E::StreamPosition(r)) => ExpectedVersion::Exact(*r),
        Some(E::NoStream(())) => ExpectedVersion::NoStream,
        Some(E::StreamExists(())) => ExpectedVersion::StreamExists,
        Some(E::Any(())) | None => ExpectedVersion::Any,
    }
}

fn batch_expected_echo(e: ExpectedVersion) -> batch_append_resp::ExpectedStreamPosition {
    use batch_append_resp::ExpectedStreamPosition as E;
    match e {
        ExpectedVersion::Exact(n) => E::StreamPosition(n),
        ExpectedVersion::NoStream => E::NoStream(()),
        ExpectedVersion::StreamExists => E::StreamExists(()),
        ExpectedVersion::Any => E::Any(()),
    }
}

/// The deadline a batch asks for (within [`CALL_TIMEOUT_MAX`] and the call's own).
fn batch_deadline(options: &batch_append_req::Options, call: &Call) -> Instant {
    match &options.deadline_option {
        Some(batch_append_req::options::DeadlineOption::Deadline(d)) if d.seconds >= 0 => {
            let d = Duration::new(d.seconds as u64, d.nanos.clamp(0, 999_999_999) as u32);
            call.within(Instant::now() + d.min(CALL_TIMEOUT_MAX))
        }
        _ => call.deadline(),
    }
}

/// One batch of a `BatchAppend` call being gathered.
struct OpenBatch {
    gathering: Gathering,
    deadline: Instant,
    /// The first error met while gathering: answered when the batch is final.
    failed: Option<StoreError>,
}

impl Door {
    /// Sends one final batch and makes its answer.
    async fn finish_batch(
        &self,
        call: &Call,
        correlation: Uuid,
        batch: OpenBatch,
    ) -> BatchAppendResp {
        let stream = batch.gathering.stream.clone();
        let expected = batch.gathering.expected;
        let outcome = match batch.failed {
            Some(e) => Err(e),
            None => {
                batch
                    .gathering
                    .send(&call.with_deadline(batch.deadline))
                    .await
            }
        };
        let result = match outcome {
            Ok(r) => batch_append_resp::Result::Success(batch_append_resp::Success {
                current_revision_option: Some(
                    batch_append_resp::success::CurrentRevisionOption::CurrentRevision(r.version),
                ),
                position_option: Some(batch_append_resp::success::PositionOption::Position(
                    pb::AllStreamPosition {
                        commit_position: commit_of(r.last_position),
                        prepare_position: commit_of(r.last_position),
                    },
                )),
            }),
            Err(e) => batch_append_resp::Result::Error(batch_error(&e, &stream)),
        };
        BatchAppendResp {
            correlation_id: Some(convert::uuid_to(correlation, false)),
            stream_identifier: Some(convert::stream_id(&stream)),
            result: Some(result),
            expected_stream_position: Some(batch_expected_echo(expected)),
        }
    }

    async fn delete(
        &self,
        call: &Call,
        stream: String,
        expected: ExpectedVersion,
        hard: bool,
    ) -> Result<(), Status> {
        let request = StoreRequest::DeleteStream {
            stream_id: stream.clone(),
            hard,
            expected,
        };
        match call.send(request).await {
            Ok(StoreResponse::Done) => Ok(()),
            Ok(other) => Err(status_of(&unexpected("delete", &other), Some(&stream))),
            Err(e) => Err(status_of(&e, Some(&stream))),
        }
    }
}

fn delete_expected(e: Option<&delete_req::options::ExpectedStreamRevision>) -> ExpectedVersion {
    use delete_req::options::ExpectedStreamRevision as E;
    match e {
        Some(E::Revision(r)) => ExpectedVersion::Exact(*r),
        Some(E::NoStream(_)) => ExpectedVersion::NoStream,
        Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
        Some(E::Any(_)) | None => ExpectedVersion::Any,
    }
}

fn tombstone_expected(
    e: Option<&tombstone_req::options::ExpectedStreamRevision>,
) -> ExpectedVersion {
    use tombstone_req::options::ExpectedStreamRevision as E;
    match e {
        Some(E::Revision(r)) => ExpectedVersion::Exact(*r),
        Some(E::NoStream(_)) => ExpectedVersion::NoStream,
        Some(E::StreamExists(_)) => ExpectedVersion::StreamExists,
        Some(E::Any(_)) | None => ExpectedVersion::Any,
    }
}

#[tonic::async_trait]
impl Streams for Door {
    async fn read(
        &self,
        request: Request<ReadReq>,
    ) -> Result<Response<tonic::codegen::BoxStream<ReadResp>>, Status> {
        self.serve_read(request).await
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let call = self.call(&request).await?;
        let mut inbound = request.into_inner();
        let options = match inbound.message().await?.and_then(|m| m.content) {
            Some(append_req::Content::Options(o)) => o,
            _ => {
                return Err(invalid_status(
                    "options",
                    "an append must begin with its options",
                ))
            }
        };
        let stream =
            stream_name(options.stream_identifier.as_ref()).map_err(|e| status_of(&e, None))?;
        let expected = append_expected(options.expected_stream_revision.as_ref());
        let mut gathering = Gathering::new(stream.clone(), expected);
        while let Some(message) = inbound.message().await? {
            match message.content {
                Some(append_req::Content::ProposedMessage(m)) => gathering
                    .push(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data)
                    .map_err(|e| status_of(&e, Some(&stream)))?,
                Some(append_req::Content::Options(_)) => {
                    return Err(invalid_status(
                        "options",
                        "an append has its options once, first",
                    ))
                }
                None => {}
            }
        }
        let result = match gathering.send(&call).await {
            Ok(r) => append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(
                    append_resp::success::CurrentRevisionOption::CurrentRevision(r.version),
                ),
                position_option: Some(append_resp::success::PositionOption::Position(
                    append_resp::Position {
                        commit_position: commit_of(r.last_position),
                        prepare_position: commit_of(r.last_position),
                    },
                )),
            }),
            Err(StoreError::WrongExpectedVersion { expected, current }) => {
                append_resp::Result::WrongExpectedVersion(wrong_expected_version(expected, current))
            }
            Err(e) => return Err(status_of(&e, Some(&stream))),
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<tonic::codegen::BoxStream<BatchAppendResp>>, Status> {
        let call = self.call(&request).await?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(BATCH_ANSWERS_QUEUE_MAX);
        let door = self.clone();
        tokio::spawn(async move {
            let mut open: HashMap<Uuid, OpenBatch> = HashMap::new();
            let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
            loop {
                let message = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => return,
                    Err(s) => {
                        tracing::debug!(status = %s, "kurrent: batch append stream ended");
                        return;
                    }
                };
                let correlation = match message.correlation_id.as_ref().map(uuid_from) {
                    Some(Ok(id)) => id,
                    _ => {
                        let _ = tx
                            .send(Err(invalid_status(
                                "correlation_id",
                                "every batch message needs a UUID correlation id",
                            )))
                            .await;
                        return;
                    }
                };
                if !open.contains_key(&correlation) {
                    let Some(options) = message.options.as_ref() else {
                        let _ = tx
                            .send(Err(invalid_status(
                                "options",
                                "the first message of a batch needs its options",
                            )))
                            .await;
                        return;
                    };
                    if open.len() >= BATCHES_OPEN_MAX {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "more than {BATCHES_OPEN_MAX} batches open at once in one call"
                            ))))
                            .await;
                        return;
                    }
                    let (stream, failed) = match stream_name(options.stream_identifier.as_ref()) {
                        Ok(s) => (s, None),
                        Err(e) => (String::new(), Some(e)),
                    };
                    let expected = batch_expected(options.expected_stream_position.as_ref());
                    open.insert(
                        correlation,
                        OpenBatch {
                            gathering: Gathering::new(stream, expected),
                            deadline: batch_deadline(options, &call),
                            failed,
                        },
                    );
                }
                let Some(batch) = open.get_mut(&correlation) else {
                    return;
                };
                for m in message.proposed_messages {
                    if batch.failed.is_some() {
                        break;
                    }
                    if let Err(e) =
                        batch
                            .gathering
                            .push(m.id.as_ref(), &m.metadata, m.custom_metadata, m.data)
                    {
                        // The rest of the batch is dropped as it comes.
                        batch.gathering.events.clear();
                        batch.failed = Some(e);
                    }
                }
                if message.is_final {
                    let Some(batch) = open.remove(&correlation) else {
                        return;
                    };
                    // Batches of one call go to the store side by side (clients such
                    // as .NET's send every append of an application on one call), as
                    // many as BATCHES_IN_FLIGHT_MAX; answers say their correlation id.
                    let Ok(slot) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    let (door, call, tx) = (door.clone(), call.clone(), tx.clone());
                    tokio::spawn(async move {
                        let answer = door.finish_batch(&call, correlation, batch).await;
                        let _ = tx.send(Ok(answer)).await;
                        drop(slot);
                    });
                }
            }
        });
        Ok(Response::new(receiver_stream(rx)))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let call = self.call(&request).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid_status("options", "a delete needs its options"))?;
        let stream =
            stream_name(options.stream_identifier.as_ref()).map_err(|e| status_of(&e, None))?;
        let expected = delete_expected(options.expected_stream_revision.as_ref());
        Door::delete(self, &call, stream, expected, false).await?;
        Ok(Response::new(DeleteResp {
            position_option: Some(delete_resp::PositionOption::NoPosition(pb::Empty {})),
        }))
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let call = self.call(&request).await?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid_status("options", "a tombstone needs its options"))?;
        let stream =
            stream_name(options.stream_identifier.as_ref()).map_err(|e| status_of(&e, None))?;
        let expected = tombstone_expected(options.expected_stream_revision.as_ref());
        Door::delete(self, &call, stream, expected, true).await?;
        Ok(Response::new(TombstoneResp {
            position_option: Some(tombstone_resp::PositionOption::NoPosition(pb::Empty {})),
        }))
    }
}

#[cfg(test)]
mod tests;
