//! Enforcing [`Limits`] inside a store: a resource limiter that sums all of a component's
//! memories, and a CPU meter that counts the time the guest really runs.

use crate::stats::ComponentStats;
use membrane_manifest::Limits;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

/// Which limit stopped a guest, when one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// A `memory.grow` was refused; the guest held `held` bytes and asked for `wanted`.
    Memory {
        held: u64,
        wanted: u64,
        limit: u64,
    },
    Table {
        wanted: u64,
        limit: u64,
    },
}

/// A `ResourceLimiter` for one component instance.
///
/// wasmtime's `StoreLimits` caps each memory on its own; a component is several core
/// instances, each with memories, so the budget must be the sum. Refused growth makes
/// `memory.grow` return -1 as the spec says; the refusal is remembered so that a trap
/// which follows (a Rust guest aborts on allocation failure) is reported as the limit.
#[derive(Debug)]
pub struct ComponentLimiter {
    memory_limit: u64,
    memory_in_use: u64,
    table_elements: u64,
    instances: usize,
    hit: Option<LimitHit>,
    /// Where the component's memory in use across all its instances is summed.
    gauge: Option<Arc<ComponentStats>>,
}

impl ComponentLimiter {
    pub fn new(limits: &Limits) -> Self {
        ComponentLimiter {
            memory_limit: limits.memory.bytes(),
            memory_in_use: 0,
            table_elements: limits.table_elements,
            instances: limits.instances as usize,
            hit: None,
            gauge: None,
        }
    }

    /// Counts this instance in `stats.live`, and its memory in `stats.memory_bytes`,
    /// while the store lives.
    pub fn report_to(&mut self, stats: Arc<ComponentStats>) {
        stats.live.fetch_add(1, Ordering::Relaxed);
        stats.memory_bytes.fetch_add(self.memory_in_use, Ordering::Relaxed);
        self.gauge = Some(stats);
    }

    pub fn memory_in_use(&self) -> u64 {
        self.memory_in_use
    }

    pub fn hit(&self) -> Option<LimitHit> {
        self.hit
    }
}

impl Drop for ComponentLimiter {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.live.fetch_sub(1, Ordering::Relaxed);
            gauge.memory_bytes.fetch_sub(self.memory_in_use, Ordering::Relaxed);
        }
    }
}

impl wasmtime::ResourceLimiter for ComponentLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = (desired - current) as u64;
        let total = self.memory_in_use.saturating_add(growth);
        if total > self.memory_limit {
            self.hit = Some(LimitHit::Memory { held: self.memory_in_use, wanted: total, limit: self.memory_limit });
            return Ok(false);
        }
        self.memory_in_use = total;
        if let Some(gauge) = &self.gauge {
            gauge.memory_bytes.fetch_add(growth, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.hit = Some(LimitHit::Table { wanted: desired as u64, limit: self.table_elements });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

/// Counts the CPU time spent polling a sandbox's futures: wasm and the host calls it makes.
///
/// The wall clock would charge a guest for time it spends waiting on its host calls or on
/// other tasks; the thread's CPU clock, read around each poll, charges only work done.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// Reading the thread CPU clock is a system call; without a CPU limit it is skipped.
    enabled: bool,
    used_ns: AtomicU64,
    /// More CPU time the current budget allows: one budget for each further call that a
    /// long-lived instance takes while it serves others (see [`CpuMeter::grant`]).
    granted_ns: AtomicU64,
    /// The thread CPU clock when the current poll began; 0 when not being polled.
    poll_started_ns: AtomicU64,
}

impl CpuMeter {
    pub fn new(enabled: bool) -> Self {
        CpuMeter { enabled, ..CpuMeter::default() }
    }

    /// CPU time used so far, including the poll in progress on this thread, less what
    /// was granted on top of one budget.
    pub fn used(&self) -> std::time::Duration {
        let mut used = self.used_ns.load(Ordering::Relaxed);
        let started = self.poll_started_ns.load(Ordering::Relaxed);
        if started != 0 {
            used += thread_cpu_ns().saturating_sub(started);
        }
        std::time::Duration::from_nanos(used.saturating_sub(self.granted_ns.load(Ordering::Relaxed)))
    }

    /// Starts counting from zero: budgets are per call.
    pub fn reset(&self) {
        self.used_ns.store(0, Ordering::Relaxed);
        self.granted_ns.store(0, Ordering::Relaxed);
    }

    /// Allows `more` CPU time before the limit: a call that joins others in flight in
    /// one instance brings its own budget, so that they share the sum of theirs.
    pub fn grant(&self, more: std::time::Duration) {
        self.granted_ns.fetch_add(more.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Wraps a future so that every poll of it is charged to this meter.
    pub fn meter<F: Future>(&self, inner: F) -> Metered<'_, F> {
        Metered { meter: self, inner }
    }
}

pin_project_lite::pin_project! {
    pub struct Metered<'a, F> {
        meter: &'a CpuMeter,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !this.meter.enabled {
            return this.inner.poll(cx);
        }
        let start = thread_cpu_ns().max(1);
        this.meter.poll_started_ns.store(start, Ordering::Relaxed);
        let out = this.inner.poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        this.meter.poll_started_ns.store(0, Ordering::Relaxed);
        this.meter.used_ns.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

/// The calling thread's CPU clock in nanoseconds.
///
/// Neither std nor tokio exposes a thread CPU clock; `clock_gettime` is the one call that
/// reads it, so it is made here directly.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant the
    // platform defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use membrane_manifest::ByteSize;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_budget_is_the_sum_of_all_memories() {
        let limits = Limits { memory: ByteSize::mib(4), ..Limits::default() };
        let mut limiter = ComponentLimiter::new(&limits);
        assert!(limiter.memory_growing(0, 3 << 20, None).unwrap());
        // A second memory may not take the total past the budget.
        assert!(!limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(matches!(limiter.hit(), Some(LimitHit::Memory { held, .. }) if held == 3 << 20));
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.memory_in_use(), 4 << 20);
    }

    #[test]
    fn cpu_meter_charges_busy_polls() {
        let meter = CpuMeter::new(true);
        // Spin for 30 ms of this thread's CPU time, not of the wall clock: on a loaded
        // machine the thread may get far less CPU than the wall clock passes.
        let busy = meter.meter(async {
            let start = thread_cpu_ns();
            let mut x = 0u64;
            while thread_cpu_ns() - start < 30_000_000 {
                x = std::hint::black_box(x + 1);
            }
        });
        futures_lite_block_on(busy);
        assert!(meter.used() >= std::time::Duration::from_millis(20), "{:?}", meter.used());
        // A call that joins brings one more budget: the time used counts against both.
        let used = meter.used();
        meter.grant(std::time::Duration::from_millis(10));
        assert_eq!(meter.used(), used - std::time::Duration::from_millis(10));
        meter.grant(std::time::Duration::from_secs(10));
        assert_eq!(meter.used(), std::time::Duration::ZERO);
        meter.reset();
        assert_eq!(meter.used(), std::time::Duration::ZERO);
        // What was granted goes with a reset.
        futures_lite_block_on(meter.meter(async {
            let start = thread_cpu_ns();
            while thread_cpu_ns() - start < 2_000_000 {}
        }));
        assert!(meter.used() >= std::time::Duration::from_millis(1), "{:?}", meter.used());
    }

    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }
}

/// Runs `inner` for at most `limit` of wall time, from now.
///
/// Unlike `tokio::time::timeout`, the timer is armed only once `inner` first waits: a call
/// that finishes in its first poll (most calls across a link) never touches the timer
/// wheel. A guest that computes without waiting still yields at every epoch tick, so the
/// limit holds for it too.
pub fn within<F: Future>(limit: std::time::Duration, inner: F) -> Within<F> {
    Within { inner, deadline: std::time::Instant::now() + limit, sleep: None }
}

/// The limit passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pin_project_lite::pin_project! {
    pub struct Within<F> {
        #[pin]
        inner: F,
        deadline: std::time::Instant,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until((*this.deadline).into())));
        }
        match this.sleep.as_pin_mut().expect("armed above").poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// How long past its deadline a call in an event loop may go unstopped before the loop is
/// taken to be stuck in a guest that computes without waiting (see [`watched`]).
const STUCK_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// The deadlines of the calls in flight in one event loop (a long-lived instance serving
/// several at once), watched from outside it by [`watched`].
///
/// A call's deadline is enforced inside the loop, which stops that call alone. But
/// wasmtime 48 cannot poll the loop's own futures while a guest task computes without
/// waiting (it yields only to the executor, at each epoch tick): a deadline inside the
/// loop then never fires, and neither would the other calls' ones.
#[derive(Default)]
pub struct Deadlines {
    /// Each call's deadline, with the limit it was given.
    due: std::sync::Mutex<std::collections::BTreeMap<(std::time::Instant, u64), std::time::Duration>>,
    next: AtomicU64,
}

impl Deadlines {
    /// Counts a call due by `deadline` (its `limit` from when it started) until the
    /// returned guard is dropped.
    pub fn start(self: &Arc<Self>, deadline: std::time::Instant, limit: std::time::Duration) -> Due {
        let key = (deadline, self.next.fetch_add(1, Ordering::Relaxed));
        self.due.lock().unwrap_or_else(|p| p.into_inner()).insert(key, limit);
        Due { deadlines: self.clone(), key }
    }

    /// The limit of the oldest call, if it overran its deadline by more than
    /// [`STUCK_GRACE`].
    fn overrun(&self) -> Option<std::time::Duration> {
        let due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let ((deadline, _), limit) = due.first_key_value()?;
        (deadline.elapsed() > STUCK_GRACE).then_some(*limit)
    }
}

/// A call in flight, counted in its loop's [`Deadlines`] while it lives.
pub struct Due {
    deadlines: Arc<Deadlines>,
    key: (std::time::Instant, u64),
}

impl Drop for Due {
    fn drop(&mut self) {
        self.deadlines.due.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// The loop was stuck: a call in it overran its deadline (its limit, here) and nothing
/// inside stopped it.
#[derive(Debug)]
pub struct Stuck(pub std::time::Duration);

/// Runs `inner`, an event loop, until it ends, or until one of its calls overruns its
/// deadline without the loop stopping it: then the loop is dropped (the caller drops the
/// instance with it). Checked at every poll, and a guest that computes yields one at
/// every epoch tick.
pub async fn watched<F: Future>(deadlines: &Deadlines, inner: F) -> Result<F::Output, Stuck> {
    let mut inner = std::pin::pin!(inner);
    std::future::poll_fn(|cx| match inner.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Ok(out)),
        Poll::Pending => match deadlines.overrun() {
            Some(limit) => Poll::Ready(Err(Stuck(limit))),
            None => Poll::Pending,
        },
    })
    .await
}
