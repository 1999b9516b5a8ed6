//! Translations between KurrentDB's protocol and ours, as pure functions.
//!
//! | KurrentDB | reckon-db |
//! |---|---|
//! | stream revision | event version (0-based) |
//! | commit position = prepare position | global position + 1 |
//! | `metadata["type"]` | event type |
//! | `metadata["content-type"]` `application/json` / anything else | [`ContentType::Json`] / [`ContentType::Binary`] |
//! | `custom_metadata` | event metadata |
//! | `metadata["created"]`, ticks of 100 ns since the Unix epoch | `timestamp_us` × 10 |
//!
//! Commit positions are our positions plus one because a KurrentDB client takes
//! commit position 0 for "before every event": it reads the head of an empty
//! store as 0 and subscribes *after* the position it holds, so an event at 0 would
//! be skipped. With the shift, 0 is before our first event (position 0, commit 1),
//! and a client's checkpoint (the last commit position it processed) is exactly the
//! first global position it has not seen.

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use uuid::Uuid;

use super::proto::event_store::client as pb;
use super::proto::event_store::client::streams::read_resp;
use crate::types::{ContentType, EventRecord, ExpectedVersion, NewEvent, StoreError};

/// The content type KurrentDB gives JSON events.
pub const JSON: &str = "application/json";
/// The content type of every other event.
pub const BINARY: &str = "application/octet-stream";

/// The commit (and prepare) position of the event at global `position`.
pub fn commit_of(position: u64) -> u64 {
    position.saturating_add(1)
}

/// The first global position after commit position `commit` (what a subscription
/// from `commit` starts at).
pub fn after_commit(commit: u64) -> u64 {
    commit
}

/// The global position of the event at commit position `commit`, for a read that
/// starts there (inclusive); `None` for commit 0, before every event.
pub fn at_commit(commit: u64) -> Option<u64> {
    commit.checked_sub(1)
}

/// KurrentDB's `created` metadata: ticks of 100 ns since the Unix epoch.
pub fn created_ticks(timestamp_us: u64) -> u64 {
    timestamp_us.saturating_mul(10)
}

/// A UUID in either of the protocol's spellings.
pub fn uuid_from(id: &pb::Uuid) -> Result<Uuid, String> {
    match &id.value {
        Some(pb::uuid::Value::String(s)) => {
            Uuid::parse_str(s).map_err(|e| format!("{s:?} is not a UUID: {e}"))
        }
        Some(pb::uuid::Value::Structured(s)) => {
            let hi = s.most_significant_bits as u64;
            let lo = s.least_significant_bits as u64;
            Ok(Uuid::from_u64_pair(hi, lo))
        }
        None => Err("the UUID has neither a string nor a structured value".into()),
    }
}

/// A UUID spelt as the client asked: structured (two signed 64-bit halves) or a string.
pub fn uuid_to(id: Uuid, structured: bool) -> pb::Uuid {
    let value = if structured {
        let (hi, lo) = id.as_u64_pair();
        pb::uuid::Value::Structured(pb::uuid::Structured {
            most_significant_bits: hi as i64,
            least_significant_bits: lo as i64,
        })
    } else {
        pb::uuid::Value::String(id.hyphenated().to_string())
    };
    pb::Uuid { value: Some(value) }
}

/// The stream a request names: UTF-8 and not empty (the store checks the rest).
pub fn stream_name(id: Option<&pb::StreamIdentifier>) -> Result<String, StoreError> {
    let Some(id) = id else {
        return Err(StoreError::invalid(
            "stream_identifier",
            "the request names no stream",
        ));
    };
    let name = String::from_utf8(id.stream_name.clone())
        .map_err(|_| StoreError::invalid("stream_identifier", "the stream name is not UTF-8"))?;
    if name.is_empty() {
        return Err(StoreError::invalid(
            "stream_identifier",
            "the stream name is empty",
        ));
    }
    Ok(name)
}

/// A stream identifier for `name`.
pub fn stream_id(name: &str) -> pb::StreamIdentifier {
    pb::StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    }
}

/// One proposed message (of `Append` or `BatchAppend`) as the event we store; `index`
/// names it in errors. KurrentDB requires the id and the `type`; a `content-type` of
/// `application/json` makes a JSON event, any other a binary one.
pub fn new_event(
    index: usize,
    id: Option<&pb::Uuid>,
    metadata: &HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
) -> Result<NewEvent, StoreError> {
    let field = |what: &str| format!("proposed_messages[{index}].{what}");
    let id = id.ok_or_else(|| StoreError::invalid(field("id"), "every event needs an id"))?;
    let event_id = uuid_from(id).map_err(|e| StoreError::invalid(field("id"), e))?;
    let event_type = metadata
        .get("type")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            StoreError::invalid(
                field("metadata[\"type\"]"),
                "every event needs a type in its metadata",
            )
        })?
        .clone();
    let content_type = match metadata.get("content-type").map(String::as_str) {
        Some(JSON) => ContentType::Json,
        _ => ContentType::Binary,
    };
    Ok(NewEvent {
        event_id: Some(event_id),
        event_type,
        data,
        metadata: custom_metadata,
        content_type,
        tags: Vec::new(),
    })
}

/// A stored event as KurrentDB sends it in a `ReadResp`.
pub fn read_event(e: EventRecord, structured_ids: bool) -> read_resp::ReadEvent {
    let commit = commit_of(e.position);
    let content_type = match e.content_type {
        ContentType::Json => JSON,
        ContentType::Binary => BINARY,
    };
    let metadata = HashMap::from([
        ("type".to_string(), e.event_type),
        ("content-type".to_string(), content_type.to_string()),
        (
            "created".to_string(),
            created_ticks(e.timestamp_us).to_string(),
        ),
    ]);
    read_resp::ReadEvent {
        event: Some(read_resp::read_event::RecordedEvent {
            id: Some(uuid_to(e.event_id, structured_ids)),
            stream_identifier: Some(stream_id(&e.stream_id)),
            stream_revision: e.version,
            prepare_position: commit,
            commit_position: commit,
            metadata,
            custom_metadata: e.metadata,
            data: e.data,
        }),
        link: None,
        position: Some(read_resp::read_event::Position::CommitPosition(commit)),
    }
}

/// The seed's integer of an expectation, as KurrentDB's error texts give it.
fn expected_text(e: ExpectedVersion) -> i64 {
    e.as_i64()
}

/// A store error as a gRPC status, with the trailers KurrentDB sets (`exception`,
/// `stream-name`, versions) so that clients raise the same errors as against KurrentDB.
/// `stream` is the stream the call was about, when there is one.
pub fn status_of(e: &StoreError, stream: Option<&str>) -> Status {
    let mut status = match e {
        StoreError::WrongExpectedVersion { expected, current } => {
            let actual = current.map_or(-1, |c| c as i64);
            let mut s = Status::new(
                Code::FailedPrecondition,
                format!(
                    "WrongExpectedVersion. Stream: {}, Expected version: {}, Actual version: {actual}",
                    stream.unwrap_or(""),
                    expected_text(*expected)
                ),
            );
            let m = s.metadata_mut();
            m.insert(
                "exception",
                MetadataValue::from_static("wrong-expected-version"),
            );
            if let Ok(v) = expected_text(*expected).to_string().parse() {
                m.insert("expected-version", v);
            }
            if let Ok(v) = actual.to_string().parse() {
                m.insert("actual-version", v);
            }
            s
        }
        StoreError::StreamDeleted { stream_id } => {
            let mut s = Status::new(
                Code::FailedPrecondition,
                format!("Event stream '{stream_id}' is deleted."),
            );
            s.metadata_mut()
                .insert("exception", MetadataValue::from_static("stream-deleted"));
            s
        }
        StoreError::StreamNotFound { stream_id } => {
            let mut s = Status::new(
                Code::NotFound,
                format!("Event stream '{stream_id}' is not found."),
            );
            s.metadata_mut()
                .insert("exception", MetadataValue::from_static("stream-not-found"));
            s
        }
        StoreError::InvalidInput { .. } => Status::invalid_argument(e.to_string()),
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::DuplicateEventId { .. } => Status::already_exists(e.to_string()),
        StoreError::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
        StoreError::NotLeader { .. }
        | StoreError::Unavailable { .. }
        | StoreError::NoWorkers { .. } => Status::unavailable(e.to_string()),
        StoreError::Unauthenticated { .. } => Status::unauthenticated(e.to_string()),
        StoreError::PermissionDenied { .. } => {
            let mut s = Status::permission_denied(e.to_string());
            s.metadata_mut()
                .insert("exception", MetadataValue::from_static("access-denied"));
            s
        }
        StoreError::UnknownStore { .. } | StoreError::Internal { .. } => {
            Status::internal(e.to_string())
        }
    };
    if let Some(name) = stream {
        if let Ok(v) = name.parse() {
            status.metadata_mut().insert("stream-name", v);
        }
    }
    status
}

#[cfg(test)]
mod tests;
