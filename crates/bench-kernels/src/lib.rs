//! Compute kernels for the compute benchmark, compiled natively (by the bench) and to a
//! component (by `guests/bench-kernels`), so both sides run the very same source. Inputs
//! are generated deterministically from their size, so no call has to carry them.

pub use regex::Regex;
use sha2::{Digest, Sha256};

/// `len` bytes of a fixed, non-repeating-looking pattern (a xorshift stream).
pub fn bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Hex sha256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON array of `records` objects with strings, numbers, booleans and nesting.
pub fn json_document(records: usize) -> String {
    let items: Vec<serde_json::Value> = (0..records)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "name": format!("user-{i}"),
                "email": format!("user{i}@example.org"),
                "active": i % 3 != 0,
                "score": (i as f64) * 1.25,
                "tags": ["alpha", "beta", format!("t{}", i % 17)],
                "address": { "street": format!("{i} Main St"), "zip": format!("{:05}", i % 99999) },
            })
        })
        .collect();
    serde_json::to_string(&serde_json::Value::Array(items)).expect("a JSON value serializes")
}

/// Parses `doc` and serializes it again; the output's length.
pub fn json_roundtrip(doc: &str) -> usize {
    let value: serde_json::Value = serde_json::from_str(doc).expect("the document is JSON");
    serde_json::to_string(&value).expect("a JSON value serializes").len()
}

/// A text of about `len` bytes of log-like lines with e-mail addresses in some of them.
pub fn text(len: usize) -> String {
    let mut out = String::with_capacity(len + 80);
    let mut i = 0usize;
    while out.len() < len {
        if i.is_multiple_of(4) {
            out.push_str(&format!("2026-11-27 INFO user{i}@example.org logged in from 10.0.{}.{}\n", i % 256, i % 7));
        } else {
            out.push_str(&format!("2026-11-27 DEBUG request {i} served in {} us\n", i % 997));
        }
        i += 1;
    }
    out
}

/// The expression [`regex_count`] scans for (e-mail addresses).
pub fn email_regex() -> Regex {
    regex::Regex::new(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}").expect("a valid expression")
}

/// Matches of `re` in `text`.
pub fn regex_count(re: &Regex, text: &str) -> usize {
    re.find_iter(text).count()
}
