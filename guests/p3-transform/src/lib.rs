//! A WASI 0.3 provider with async functions over streams, for membrane's tests of streams
//! across a `[[link]]`: `upper` transforms a byte stream chunk by chunk as it arrives (and
//! misbehaves on request: traps or stalls mid-stream), `measure` answers with a future once
//! its input ends, `reverse` is an async function without streams, and `count-words` a
//! synchronous one for WASI 0.2 consumers.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/transform-provider",
    generate_all,
});

use exports::membrane::p3_probe::{tallies, transform, words};
use std::cell::Cell;
use wit_bindgen::{FutureReader, StreamReader, StreamResult};

const CHUNK: usize = 64 * 1024;

struct Transform;

export!(Transform);

/// What `mode` asks of `upper`: after how many bytes out it traps or stalls, or that it
/// passes the bytes through unchanged ("echo", for benchmarks of the crossing alone).
enum Misbehave {
    None,
    Echo,
    Trap(u64),
    Stall(u64),
    Spin(u64),
}

fn misbehave(mode: &str) -> Misbehave {
    let after = |n: &str| n.parse().unwrap_or(0);
    match mode.split_once(':') {
        Some(("trap-after", n)) => Misbehave::Trap(after(n)),
        Some(("stall-after", n)) => Misbehave::Stall(after(n)),
        Some(("spin-after", n)) => Misbehave::Spin(after(n)),
        _ if mode == "echo" => Misbehave::Echo,
        _ => Misbehave::None,
    }
}

impl transform::Guest for Transform {
    async fn upper(mode: String, mut input: StreamReader<u8>) -> StreamReader<u8> {
        let (mut tx, rx) = wit_stream::new::<u8>();
        let misbehave = misbehave(&mode);
        wit_bindgen::spawn_local(async move {
            let mut sent = 0u64;
            let mut chunk = Vec::with_capacity(CHUNK);
            loop {
                let (status, read) = input.read(chunk).await;
                chunk = read;
                if let StreamResult::Dropped | StreamResult::Cancelled = status {
                    break;
                }
                if !matches!(misbehave, Misbehave::Echo) {
                    chunk.make_ascii_uppercase();
                }
                sent += chunk.len() as u64;
                chunk = tx.write_all(chunk).await;
                if !chunk.is_empty() {
                    // The reader went away: nothing more to do.
                    break;
                }
                match misbehave {
                    Misbehave::Trap(n) if sent >= n => panic!("asked to trap after {sent} bytes"),
                    Misbehave::Stall(n) if sent >= n => {
                        // Waits for a future nobody writes: the link's timeout ends it.
                        let (_keep, never) = wit_future::new::<u64>(|| 0);
                        never.await;
                    }
                    Misbehave::Spin(n) if sent >= n => {
                        // Computes forever without waiting: only the host's limits end it.
                        loop {
                            std::hint::black_box(sent);
                        }
                    }
                    _ => {}
                }
            }
        });
        rx
    }

    async fn measure(mut input: StreamReader<u8>) -> FutureReader<u64> {
        let (tx, rx) = wit_future::new::<u64>(|| 0);
        wit_bindgen::spawn_local(async move {
            let mut total = 0u64;
            let mut chunk = Vec::with_capacity(CHUNK);
            loop {
                let (status, read) = input.read(chunk).await;
                chunk = read;
                total += chunk.len() as u64;
                chunk.clear();
                if let StreamResult::Dropped | StreamResult::Cancelled = status {
                    break;
                }
            }
            // An empty input is a test's way to have the provider fail after it answered,
            // before it wrote the future.
            if total == 0 {
                for _ in 0..16 {
                    wit_bindgen::yield_async().await;
                }
                panic!("asked to measure an empty stream");
            }
            let _ = tx.write(total).await;
        });
        rx
    }

    async fn reverse(text: String) -> String {
        text.chars().rev().collect()
    }
}

impl tallies::Guest for Transform {
    type Tally = Tally;
}

/// A running count of the bytes fed to it.
struct Tally(Cell<u64>);

impl tallies::GuestTally for Tally {
    fn new() -> Tally {
        Tally(Cell::new(0))
    }

    async fn feed(&self, mut input: StreamReader<u8>) -> u64 {
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let (status, read) = input.read(chunk).await;
            chunk = read;
            self.0.set(self.0.get() + chunk.len() as u64);
            chunk.clear();
            if let StreamResult::Dropped | StreamResult::Cancelled = status {
                return self.0.get();
            }
        }
    }
}

impl words::Guest for Transform {
    fn count_words(text: String) -> u32 {
        text.split_whitespace().count() as u32
    }
}
