//! A WASI 0.3 command that calls guests/p3-transform across a `[[link]]`, for membrane's
//! tests of streams between two stores: each scenario, named by the first argument, sends
//! streams through the provider and prints what came back, so a test can tell whether the
//! bytes arrived intact, whether cancelling and a provider's trap or stall ended the
//! stream cleanly, and whether the link still answers afterwards.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "membrane:p3-probe/streams-consumer",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use membrane::p3_probe::{transform, words};
use wasi::cli::{environment, stdout};
use wit_bindgen::{StreamReader, StreamResult, StreamWriter};

const CHUNK: usize = 64 * 1024;
const MIB: u64 = 1 << 20;

struct Streams;

export!(Streams);

impl Guest for Streams {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let number = |i: usize| arg(i).parse::<u64>().unwrap_or(1);
        let line = match arg(1).as_str() {
            "intact" => {
                let (received, intact) = through_upper("upper", number(2) * MIB).await;
                format!("received {received} bytes; intact: {intact}")
            }
            "cancel" => cancel().await,
            "walk-away" => walk_away().await,
            "hold" => hold().await,
            "misbehave" => {
                let (received, _) = through_upper(&arg(2), number(3) * MIB).await;
                format!("ended after {received} bytes; then: {}", transform::reverse("abc".into()).await)
            }
            "many" => many(number(2) as usize).await,
            "starve" => starve(number(2) as usize).await,
            "measure" => {
                let (tx, rx) = wit_stream::new::<u8>();
                let measured = transform::measure(rx);
                let (_, total) = futures::join!(send(tx, number(2) * MIB), async { measured.await.await });
                format!("measured {total} bytes")
            }
            "reverse" => transform::reverse(arg(2)).await,
            "words" => format!("words: {}", words::count_words(&args[2..].join(" "))),
            other => format!("unknown scenario {other:?}"),
        };
        print(format!("{line}\n")).await;
        Ok(())
    }
}

impl exports::membrane::p3_probe::stream_driver::Guest for Streams {
    async fn async_calls(n: u32) -> u32 {
        let mut total = 0;
        for _ in 0..n {
            total += transform::reverse("abc".into()).await.len() as u32;
        }
        total
    }

    fn sync_calls(n: u32) -> u32 {
        (0..n).map(|_| words::count_words("a b c")).sum()
    }

    async fn stream_calls(n: u32, len: u32) -> u64 {
        // The bytes are made once and only counted on the way back: what is timed is the
        // crossing, not the test pattern.
        let data = vec![b'a'; len as usize];
        let mut back = Vec::with_capacity(CHUNK);
        let mut total = 0;
        for _ in 0..n {
            let (mut tx, rx) = wit_stream::new::<u8>();
            let mut out = transform::upper("echo".into(), rx).await;
            let chunk = data.clone();
            let sending = async move {
                tx.write_all(chunk).await;
            };
            let receiving = async {
                loop {
                    let (status, read) = out.read(std::mem::take(&mut back)).await;
                    back = read;
                    total += back.len() as u64;
                    back.clear();
                    if let StreamResult::Dropped | StreamResult::Cancelled = status {
                        break;
                    }
                }
            };
            futures::join!(sending, receiving);
        }
        total
    }
}

/// The byte at offset `at` of the test pattern: letters and other bytes mixed.
fn pattern(at: u64) -> u8 {
    (at.wrapping_mul(7) % 251) as u8
}

/// Writes `total` bytes of the pattern to `tx`, a chunk at a time; stops early when the
/// reader goes away. Says how many were taken.
async fn send(mut tx: StreamWriter<u8>, total: u64) -> u64 {
    let mut at = 0u64;
    while at < total {
        let len = (total - at).min(CHUNK as u64);
        let chunk: Vec<u8> = (at..at + len).map(pattern).collect();
        let left = tx.write_all(chunk).await;
        at += len - left.len() as u64;
        if !left.is_empty() {
            break;
        }
    }
    at
}

/// Reads `rx` to its end: how many bytes came, and whether each was the uppercased
/// pattern.
async fn receive(mut rx: StreamReader<u8>) -> (u64, bool) {
    let (mut at, mut intact) = (0u64, true);
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let (status, read) = rx.read(chunk).await;
        chunk = read;
        for (i, byte) in chunk.iter().enumerate() {
            intact &= *byte == pattern(at + i as u64).to_ascii_uppercase();
        }
        at += chunk.len() as u64;
        chunk.clear();
        if let StreamResult::Dropped | StreamResult::Cancelled = status {
            return (at, intact);
        }
    }
}

/// `total` bytes through `upper` in `mode`: what came back.
async fn through_upper(mode: &str, total: u64) -> (u64, bool) {
    let (tx, rx) = wit_stream::new::<u8>();
    let out = transform::upper(mode.to_string(), rx).await;
    let (_sent, received) = futures::join!(send(tx, total), receive(out));
    received
}

/// Starts a long transform, reads one chunk and drops its end: the provider stops, and
/// so does this side's writer; the link answers the next call.
async fn cancel() -> String {
    let (tx, rx) = wit_stream::new::<u8>();
    let mut out = transform::upper("upper".into(), rx).await;
    let reading = async move {
        let (_, first) = out.read(Vec::with_capacity(CHUNK)).await;
        first.len()
    };
    let (sent, first) = futures::join!(send(tx, 1 << 40), reading);
    format!(
        "cancelled after {first} bytes; the writer stopped after {} MiB; then: {}",
        sent / MIB,
        transform::reverse("abc".into()).await
    )
}

/// Starts a transform that stalls after its first chunk, reads that chunk and drops its end:
/// the provider never notices; a per-call one's call is over all the same (nobody holds
/// what it was writing), and the link answers the next call at once.
async fn walk_away() -> String {
    let (tx, rx) = wit_stream::new::<u8>();
    let mut out = transform::upper("stall-after:65536".into(), rx).await;
    let reading = async move {
        let (_, first) = out.read(Vec::with_capacity(CHUNK)).await;
        first.len()
    };
    let (_, first) = futures::join!(send(tx, 2 * MIB), reading);
    format!("walked away after {first} bytes; then: {}", transform::reverse("abc".into()).await)
}

/// Starts a transform of 4 MiB, reads its first chunk and holds the rest unread while
/// it calls the provider again, async and sync, then reads the rest: a singleton
/// provider answers beside the call whose stream is held.
async fn hold() -> String {
    let (tx, rx) = wit_stream::new::<u8>();
    let mut out = transform::upper("upper".into(), rx).await;
    wit_bindgen::spawn_local(async move {
        send(tx, 4 * MIB).await;
    });
    let (_, first) = out.read(Vec::with_capacity(CHUNK)).await;
    let reversed = transform::reverse("abc".into()).await;
    let counted = words::count_words("one two three");
    let (rest, _) = receive(out).await;
    format!(
        "held after {} bytes; meanwhile: {reversed}, {counted} words; in all: {} bytes",
        first.len(),
        first.len() as u64 + rest
    )
}

/// `n` transforms of 64 KiB at once, each its own pair of streams.
async fn many(n: usize) -> String {
    let calls = (0..n).map(|_| through_upper("upper", CHUNK as u64));
    let all = futures::future::join_all(calls).await;
    let intact = all.iter().filter(|(len, ok)| *len == CHUNK as u64 && *ok).count();
    format!("{intact} of {n} intact")
}

/// `n` transforms whose output nobody reads (their input keeps coming), then one that is
/// read: the unread ones hold what the link lets them, and the read one still gets through.
async fn starve(n: usize) -> String {
    let mut unread = Vec::new();
    for _ in 0..n {
        let (tx, rx) = wit_stream::new::<u8>();
        unread.push(transform::upper("upper".into(), rx).await);
        wit_bindgen::spawn_local(async move {
            send(tx, MIB).await;
        });
    }
    let (received, intact) = through_upper("upper", 4 * MIB).await;
    drop(unread);
    format!("with {n} unread streams: received {received} bytes; intact: {intact}")
}

async fn print(text: String) {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let written = stdout::write_via_stream(rx).into_future();
    let writer = async move {
        tx.write_all(text.into_bytes()).await;
        drop(tx);
    };
    let (result, ()) = futures::join!(written, writer);
    result.expect("stdout accepts the text");
}
