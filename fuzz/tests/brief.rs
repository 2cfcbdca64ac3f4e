//! Each fuzz target, briefly, in the test command: every saved input (`seeds/` and
//! `regressions/`), then random mutations of the seeds for `FUZZ_SECONDS` (default 3).
//! Not coverage-guided (`scripts/fuzz.sh` is, with libFuzzer); a failure names the random
//! seed (`FUZZ_SEED` replays it) and prints the input to save under `regressions/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Inputs saved for `target`, with where each came from.
fn saved(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else { continue };
        for entry in dir {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with('.') {
                continue;
            }
            // Wasm inputs are kept as text (no binaries in the repository) and assembled here.
            let data = match path.extension().is_some_and(|e| e == "wat") {
                true => wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                false => std::fs::read(&path).unwrap(),
            };
            inputs.push((path.clone(), data));
        }
    }
    inputs.sort();
    inputs
}

/// xorshift64*: the same seed gives the same inputs, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that often sit on an edge: zero, sign bits, maxima, and TOML's punctuation.
const INTERESTING: &[u8] = b"\x00\x01\x7f\x80\xff\"'[]{}=.,:-_/\\\n ";

/// A seed changed in a few random ways: bits flipped, bytes inserted, removed, replaced,
/// a piece of another seed spliced in.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 => data.insert(at, rng.next() as u8),
            2 if at < data.len() => drop(data.remove(at)),
            3 if at < data.len() => data[at] = INTERESTING[rng.below(INTERESTING.len())],
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let len = rng.below(other.len() - from + 1).min(64);
                data.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => {}
        }
    }
    data
}

fn check(target: &str, run: fn(&[u8]), data: &[u8], what: &str) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(data))).is_err() {
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        panic!("fuzz target {target} failed on {what}; save the input (hex) under fuzz/regressions/{target}/: {hex}");
    }
}

fn brief(target: &str, run: fn(&[u8])) {
    let saved = saved(target);
    assert!(!saved.is_empty(), "fuzz target {target} has no seeds in fuzz/seeds/{target}");
    for (path, data) in &saved {
        check(target, run, data, &path.display().to_string());
    }
    let seconds = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("fuzz {target}: FUZZ_SEED={seed}");
    let seeds: Vec<Vec<u8>> = saved.into_iter().map(|(_, data)| data).collect();
    let mut rng = Rng(seed);
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    while Instant::now() < until {
        let data = mutate(&mut rng, &seeds);
        check(target, run, &data, &format!("mutated input {runs} of FUZZ_SEED={seed}"));
        runs += 1;
    }
    eprintln!("fuzz {target}: {runs} mutated inputs in {seconds} s");
    assert!(runs > 0, "fuzz target {target} ran no mutated input");
}

#[test]
fn manifest() {
    brief("manifest", membrane_fuzz::targets::manifest);
}

#[test]
fn outbound() {
    brief("outbound", membrane_fuzz::targets::outbound);
}

#[test]
fn link_values() {
    brief("link_values", membrane_fuzz::targets::link_values);
}

#[test]
fn component_file() {
    brief("component_file", membrane_fuzz::targets::component_file);
}
