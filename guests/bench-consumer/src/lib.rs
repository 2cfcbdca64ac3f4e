//! The consumer side of the call benchmarks: calls across a link in a loop, so a benchmark
//! can time many calls in one host call.

wit_bindgen::generate!({ path: "../../wit/test", world: "bench-consumer" });

use membrane::test::{counter, payload};

struct Consumer;

impl exports::membrane::test::driver::Guest for Consumer {
    fn calls(n: u32) -> u64 {
        let mut last = 0;
        for _ in 0..n {
            last = counter::increment();
        }
        last
    }
}

impl exports::membrane::test::payload_driver::Guest for Consumer {
    fn string_calls(n: u32, len: u32) -> u32 {
        let s = "x".repeat(len as usize);
        let mut last = 0;
        for _ in 0..n {
            last = payload::take_string(&s);
        }
        last
    }

    fn bytes_calls(n: u32, len: u32) -> u32 {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut last = 0;
        for _ in 0..n {
            last = payload::take_bytes(&data);
        }
        last
    }

    fn same_calls(n: u32, len: u32) -> u32 {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut last = 0;
        for _ in 0..n {
            last = payload::same_bytes(&data).len() as u32;
        }
        last
    }

    fn words_calls(n: u32, len: u32) -> u32 {
        let data: Vec<u32> = (0..len).collect();
        let mut last = 0;
        for _ in 0..n {
            last = payload::take_words(&data);
        }
        last
    }

    fn rows_calls(n: u32, len: u32) -> u32 {
        let rows: Vec<payload::Row> = (0..len).map(|id| payload::Row { id, weight: id as f64 / 2.0 }).collect();
        let mut last = 0;
        for _ in 0..n {
            last = payload::take_rows(&rows);
        }
        last
    }
}

export!(Consumer);
