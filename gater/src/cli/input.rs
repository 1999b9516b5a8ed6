//! Events as the user gives them: flags of a single append, or a batch file with one
//! JSON event a line.
//!
//! Only the shape is checked here (JSON that parses, known keys, a UUID that is one).
//! What makes an event acceptable (a non-empty type, sizes, reserved streams) is the
//! store's decision, so that every client is held to the same rules.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::CliError;
use crate::types::{ContentType, NewEvent};

/// The largest batch input `reckon append --file` reads, in bytes: the largest frame the
/// transport carries. The store's own batch limit is lower and gives the precise error.
pub const BATCH_INPUT_BYTES_MAX: u64 = crate::transport::MAX_FRAME_BYTES as u64;

/// One line of a batch file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    event_type: String,
    #[serde(default = "empty_object")]
    data: Value,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    event_id: Option<Uuid>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// JSON text as bytes. `Value`'s `Display` cannot fail, unlike `to_vec`'s signature.
fn json_bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// The event of a single `append --type`: data defaults to `{}`, metadata to none.
pub fn single_event(
    event_type: String,
    data: Option<Value>,
    metadata: Option<Value>,
    tags: Vec<String>,
    event_id: Option<Uuid>,
) -> NewEvent {
    NewEvent {
        event_id,
        event_type,
        data: json_bytes(&data.unwrap_or_else(empty_object)),
        metadata: metadata.as_ref().map(json_bytes).unwrap_or_default(),
        content_type: ContentType::Json,
        tags,
    }
}

/// Parses a batch: one JSON event a line; blank lines are skipped. `input` names the
/// source in errors. An empty batch is returned as such: the store refuses it with
/// the reason.
pub fn parse_batch(input: &str, text: &str) -> Result<Vec<NewEvent>, CliError> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: BatchLine = serde_json::from_str(line).map_err(|source| CliError::BadBatchLine {
            input: input.to_string(),
            line: i + 1,
            source,
        })?;
        events.push(single_event(
            l.event_type,
            Some(l.data),
            l.metadata,
            l.tags,
            l.event_id,
        ));
    }
    Ok(events)
}

/// Reads a batch input: the file at `path`, or stdin when it is `-`. Returns the name to
/// use in messages and the text.
pub fn read_batch(path: &Path) -> Result<(String, String), CliError> {
    let (name, reader): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("stdin".to_string(), Box::new(std::io::stdin().lock()))
    } else {
        let name = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| CliError::ReadInput {
            input: name.clone(),
            source,
        })?;
        (name, Box::new(f))
    };
    let mut text = String::new();
    reader
        .take(BATCH_INPUT_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|source| CliError::ReadInput {
            input: name.clone(),
            source,
        })?;
    if text.len() as u64 > BATCH_INPUT_BYTES_MAX {
        return Err(CliError::BatchTooLarge {
            input: name,
            max_bytes: BATCH_INPUT_BYTES_MAX,
        });
    }
    Ok((name, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_line_takes_every_field() {
        let id = "0190a6c2-0000-7000-8000-000000000001";
        let text = format!(
            "{{\"event_type\":\"placed\",\"data\":{{\"total\":5}},\"metadata\":{{\"by\":\"me\"}},\
             \"tags\":[\"eu\",\"vip\"],\"event_id\":\"{id}\"}}\n\n{{\"event_type\":\"paid\"}}\n"
        );
        let events = parse_batch("f", &text).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type, "placed");
        assert_eq!(events[0].data, br#"{"total":5}"#);
        assert_eq!(events[0].metadata, br#"{"by":"me"}"#);
        assert_eq!(events[0].tags, ["eu", "vip"]);
        assert_eq!(events[0].event_id, Some(id.parse().unwrap()));
        assert_eq!(events[1].data, b"{}");
        assert!(events[1].metadata.is_empty());
        assert_eq!(events[1].event_id, None);
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (text, line, says) in [
            (
                "{\"event_type\":\"a\"}\n{\"event_type\":\"b\"}\n{oops\n",
                3,
                "key must be a string",
            ),
            ("{\"data\":1}\n", 1, "missing field `event_type`"),
            (
                "{\"event_type\":\"a\",\"type\":\"b\"}\n",
                1,
                "unknown field `type`",
            ),
            ("{\"event_type\":\"a\",\"event_id\":\"nope\"}\n", 1, "UUID"),
            ("\n\n[1]\n", 3, "invalid type"),
        ] {
            let e = parse_batch("events.jsonl", text).unwrap_err();
            match &e {
                CliError::BadBatchLine { line: l, .. } => assert_eq!(*l, line, "{text}"),
                other => panic!("{other:?}"),
            }
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn an_empty_batch_is_left_to_the_store() {
        assert!(parse_batch("f", "\n  \n").unwrap().is_empty());
    }

    #[test]
    fn explicit_null_data_stays_null() {
        let events = parse_batch("f", "{\"event_type\":\"a\",\"data\":null}").unwrap();
        assert_eq!(events[0].data, b"null");
    }
}
