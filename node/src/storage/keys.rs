//! Key and value encodings chosen for speed: fixed-width integers, never string tuples
//! on the hot path (a string-tuple key costs about four times a u64 key in redb).
//!
//! - stream index key: `stream_no << 64 | version` as one u128;
//! - type and tag index keys: `name_no << 64 | position` as one u128;
//! - stream metadata: a fixed 33-byte record.
//!
//! These layouts are part of the state file's format (see [`super::format`]): never
//! change one without a new format version and its upgrade.

use uuid::Uuid;

/// Packs a number that names something (a stream, type or tag) with a position or
/// version into one ordered u128 key.
pub fn pack(high: u64, low: u64) -> u128 {
    (u128::from(high) << 64) | u128::from(low)
}

/// The low half of a packed key.
pub fn low(key: u128) -> u64 {
    key as u64
}

/// A stream index value: where the version's event sits and its id.
pub fn index_value(position: u64, event_id: Uuid) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&position.to_be_bytes());
    v[8..].copy_from_slice(event_id.as_bytes());
    v
}

/// Splits a stream index value.
pub fn split_index_value(v: [u8; 24]) -> (u64, Uuid) {
    let mut p = [0u8; 8];
    p.copy_from_slice(&v[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&v[8..]);
    (u64::from_be_bytes(p), Uuid::from_bytes(id))
}

/// What the store keeps per stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMeta {
    /// The stream's number in the index keys; stable across delete and recreate.
    pub number: u64,
    /// The version of the stream's last event: `None` when never written, or when
    /// soft-deleted by a node of state format 2 (which numbered a recreated stream from
    /// 0 again). A soft-delete keeps it, so that the stream's numbering goes on.
    pub version: Option<u64>,
    /// Hard-deleted: never writable again.
    pub tombstoned: bool,
    /// Soft-deleted since its last append: reads find nothing, and the next append
    /// continues after [`version`](Self::version).
    pub deleted: bool,
    /// The id of the stream's last event (for spotting a retried append cheaply).
    pub last_event_id: Uuid,
}

const NO_VERSION: u64 = u64::MAX;
/// Bits of the flags byte.
const TOMBSTONED: u8 = 1;
const DELETED: u8 = 2;
/// Encoded size of [`StreamMeta`].
pub const STREAM_META_BYTES: usize = 33;

impl StreamMeta {
    /// The version reads and expected-version checks see: `None` when the stream was
    /// never written, is deleted or tombstoned.
    pub fn live_version(&self) -> Option<u64> {
        if self.deleted || self.tombstoned {
            None
        } else {
            self.version
        }
    }

    /// The version the stream's next event takes: versions are never reused.
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |v| v + 1)
    }

    /// Encodes to the fixed record.
    pub fn encode(&self) -> [u8; STREAM_META_BYTES] {
        let mut b = [0u8; STREAM_META_BYTES];
        b[..8].copy_from_slice(&self.number.to_le_bytes());
        b[8..16].copy_from_slice(&self.version.unwrap_or(NO_VERSION).to_le_bytes());
        b[16] =
            if self.tombstoned { TOMBSTONED } else { 0 } | if self.deleted { DELETED } else { 0 };
        b[17..].copy_from_slice(self.last_event_id.as_bytes());
        b
    }

    /// Decodes the fixed record; `None` when the length is wrong or a flag unknown.
    pub fn decode(b: &[u8]) -> Option<StreamMeta> {
        if b.len() != STREAM_META_BYTES || b[16] & !(TOMBSTONED | DELETED) != 0 {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[r]);
            u64::from_le_bytes(a)
        };
        let version = u(8..16);
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[17..]);
        Some(StreamMeta {
            number: u(0..8),
            version: (version != NO_VERSION).then_some(version),
            tombstoned: b[16] & TOMBSTONED != 0,
            deleted: b[16] & DELETED != 0,
            last_event_id: Uuid::from_bytes(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_order_by_high_then_low() {
        assert!(pack(1, u64::MAX) < pack(2, 0));
        assert!(pack(1, 5) < pack(1, 6));
        assert_eq!(low(pack(7, 42)), 42);
    }

    #[test]
    fn stream_meta_round_trips() {
        for m in [
            StreamMeta {
                number: 3,
                version: Some(0),
                tombstoned: false,
                deleted: false,
                last_event_id: Uuid::now_v7(),
            },
            StreamMeta {
                number: 4,
                version: Some(9),
                tombstoned: false,
                deleted: true,
                last_event_id: Uuid::nil(),
            },
            StreamMeta {
                number: u64::MAX - 1,
                version: None,
                tombstoned: true,
                deleted: false,
                last_event_id: Uuid::nil(),
            },
        ] {
            assert_eq!(StreamMeta::decode(&m.encode()), Some(m));
        }
        assert_eq!(StreamMeta::decode(&[0u8; 5]), None);
        let mut unknown_flag = [0u8; STREAM_META_BYTES];
        unknown_flag[16] = 4;
        assert_eq!(StreamMeta::decode(&unknown_flag), None);
    }

    #[test]
    fn index_values_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(split_index_value(index_value(99, id)), (99, id));
    }
}
