//! [`EventPage`]: events as a read returns them, in the form they travel in.
//!
//! A page is the records' bytes one after another, each the bincode encoding (the
//! fixed-width, little-endian layout of `bincode::serialize`) of an [`EventRecord`],
//! with their count. A node fills a page with its stored events as they lie on
//! disk, a gater forwards it without taking it apart, and the client decodes it
//! once ([`EventPage::decode`]): a read of the whole log costs the node a copy per
//! event, not a decode and an encode, and costs the gater one copy per page.
//!
//! The bytes are checked where they are decoded: a page whose records do not
//! decode, or that holds bytes past its last record, is refused as a whole.

use std::fmt;

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::types::EventRecord;

/// The bincode layout of a record in a page: that of `bincode::serialize`.
fn layout() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

/// Events in the order a read returns them, as encoded records.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// How many records `bytes` holds.
    count: u32,
    /// The records' encodings, one after another.
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

/// A page whose bytes are not the records it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a page of {count} events does not decode: {reason}")]
pub struct PageError {
    /// The records the page claimed.
    pub count: u32,
    /// What was wrong, at which record.
    pub reason: String,
}

impl EventPage {
    /// An empty page.
    pub fn new() -> EventPage {
        EventPage::default()
    }

    /// A page of `records`, encoded.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a EventRecord>) -> EventPage {
        let mut page = EventPage::new();
        for r in records {
            page.push(r);
        }
        page
    }

    /// Appends `record`, encoding it.
    pub fn push(&mut self, record: &EventRecord) {
        // Serializing a plain in-memory struct into a Vec cannot fail.
        layout()
            .serialize_into(&mut self.bytes, record)
            .expect("bincode serialization of an in-memory record");
        self.count += 1;
    }

    /// Appends a record given as its encoding: bytes that `bincode::serialize` of an
    /// [`EventRecord`] gives, such as a node's stored event. They are checked when
    /// the page is decoded, not here.
    pub fn push_encoded(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// How many events the page holds.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bytes its records take.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The events.
    pub fn decode(&self) -> Result<Vec<EventRecord>, PageError> {
        let fail = |at: usize, e: &dyn fmt::Display| PageError {
            count: self.count,
            reason: format!("record {at}: {e}"),
        };
        let mut de = bincode::Deserializer::from_slice(&self.bytes, layout());
        // Never more than the bytes could hold, whatever the count claims.
        let mut out = Vec::with_capacity((self.count as usize).min(self.bytes.len() / 32 + 1));
        for at in 0..self.count as usize {
            let record = EventRecord::deserialize(&mut de).map_err(|e| fail(at, &e))?;
            out.push(record);
        }
        if u8::deserialize(&mut de).is_ok() {
            return Err(PageError {
                count: self.count,
                reason: "bytes left after the last record".to_string(),
            });
        }
        Ok(out)
    }
}

impl fmt::Debug for EventPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPage")
            .field("count", &self.count)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::types::ContentType;

    fn record(i: u64) -> EventRecord {
        EventRecord {
            stream_id: format!("order-{i}"),
            version: i,
            position: 100 + i,
            event_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0000 + i as u128),
            event_type: "Placed".into(),
            data: vec![i as u8; 7],
            metadata: b"{\"m\":1}".to_vec(),
            content_type: ContentType::Binary,
            tags: vec!["t1".into(), format!("t{i}")],
            timestamp_us: 1_700_000_000_000_000 + i,
        }
    }

    #[test]
    fn records_come_back_as_they_went_in() {
        let records: Vec<EventRecord> = (0..5).map(record).collect();
        let page = EventPage::from_records(&records);
        assert_eq!(page.len(), 5);
        assert_eq!(page.decode().unwrap(), records);
        assert_eq!(EventPage::new().decode().unwrap(), Vec::new());
    }

    #[test]
    fn an_encoded_record_is_that_of_bincode_serialize() {
        // What a node stores is `bincode::serialize` of a record with these fields.
        let mut page = EventPage::new();
        page.push_encoded(&bincode::serialize(&record(1)).unwrap());
        page.push(&record(2));
        assert_eq!(page.decode().unwrap(), vec![record(1), record(2)]);
    }

    #[test]
    fn a_page_that_is_not_its_records_is_refused() {
        let mut short = EventPage::from_records(&[record(1)]);
        short.count = 2;
        let e = short.decode().unwrap_err();
        assert!(e.reason.starts_with("record 1:"), "{e}");

        let mut long = EventPage::from_records(&[record(1)]);
        long.bytes.push(0);
        let e = long.decode().unwrap_err();
        assert!(e.reason.contains("bytes left"), "{e}");

        // A length prefix far beyond the bytes allocates nothing and fails.
        let mut huge = EventPage::new();
        huge.push_encoded(&u64::MAX.to_le_bytes());
        assert!(huge.decode().is_err());
    }

    #[test]
    fn a_page_travels_as_its_bytes() {
        let page = EventPage::from_records(&[record(1), record(2)]);
        let wire = bincode::serialize(&page).unwrap();
        let back: EventPage = bincode::deserialize(&wire).unwrap();
        assert_eq!(back.decode().unwrap(), vec![record(1), record(2)]);
    }
}
