//! The protobuf wire format as the span writer needs it: fields written straight into a
//! buffer, each length before what it measures (see the parent module for why not prost's
//! message types). Field numbers are the caller's; `common.v1` messages (`KeyValue`,
//! `AnyValue`, `InstrumentationScope`) are written here. The writers are `#[inline]`, so
//! that they may be inlined into the span writer in another codegen unit, as they were in
//! one module (`otlp_encode` was 4-7 % slower without it).

use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, Value};
use prost::encoding::{WireType, encoded_len_varint};
use std::time::{SystemTime, UNIX_EPOCH};

/// The bytes of a length-delimited field of `len` bytes.
#[inline]
pub(super) fn field_len(field: u32, len: usize) -> usize {
    encoded_len_varint(u64::from(field << 3)) + encoded_len_varint(len as u64) + len
}

/// A trace or span id: a field below 16 of fewer than 128 bytes, so its key and length
/// are a byte each, and its bytes a copy of known size.
#[inline(always)]
pub(super) fn id<const N: usize>(out: &mut Vec<u8>, field: u32, id: [u8; N]) {
    const { assert!(N < 128) };
    debug_assert!(field < 16);
    out.extend_from_slice(&[(field << 3 | WireType::LengthDelimited as u32) as u8, N as u8]);
    out.extend_from_slice(&id);
}

/// The key and length of a length-delimited field whose `len` bytes follow.
#[inline(always)]
pub(super) fn length_delimited(out: &mut Vec<u8>, field: u32, len: usize) {
    key(out, field, WireType::LengthDelimited);
    put_varint(out, len as u64);
}

/// A field's key: its number and wire type.
#[inline(always)]
pub(super) fn key(out: &mut Vec<u8>, field: u32, wire_type: WireType) {
    put_varint(out, u64::from(field << 3 | wire_type as u32));
}

/// `value` as a varint, appended at once and inlined, as a field's key is a constant:
/// prost's `encode_varint` is a call that appends a byte at a time.
#[inline(always)]
pub(super) fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
        return;
    }
    let (bytes, width) = varint_bytes(value);
    out.extend_from_slice(&bytes[..width]);
}

/// `value`'s varint bytes, and how many there are.
pub(super) fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while value >= 0x80 {
        bytes[n] = value as u8 | 0x80;
        value >>= 7;
        n += 1;
    }
    bytes[n] = value as u8;
    (bytes, n + 1)
}

pub(super) fn instrumentation_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        key_value(out, 3, &kv.key, &kv.value);
    }
}

#[inline]
pub(super) fn attributes(out: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        key_value(out, field, &kv.key, &kv.value);
    }
}

/// `common.v1.KeyValue` { key = 1, value = 2 }. Almost every attribute is a string, a
/// number or a flag, whose length is known before it is written: those are written at
/// once, lengths first, as they are most of a span's bytes.
#[inline]
pub(super) fn key_value(out: &mut Vec<u8>, field: u32, key: &Key, value: &Value) {
    let key = key.as_str();
    let Some(any) = scalar_len(value) else {
        return nested(out, field, |out| {
            string(out, 1, key);
            nested(out, 2, |out| any_value(out, value));
        });
    };
    let key_field = if key.is_empty() { 0 } else { field_len(1, key.len()) };
    let inner = key_field + field_len(2, any);
    out.reserve(field_len(field, inner));
    length_delimited(out, field, inner);
    string(out, 1, key);
    length_delimited(out, 2, any);
    any_value(out, value);
}

/// The length of the `AnyValue` of a string, number or flag; `None` for an array.
#[inline]
pub(super) fn scalar_len(value: &Value) -> Option<usize> {
    match value {
        Value::Bool(_) => Some(2),
        Value::I64(i) => Some(1 + encoded_len_varint(*i as u64)),
        Value::F64(_) => Some(9),
        Value::String(s) => Some(field_len(1, s.as_str().len())),
        _ => None,
    }
}

/// `common.v1.AnyValue`: string 1, bool 2, int 3, double 4, array 5.
#[inline]
pub(super) fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => varint(out, 2, u64::from(*b)),
        Value::I64(i) => varint(out, 3, *i as u64),
        Value::F64(f) => fixed64(out, 4, f.to_bits()),
        Value::String(s) => always_string(out, 1, s.as_str()),
        Value::Array(array) => nested(out, 5, |out| match array {
            Array::Bool(values) => values.iter().for_each(|v| nested(out, 1, |out| varint(out, 2, u64::from(*v)))),
            Array::I64(values) => values.iter().for_each(|v| nested(out, 1, |out| varint(out, 3, *v as u64))),
            Array::F64(values) => values.iter().for_each(|v| nested(out, 1, |out| fixed64(out, 4, v.to_bits()))),
            Array::String(values) => {
                values.iter().for_each(|v| nested(out, 1, |out| always_string(out, 1, v.as_str())))
            }
            other => always_string(out, 1, &other.to_string()),
        }),
        other => always_string(out, 1, &other.as_str()),
    }
}

/// A length-delimited field whose contents `write` appends. The length goes before them,
/// so one byte is kept for it and the contents moved along in the rare case (128 bytes or
/// more) that it needs more.
#[inline]
pub(super) fn nested(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    nested_within(out, field, 1, write);
}

/// A length-delimited field whose contents `write` appends, with `kept` bytes kept for
/// its length: the contents move only when their length takes another number of bytes.
#[inline]
pub(super) fn nested_within(out: &mut Vec<u8>, field: u32, kept: usize, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, WireType::LengthDelimited);
    let at = out.len();
    out.resize(at + kept, 0);
    write(out);
    let len = out.len() - at - kept;
    let width = encoded_len_varint(len as u64);
    if width > kept {
        out.resize(out.len() + width - kept, 0);
    }
    if width != kept {
        out.copy_within(at + kept..at + kept + len, at + width);
        out.truncate(at + width + len);
    }
    out[at..at + width].copy_from_slice(&varint_bytes(len as u64).0[..width]);
}

/// A string field, left out when empty (proto3's default).
#[inline]
pub(super) fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        always_string(out, field, value);
    }
}

/// A string field even when empty: a oneof member must be present to say which it is.
#[inline]
pub(super) fn always_string(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

#[inline(always)]
pub(super) fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    length_delimited(out, field, value.len());
    out.extend_from_slice(value);
}

/// A varint field, left out when zero.
#[inline]
pub(super) fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        varint(out, field, value);
    }
}

/// A varint field even when zero (a oneof member).
#[inline]
pub(super) fn varint(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, WireType::Varint);
    put_varint(out, value);
}

#[inline]
pub(super) fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, WireType::SixtyFourBit);
    out.extend_from_slice(&value.to_le_bytes());
}

#[inline]
pub(super) fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    key(out, field, WireType::ThirtyTwoBit);
    out.extend_from_slice(&value.to_le_bytes());
}

#[inline]
pub(super) fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
