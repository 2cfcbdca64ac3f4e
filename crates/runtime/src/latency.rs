//! Latency histograms of link calls: one since the link was made, and one per
//! [`WINDOW_SECS`] window of the last [`WINDOWS`] (five minutes), for the dashboard's
//! per-link chart. Fixed size (a ring of windows reused as time moves on), lock-free, and
//! fed with the call's start time the link already reads: recording reads no clock.

use serde::Serialize;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Latency buckets are powers of two of nanoseconds: bucket `i` holds calls that took
/// less than 2^i ns. 40 buckets reach past 18 minutes.
const BUCKETS: usize = 40;
/// Seconds one window of the recent histogram covers.
pub const WINDOW_SECS: u64 = 10;
/// Windows kept: five minutes of them.
pub const WINDOWS: usize = 30;

/// Where window numbers count from. Window 0 is never used, so a fresh window (number 0)
/// is told from one in use.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn window_of(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_secs() / WINDOW_SECS + 1
}

/// Counts per bucket.
#[derive(Debug)]
struct Histogram([AtomicU64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Histogram {
    fn bucket(took: Duration) -> usize {
        let ns = took.as_nanos().min(u64::MAX as u128) as u64;
        (64 - ns.leading_zeros() as usize).min(BUCKETS - 1)
    }

    /// The calls counted, and the upper bounds of the buckets holding the median and the
    /// 99th percentile call (0 without calls).
    fn read(&self) -> (u64, u64, u64) {
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| self.0[i].load(Relaxed));
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return 1u64 << i;
                }
            }
            1u64 << (BUCKETS - 1)
        };
        (total, quantile(0.5), quantile(0.99))
    }
}

#[derive(Debug, Default)]
struct Window {
    /// The window number these counts belong to (0: none yet).
    number: AtomicU64,
    counts: Histogram,
}

/// The latency of one link's calls, overall and by recent window.
#[derive(Debug)]
pub(crate) struct Latency {
    overall: Histogram,
    recent: [Window; WINDOWS],
}

impl Default for Latency {
    fn default() -> Self {
        LazyLock::force(&EPOCH);
        Latency { overall: Histogram::default(), recent: std::array::from_fn(|_| Window::default()) }
    }
}

/// One window of a link's recent latency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LatencyWindow {
    /// How long ago the window began, in seconds (a multiple of [`WINDOW_SECS`]).
    pub ago_s: u64,
    pub calls: u64,
    /// Upper bounds of the buckets holding the median and the 99th percentile call.
    pub p50_ns: u64,
    pub p99_ns: u64,
}

impl Latency {
    /// Counts a call that started `at` and took `took`.
    pub(crate) fn record(&self, at: Instant, took: Duration) {
        let bucket = Histogram::bucket(took);
        self.overall.0[bucket].fetch_add(1, Relaxed);
        let number = window_of(at);
        let window = &self.recent[(number % WINDOWS as u64) as usize];
        let held = window.number.load(Relaxed);
        if held != number {
            // A call that began before the window's slot was reused for a later one.
            if held > number {
                return;
            }
            // The first call of a new window clears what the slot held five minutes ago.
            // A call counted by another thread between the two steps may be lost: a
            // chart's approximation, never a wrong count of calls (those are `calls`).
            if window.number.compare_exchange(held, number, AcqRel, Relaxed).is_ok() {
                for count in &window.counts.0 {
                    count.store(0, Relaxed);
                }
            }
        }
        window.counts.0[bucket].fetch_add(1, Relaxed);
    }

    /// The median and 99th percentile of every call so far.
    pub(crate) fn overall(&self) -> (u64, u64) {
        let (_, p50, p99) = self.overall.read();
        (p50, p99)
    }

    /// The last [`WINDOWS`] windows up to `now`, oldest first; windows without calls are
    /// there, empty.
    pub(crate) fn recent(&self, now: Instant) -> Vec<LatencyWindow> {
        let current = window_of(now);
        (0..WINDOWS as u64)
            .rev()
            .map(|back| {
                let number = current.saturating_sub(back);
                let window = &self.recent[(number % WINDOWS as u64) as usize];
                let (calls, p50_ns, p99_ns) =
                    if number > 0 && window.number.load(Relaxed) == number { window.counts.read() } else { (0, 0, 0) };
                LatencyWindow { ago_s: back * WINDOW_SECS, calls, p50_ns, p99_ns }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let latency = Latency::default();
        let now = Instant::now();
        for _ in 0..98 {
            latency.record(now, Duration::from_nanos(300));
        }
        latency.record(now, Duration::from_micros(50));
        latency.record(now, Duration::from_micros(50));
        assert_eq!(latency.overall(), (512, 65_536));
        let recent = latency.recent(now);
        assert_eq!(recent.len(), WINDOWS);
        assert_eq!(recent.last(), Some(&LatencyWindow { ago_s: 0, calls: 100, p50_ns: 512, p99_ns: 65_536 }));
        assert!(recent[..WINDOWS - 1].iter().all(|w| w.calls == 0));
    }

    #[test]
    fn each_window_holds_its_own_calls_and_old_ones_are_forgotten() {
        let latency = Latency::default();
        let start = *EPOCH + Duration::from_secs(1000 * WINDOW_SECS);
        let at = |window: u64| start + Duration::from_secs(window * WINDOW_SECS);
        latency.record(at(0), Duration::from_micros(1));
        latency.record(at(1), Duration::from_millis(1));
        latency.record(at(1), Duration::from_millis(1));
        let recent = latency.recent(at(1));
        assert_eq!((recent[WINDOWS - 2].calls, recent[WINDOWS - 2].p99_ns), (1, 1024));
        assert_eq!((recent[WINDOWS - 1].calls, recent[WINDOWS - 1].p50_ns), (2, 1 << 20));
        assert_eq!(recent[WINDOWS - 2].ago_s, WINDOW_SECS);

        // Five minutes on, window 1's slot is reused: its calls are gone, not added to.
        let later = WINDOWS as u64 + 1;
        latency.record(at(later), Duration::from_nanos(100));
        let recent = latency.recent(at(later));
        assert_eq!(recent.last().unwrap().calls, 1);
        assert_eq!(recent.iter().map(|w| w.calls).sum::<u64>(), 1, "windows 0 and 1 are past five minutes");
        // A call that began in a window since reused is not counted in the new one.
        latency.record(at(1), Duration::from_nanos(100));
        assert_eq!(latency.recent(at(later)).last().unwrap().calls, 1);
        // Every call is in the overall figures.
        assert_eq!(latency.overall.read().0, 5);
    }
}
