//! The provider side of the call benchmarks: a counter and payload sinks.

wit_bindgen::generate!({ path: "../../wit/test", world: "bench-provider" });

use std::cell::Cell;

struct Provider;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

impl exports::membrane::test::counter::Guest for Provider {
    fn increment() -> u64 {
        COUNT.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }
}

impl exports::membrane::test::payload::Guest for Provider {
    fn take_string(s: String) -> u32 {
        s.len() as u32
    }

    fn take_bytes(data: Vec<u8>) -> u32 {
        data.iter().fold(0u32, |sum, b| sum.wrapping_add(*b as u32))
    }

    fn same_bytes(data: Vec<u8>) -> Vec<u8> {
        data
    }

    fn take_words(data: Vec<u32>) -> u32 {
        data.iter().fold(0u32, |sum, w| sum.wrapping_add(*w))
    }

    fn take_rows(rows: Vec<exports::membrane::test::payload::Row>) -> u32 {
        rows.iter().fold(0u32, |sum, r| sum.wrapping_add(r.id))
    }
}

export!(Provider);
