//! The event domain: what a valid append is, and how expected versions are checked.
//!
//! This module knows nothing of openraft, redb or tarpc: storage and the Raft layer
//! call into it, never the other way. Everything here is a pure function of its
//! arguments, tested directly.

use reckon_gater::types::{AppendResult, ExpectedVersion, NewEvent, StoreError};
use serde::{Deserialize, Serialize};

/// Size and count limits on what a client may write, with their defaults.
///
/// Every limit is checked before anything is proposed to Raft, so a rejected request
/// writes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest event (data + metadata + type + tags), in bytes.
    pub event_bytes_max: usize,
    /// Largest append batch (the sum of its events), in bytes.
    pub batch_bytes_max: usize,
    /// Most events in one append.
    pub batch_events_max: usize,
    /// Longest stream id, in bytes.
    pub stream_id_bytes_max: usize,
    /// Longest event type, in bytes.
    pub event_type_bytes_max: usize,
    /// Longest tag, in bytes.
    pub tag_bytes_max: usize,
    /// Most tags on one event.
    pub tags_per_event_max: usize,
    /// Most events or streams one read may return.
    pub read_count_max: u32,
    /// Largest snapshot (data + metadata), in bytes.
    pub snapshot_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            event_bytes_max: 1024 * 1024,
            batch_bytes_max: 4 * 1024 * 1024,
            batch_events_max: 10_000,
            stream_id_bytes_max: 256,
            event_type_bytes_max: 256,
            tag_bytes_max: 256,
            tags_per_event_max: 64,
            read_count_max: 10_000,
            snapshot_bytes_max: 4 * 1024 * 1024,
        }
    }
}

/// The reserved prefix of system streams.
pub const SYSTEM_STREAM_PREFIX: char = '$';

/// Checks a stream id a client wants to read or write: 1..=limit bytes of UTF-8
/// without control characters.
pub fn validate_stream_id(limits: &Limits, stream_id: &str) -> Result<(), StoreError> {
    validate_name(
        "stream_id",
        stream_id,
        limits.stream_id_bytes_max,
        "a stream id",
    )
}

/// Checks a stream id for writing: as [`validate_stream_id`], and not a reserved
/// `$` system stream.
pub fn validate_writable_stream_id(limits: &Limits, stream_id: &str) -> Result<(), StoreError> {
    validate_stream_id(limits, stream_id)?;
    if stream_id.starts_with(SYSTEM_STREAM_PREFIX) {
        return Err(StoreError::invalid(
            "stream_id",
            format!("{stream_id:?} starts with '$', which is reserved for system streams"),
        ));
    }
    Ok(())
}

fn validate_name(field: &str, value: &str, max: usize, what: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::invalid(
            field,
            format!("{what} must not be empty"),
        ));
    }
    if value.len() > max {
        return Err(StoreError::invalid(
            field,
            format!("{what} is {} bytes; the limit is {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            format!("{what} must not contain control characters: {value:?}"),
        ));
    }
    Ok(())
}

/// The size an event counts for against the limits.
pub fn event_size(event: &NewEvent) -> usize {
    event.data.len()
        + event.metadata.len()
        + event.event_type.len()
        + event.tags.iter().map(String::len).sum::<usize>()
}

/// Checks an append request as a whole before anything is written.
pub fn validate_append(
    limits: &Limits,
    stream_id: &str,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    validate_writable_stream_id(limits, stream_id)?;
    if events.is_empty() {
        return Err(StoreError::invalid(
            "events",
            "an append needs at least one event",
        ));
    }
    if events.len() > limits.batch_events_max {
        return Err(StoreError::invalid(
            "events",
            format!(
                "{} events in one append; the limit is {}",
                events.len(),
                limits.batch_events_max
            ),
        ));
    }
    let mut total = 0usize;
    for (i, event) in events.iter().enumerate() {
        validate_name(
            &format!("events[{i}].event_type"),
            &event.event_type,
            limits.event_type_bytes_max,
            "an event type",
        )?;
        if event.tags.len() > limits.tags_per_event_max {
            return Err(StoreError::invalid(
                format!("events[{i}].tags"),
                format!(
                    "{} tags; the limit is {}",
                    event.tags.len(),
                    limits.tags_per_event_max
                ),
            ));
        }
        for (j, tag) in event.tags.iter().enumerate() {
            validate_name(
                &format!("events[{i}].tags[{j}]"),
                tag,
                limits.tag_bytes_max,
                "a tag",
            )?;
        }
        let size = event_size(event);
        if size > limits.event_bytes_max {
            return Err(StoreError::invalid(
                format!("events[{i}].data"),
                format!(
                    "the event is {size} bytes; the limit is {} bytes",
                    limits.event_bytes_max
                ),
            ));
        }
        total += size;
    }
    if total > limits.batch_bytes_max {
        return Err(StoreError::invalid(
            "events",
            format!(
                "the batch is {total} bytes; the limit is {} bytes",
                limits.batch_bytes_max
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if let Some(id) = event.event_id {
            if !seen.insert(id) {
                return Err(StoreError::invalid(
                    format!("events[{i}].event_id"),
                    format!("event id {id} appears twice in one batch"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a snapshot before it is saved.
pub fn validate_snapshot(
    limits: &Limits,
    stream_id: &str,
    data: &[u8],
    metadata: &[u8],
) -> Result<(), StoreError> {
    validate_stream_id(limits, stream_id)?;
    let size = data.len() + metadata.len();
    if size > limits.snapshot_bytes_max {
        return Err(StoreError::invalid(
            "data",
            format!(
                "the snapshot is {size} bytes; the limit is {} bytes",
                limits.snapshot_bytes_max
            ),
        ));
    }
    Ok(())
}

/// Clamps a read's count to the limit; a count of 0 is refused.
pub fn validate_count(limits: &Limits, count: u32) -> Result<u32, StoreError> {
    if count == 0 {
        return Err(StoreError::invalid(
            "count",
            "a read must ask for at least 1 item",
        ));
    }
    Ok(count.min(limits.read_count_max))
}

/// What a stream is, as far as an append's expectation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Never written, or soft-deleted.
    Absent,
    /// Live at this version.
    At(u64),
    /// Hard-deleted: never writable again.
    Tombstoned,
}

/// Checks `expected` against a stream's state. This is the one place where the rule
/// lives; the state machine calls it inside the write transaction.
pub fn check_expected(
    stream_id: &str,
    expected: ExpectedVersion,
    state: StreamState,
) -> Result<(), StoreError> {
    let current = match state {
        StreamState::Tombstoned => {
            return Err(StoreError::StreamDeleted {
                stream_id: stream_id.to_string(),
            })
        }
        StreamState::Absent => None,
        StreamState::At(v) => Some(v),
    };
    let ok = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::StreamExists => current.is_some(),
        ExpectedVersion::Exact(n) => current == Some(n),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::WrongExpectedVersion { expected, current })
    }
}

/// Where an event id already stands in a store: event ids are unique within a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPlace {
    /// Its global position.
    pub position: u64,
    /// The number of its stream (stable across a delete and recreate).
    pub stream_no: u64,
    /// Its version in that stream.
    pub version: u64,
}

/// What the event ids of an append say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdVerdict {
    /// No id is stored yet: a new append.
    New,
    /// Every id stands already, as one run in this stream, in order: a retry of an
    /// append that succeeded, answered with that append's result.
    Retry(AppendResult),
    /// The id at this index of the append is stored already, and the append is not a
    /// retry: it must be refused, writing nothing.
    Duplicate(usize),
}

/// Judges an append to the stream numbered `stream_no` (`None`: the stream was never
/// written) from where each of its event ids already stands (`None`: not stored).
///
/// A retry is recognised wherever in the stream its ids stand, not only at its head:
/// an append that waited in a queue or a paused process while later appends went
/// through must not be written twice.
pub fn judge_event_ids(stream_no: Option<u64>, places: &[Option<IdPlace>]) -> IdVerdict {
    let Some(first_stored) = places.iter().position(Option::is_some) else {
        return IdVerdict::New;
    };
    let Some(first) = places[0] else {
        return IdVerdict::Duplicate(first_stored);
    };
    if stream_no != Some(first.stream_no) {
        return IdVerdict::Duplicate(0);
    }
    for (i, place) in places.iter().enumerate() {
        let step = i as u64;
        let in_run = place.is_some_and(|p| {
            p.stream_no == first.stream_no
                && p.version == first.version + step
                && p.position == first.position + step
        });
        if !in_run {
            return IdVerdict::Duplicate(i);
        }
    }
    let last = places.len() as u64 - 1;
    IdVerdict::Retry(AppendResult {
        version: first.version + last,
        first_position: first.position,
        last_position: first.position + last,
    })
}

/// The versions a read of one stream scans, as `(lo, hi)` inclusive: from `from` up to
/// the head forward, or from `min(from, head)` down to 0 backward. The read takes the
/// first `count` events it finds in that range in its direction: versions whose events
/// were deleted before the stream was written again hold none, and are skipped
/// without counting. `None` when the range is empty.
pub fn stream_read_range(head: u64, from: u64, backward: bool) -> Option<(u64, u64)> {
    if backward {
        // Reading backward from past the end starts at the head.
        Some((0, from.min(head)))
    } else if from > head {
        None
    } else {
        Some((from, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reckon_gater::types::ContentType;

    fn at(position: u64, stream_no: u64, version: u64) -> Option<IdPlace> {
        Some(IdPlace {
            position,
            stream_no,
            version,
        })
    }

    #[test]
    fn event_ids_judge_an_append_new_a_retry_or_a_duplicate() {
        let retry = |version, first_position, last_position| {
            IdVerdict::Retry(AppendResult {
                version,
                first_position,
                last_position,
            })
        };
        type Case = (&'static str, Option<u64>, Vec<Option<IdPlace>>, IdVerdict);
        let cases: Vec<Case> = vec![
            ("nothing stored", Some(1), vec![None, None], IdVerdict::New),
            ("new stream", None, vec![None], IdVerdict::New),
            (
                "retry at the head",
                Some(1),
                vec![at(10, 1, 4)],
                retry(4, 10, 10),
            ),
            (
                "retry far behind the head",
                Some(1),
                vec![at(20, 1, 2), at(21, 1, 3), at(22, 1, 4)],
                retry(4, 20, 22),
            ),
            (
                "id of another stream",
                Some(1),
                vec![at(10, 2, 0)],
                IdVerdict::Duplicate(0),
            ),
            (
                "stream never written",
                None,
                vec![at(10, 2, 0)],
                IdVerdict::Duplicate(0),
            ),
            (
                "only the last id stored",
                Some(1),
                vec![None, at(10, 1, 0)],
                IdVerdict::Duplicate(1),
            ),
            (
                "only the first id stored",
                Some(1),
                vec![at(10, 1, 0), None],
                IdVerdict::Duplicate(1),
            ),
            (
                "ids out of order",
                Some(1),
                vec![at(11, 1, 1), at(10, 1, 0)],
                IdVerdict::Duplicate(1),
            ),
            (
                "not one run: a gap in versions",
                Some(1),
                vec![at(10, 1, 0), at(12, 1, 2)],
                IdVerdict::Duplicate(1),
            ),
        ];
        for (what, stream_no, places, want) in cases {
            assert_eq!(judge_event_ids(stream_no, &places), want, "{what}");
        }
    }

    fn ev(t: &str, bytes: usize) -> NewEvent {
        NewEvent {
            event_id: None,
            event_type: t.to_string(),
            data: vec![b'x'; bytes],
            metadata: Vec::new(),
            content_type: ContentType::Json,
            tags: Vec::new(),
        }
    }

    fn field(e: StoreError) -> String {
        match e {
            StoreError::InvalidInput { field, .. } => field,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn bad_appends_name_the_field() {
        let l = Limits::default();
        assert_eq!(field(validate_append(&l, "s", &[]).unwrap_err()), "events");
        assert_eq!(
            field(validate_append(&l, "s", &[ev("", 1)]).unwrap_err()),
            "events[0].event_type"
        );
        assert_eq!(
            field(validate_append(&l, "$x", &[ev("t", 1)]).unwrap_err()),
            "stream_id"
        );
        assert_eq!(
            field(validate_append(&l, "", &[ev("t", 1)]).unwrap_err()),
            "stream_id"
        );
        assert_eq!(
            field(validate_append(&l, "a\nb", &[ev("t", 1)]).unwrap_err()),
            "stream_id"
        );
        assert_eq!(
            field(validate_append(&l, &"s".repeat(257), &[ev("t", 1)]).unwrap_err()),
            "stream_id"
        );
        assert_eq!(
            field(validate_append(&l, "s", &[ev("t", 1), ev("t", 2 << 20)]).unwrap_err()),
            "events[1].data"
        );
        let five: Vec<_> = (0..5).map(|_| ev("t", 1000 * 1000)).collect();
        assert_eq!(
            field(validate_append(&l, "s", &five).unwrap_err()),
            "events"
        );
        assert!(validate_append(&l, "s", &[ev("t", 1)]).is_ok());
        assert!(validate_append(&l, &"s".repeat(256), &[ev("t", 1)]).is_ok());
    }

    #[test]
    fn duplicate_ids_in_a_batch_are_refused() {
        let l = Limits::default();
        let id = uuid::Uuid::now_v7();
        let e = ev("t", 1).with_id(id);
        assert_eq!(
            field(validate_append(&l, "s", &[e.clone(), e]).unwrap_err()),
            "events[1].event_id"
        );
    }

    #[test]
    fn expected_version_rules() {
        use ExpectedVersion::*;
        use StreamState::*;
        let cases = [
            (Any, Absent, true),
            (Any, At(3), true),
            (NoStream, Absent, true),
            (NoStream, At(0), false),
            (StreamExists, Absent, false),
            (StreamExists, At(0), true),
            (Exact(0), At(0), true),
            (Exact(5), At(0), false),
            (Exact(0), Absent, false),
        ];
        for (expected, state, ok) in cases {
            assert_eq!(
                check_expected("s", expected, state).is_ok(),
                ok,
                "{expected:?} against {state:?}"
            );
        }
        assert_eq!(
            check_expected("s", Exact(5), At(0)),
            Err(StoreError::WrongExpectedVersion {
                expected: Exact(5),
                current: Some(0)
            })
        );
        assert!(matches!(
            check_expected("s", Any, Tombstoned),
            Err(StoreError::StreamDeleted { .. })
        ));
    }

    #[test]
    fn read_ranges() {
        // 5 events: versions 0..=4.
        assert_eq!(stream_read_range(4, 0, false), Some((0, 4)));
        assert_eq!(stream_read_range(4, 4, true), Some((0, 4)));
        assert_eq!(stream_read_range(9, 5, false), Some((5, 9)));
        assert_eq!(stream_read_range(9, 7, true), Some((0, 7)));
        assert_eq!(stream_read_range(2, 100, false), None);
        assert_eq!(stream_read_range(2, 3, false), None);
        assert_eq!(stream_read_range(2, 2, false), Some((2, 2)));
        // Backward from past the end starts at the head.
        assert_eq!(stream_read_range(2, 100, true), Some((0, 2)));
    }
}
