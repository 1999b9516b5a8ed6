//! The bincode codec of every connection's frames, bounded by the frame it decodes.
//!
//! tarpc's stock bincode codec decodes with unlimited options, and serde preallocates
//! a sequence from the length the bytes claim (up to 1 MiB a container): a frame of a
//! few bytes that claims a vector of 2^32 elements makes the server allocate that
//! much before it notices the frame is short. [`FrameCodec`] decodes each frame with
//! a byte limit of the frame's own length (no string or byte buffer can claim more),
//! and caps the size hint every sequence and map passes to serde at the bytes still
//! unread in the frame: each element takes at least one byte on the wire, so no
//! container reserves room for more elements than the frame can hold. Trailing
//! bytes are refused. The encoding is bincode's default (varint), unchanged on the
//! wire, in frames with a 4-byte big-endian length as tarpc's transport framed them;
//! but where that transport reserved a frame's claimed length (up to
//! [`MAX_FRAME_BYTES`]) as soon as the prefix arrived, [`FrameCodec`] grows the
//! buffer only with the bytes that come.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;

use bincode::Options;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::Serialize;
use tarpc::tokio_util::bytes::{Buf, BufMut, BytesMut};
use tarpc::tokio_util::codec::{Decoder, Encoder};

/// The largest frame either side accepts: a 4 MiB batch plus envelope, with room.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The options every frame is written with: bincode's defaults, at most
/// [`MAX_FRAME_BYTES`].
fn write_options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_FRAME_BYTES as u64)
}

/// Decodes one frame as a `T`: at most `bytes.len()` bytes are read, no sequence
/// reserves room for more elements than bytes remain, and trailing bytes are an
/// error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let value = decode_with(bytes, bincode::DefaultOptions::new())?;
    if value.1 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes left over after the message", value.1),
        ));
    }
    Ok(value.0)
}

/// Decodes a `T` from the start of `bytes` as [`bincode::deserialize`] would (fixed
/// width integers, trailing bytes ignored), bounded as [`decode`] is: for payloads
/// that travel inside a frame in that encoding (Raft's messages between nodes).
pub fn decode_legacy<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    let options = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes();
    decode_with(bytes, options)
        .map(|(v, _)| v)
        .map_err(|e| Box::new(bincode::ErrorKind::Io(e)))
}

/// Decodes a `T` with `options` limited to `bytes`; gives the count of bytes left.
fn decode_with<T: DeserializeOwned, O: Options>(
    bytes: &[u8],
    options: O,
) -> io::Result<(T, usize)> {
    let left = Cell::new(bytes.len());
    let reader = Counted {
        slice: bytes,
        left: &left,
    };
    let options = options.with_limit(bytes.len() as u64);
    let mut de = bincode::Deserializer::with_bincode_read(reader, options);
    let value = T::deserialize(Capped {
        inner: &mut de,
        left: &left,
    })
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((value, left.get()))
}

/// Encodes `item` as one frame.
pub fn encode<T: Serialize>(item: &T) -> io::Result<Vec<u8>> {
    write_options()
        .serialize(item)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The length prefix of a frame: 4 bytes, big-endian, not counting itself.
pub const LENGTH_BYTES: usize = 4;

/// The most a frame's buffer is asked to grow ahead of the bytes that have arrived;
/// it grows by doubling, so it holds at most about twice what has arrived, plus this.
pub const READ_AHEAD: usize = 64 * 1024;

/// The codec of a connection that reads `In` and writes `Out`: frames of a 4-byte
/// big-endian length and that many bytes of bincode (see the module docs), at most
/// [`MAX_FRAME_BYTES`]. A frame's buffer grows with the bytes that arrive (see
/// [`READ_AHEAD`]), never to the length the prefix claims before they have.
pub struct FrameCodec<In, Out> {
    /// The body length of the frame being read, once its prefix is.
    body: Option<usize>,
    ghost: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        FrameCodec {
            body: None,
            ghost: PhantomData,
        }
    }
}

impl<In, Out> fmt::Debug for FrameCodec<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCodec")
            .field("body", &self.body)
            .finish()
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<In>> {
        let n = match self.body {
            Some(n) => n,
            None => {
                let Some(prefix) = src.get(..LENGTH_BYTES) else {
                    return Ok(None);
                };
                let mut b = [0u8; LENGTH_BYTES];
                b.copy_from_slice(prefix);
                let n = u32::from_be_bytes(b) as usize;
                if n > MAX_FRAME_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of {n} bytes exceeds {MAX_FRAME_BYTES}"),
                    ));
                }
                src.advance(LENGTH_BYTES);
                self.body = Some(n);
                n
            }
        };
        if src.len() < n {
            src.reserve((n - src.len()).min(READ_AHEAD));
            return Ok(None);
        }
        let body = src.split_to(n);
        self.body = None;
        decode(&body).map(Some)
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = io::Error;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> io::Result<()> {
        let body = encode(&item)?;
        // encode's limit keeps the body within MAX_FRAME_BYTES, so within u32.
        let n = u32::try_from(body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too long"))?;
        dst.reserve(LENGTH_BYTES + body.len());
        dst.put_u32(n);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

/// A slice reader that keeps the count of bytes unread where [`Capped`] sees it.
struct Counted<'s> {
    slice: &'s [u8],
    left: &'s Cell<usize>,
}

impl<'s> Counted<'s> {
    fn take(&mut self, n: usize) -> bincode::Result<&'s [u8]> {
        if n > self.slice.len() {
            return Err(Box::new(bincode::ErrorKind::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the frame ends inside the message",
            ))));
        }
        let (head, rest) = self.slice.split_at(n);
        self.slice = rest;
        self.left.set(rest.len());
        Ok(head)
    }
}

impl io::Read for Counted<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out.len().min(self.slice.len());
        let head = self.take(n).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        out[..n].copy_from_slice(head);
        Ok(n)
    }

    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let head = self
            .take(out.len())
            .map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(head);
        Ok(())
    }
}

impl<'s> bincode::BincodeRead<'s> for Counted<'s> {
    fn forward_read_str<V: Visitor<'s>>(
        &mut self,
        length: usize,
        visitor: V,
    ) -> bincode::Result<V::Value> {
        let bytes = self.take(length)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|e| Box::new(bincode::ErrorKind::InvalidUtf8Encoding(e)))?;
        visitor.visit_borrowed_str(s)
    }

    fn get_byte_buffer(&mut self, length: usize) -> bincode::Result<Vec<u8>> {
        self.take(length).map(<[u8]>::to_vec)
    }

    fn forward_read_bytes<V: Visitor<'s>>(
        &mut self,
        length: usize,
        visitor: V,
    ) -> bincode::Result<V::Value> {
        visitor.visit_borrowed_bytes(self.take(length)?)
    }
}

/// The smaller of a claimed length and the bytes left in the frame.
fn cap(hint: Option<usize>, left: &Cell<usize>) -> Option<usize> {
    hint.map(|n| n.min(left.get()))
}

/// A deserializer that hands every visitor capped sequence and map accesses.
struct Capped<'c, D> {
    inner: D,
    left: &'c Cell<usize>,
}

/// A visitor, seed or access wrapped to pass the cap on.
struct Wrap<'c, T> {
    inner: T,
    left: &'c Cell<usize>,
}

impl<'c, T> Wrap<'c, T> {
    fn new(inner: T, left: &'c Cell<usize>) -> Self {
        Wrap { inner, left }
    }
}

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$name($($arg,)* Wrap::new(visitor, self.left))
            }
        )*
    };
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Capped<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if name == "Duration" && fields == ["secs", "nanos"] {
            let guarded = DurationGuard(Wrap::new(visitor, self.left));
            return self.inner.deserialize_struct(name, fields, guarded);
        }
        self.inner
            .deserialize_struct(name, fields, Wrap::new(visitor, self.left))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The longest [`std::time::Duration`] a frame may carry: tarpc adds a request's
/// deadline, sent as a duration, to the present instant, which panics on overflow.
pub const DURATION_SECS_MAX: u64 = 100 * 365 * 24 * 60 * 60;

/// A duration's visitor that refuses one longer than [`DURATION_SECS_MAX`].
struct DurationGuard<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for DurationGuard<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let secs: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &"a duration"))?;
        let nanos: u32 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &"a duration"))?;
        if secs > DURATION_SECS_MAX {
            return Err(de::Error::custom(format!(
                "a duration of {secs} s exceeds {DURATION_SECS_MAX} s"
            )));
        }
        // Both as u64: serde's u32 visitor takes a u64 within its range.
        let again =
            de::value::SeqDeserializer::<_, A::Error>::new([secs, u64::from(nanos)].into_iter());
        self.0.visit_seq(again)
    }
}

macro_rules! visit {
    ($($name:ident($ty:ty);)*) => {
        $(
            fn $name<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.inner.$name(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Capped {
            inner: d,
            left: self.left,
        })
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Capped {
            inner: d,
            left: self.left,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.left))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.left))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.left))
    }
}

/// A seed wrapped so that what it deserializes is capped too.
struct Seed<'c, S> {
    inner: S,
    left: &'c Cell<usize>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Capped {
            inner: d,
            left: self.left,
        })
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        cap(self.inner.size_hint(), self.left)
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed {
            inner: seed,
            left: self.left,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        cap(self.inner.size_hint(), self.left)
    }
}

impl<'c, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'c, A> {
    type Error = A::Error;
    type Variant = Wrap<'c, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let left = self.left;
        let (value, variant) = self.inner.variant_seed(Seed { inner: seed, left })?;
        Ok((value, Wrap::new(variant, left)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            left: self.left,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let left = self.left;
        self.inner.tuple_variant(len, Wrap::new(visitor, left))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let left = self.left;
        self.inner.struct_variant(fields, Wrap::new(visitor, left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_stock_encoding() {
        let v: (u64, String, Vec<Vec<u8>>, Option<i32>) =
            (300, "héllo".into(), vec![vec![1, 2], vec![]], Some(-7));
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes, bincode::DefaultOptions::new().serialize(&v).unwrap());
        assert_eq!(
            decode::<(u64, String, Vec<Vec<u8>>, Option<i32>)>(&bytes).unwrap(),
            v
        );
    }

    #[test]
    fn the_legacy_decoding_matches_bincode_deserialize() {
        let v: (u64, String, Vec<u32>) = (1 << 40, "x".into(), vec![1, 2, 3]);
        let mut bytes = bincode::serialize(&v).unwrap();
        bytes.push(9);
        assert_eq!(decode_legacy::<(u64, String, Vec<u32>)>(&bytes).unwrap(), v);
    }

    /// Frames as tarpc's length-delimited transport wrote and read them.
    #[test]
    fn frames_match_the_length_delimited_framing() {
        use tarpc::tokio_util::codec::LengthDelimitedCodec;
        let v = (42u64, "frame".to_string());
        let mut ours = BytesMut::new();
        FrameCodec::<(), (u64, String)>::default()
            .encode(v.clone(), &mut ours)
            .unwrap();
        let mut theirs = BytesMut::new();
        let body = bincode::DefaultOptions::new().serialize(&v).unwrap();
        LengthDelimitedCodec::new()
            .encode(tarpc::tokio_util::bytes::Bytes::from(body), &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);

        // Read back a byte at a time.
        let mut codec = FrameCodec::<(u64, String), ()>::default();
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in ours.iter() {
            assert!(got.is_none());
            buf.extend_from_slice(&[*b]);
            got = codec.decode(&mut buf).unwrap();
        }
        assert_eq!(got, Some(v));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_claimed_length_is_not_reserved_before_it_arrives() {
        let mut codec = FrameCodec::<Vec<u8>, ()>::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(MAX_FRAME_BYTES as u32).to_be_bytes());
        buf.extend_from_slice(&[1, 2, 3]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 2 * READ_AHEAD, "{}", buf.capacity());
        // One byte more than the limit is refused outright.
        let mut codec = FrameCodec::<Vec<u8>, ()>::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes());
        assert!(codec.decode(&mut buf).is_err());
    }

    /// tarpc turns a request's deadline into an instant by adding it to the present,
    /// which panics on overflow: a frame carrying a huge one is refused instead.
    #[test]
    fn an_absurd_deadline_is_refused_not_a_panic() {
        use std::time::Duration;
        let ok = Duration::new(30, 5);
        assert_eq!(decode::<Duration>(&encode(&ok).unwrap()).unwrap(), ok);
        let huge = encode(&Duration::from_secs(u64::MAX)).unwrap();
        assert!(decode::<Duration>(&huge).is_err());
        let context = tarpc::context::current();
        let mut bytes = encode(&context).unwrap();
        // The deadline leads the context; write u64::MAX seconds over it.
        let secs_len = match bytes[0] {
            251 => 3,
            252 => 5,
            253 => 9,
            _ => 1,
        };
        let mut evil = vec![253];
        evil.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.splice(..secs_len, evil);
        let r = std::panic::catch_unwind(|| decode::<tarpc::context::Context>(&bytes));
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
    }

    #[test]
    fn trailing_and_missing_bytes_are_refused() {
        let mut bytes = encode(&7u32).unwrap();
        bytes.push(0);
        assert!(decode::<u32>(&bytes).is_err());
        let bytes = encode(&"abc").unwrap();
        assert!(decode::<String>(&bytes[..2]).is_err());
    }
}
