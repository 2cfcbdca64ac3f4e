//! The span queue between requests and the collector. The SDK's batch processor keeps its
//! count of dropped spans to itself (it only logs it at shutdown), and membrane must show
//! it in `/metrics`; so this queue is ours: a bounded queue that never blocks the span's
//! thread, and one thread that sends batches to the collector over OTLP/HTTP ([`Collector`]),
//! encoded by [`crate::otlp`].
//!
//! A span ending costs its thread a short lock and a push. The export thread is woken only
//! when a batch is full (or a flush is asked), otherwise it wakes by itself after
//! [`LINGER`]: waking it for every span, as a channel does, cost each request two context
//! switches and took a third of the throughput on two cores.

use crate::recent::Recent;
use opentelemetry_http::HttpClient as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// How long a span may wait for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

/// What waits for the export thread.
#[derive(Debug, Default)]
struct Pending {
    /// Boxed as each span was made, so taking one moves a pointer, not the span.
    #[expect(clippy::vec_box, reason = "a span is boxed when it starts; the queue takes the box")]
    spans: Vec<Box<SpanData>>,
    /// Callers of a flush, answered once everything before it is sent.
    flushes: Vec<SyncSender<()>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when a batch fills, a flush is asked or the queue closes.
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The processor of every span: the export queue, which also feeds the dashboard's recent
/// traces (from the export thread, so one processor and no copy on the request path).
#[derive(Debug)]
pub(crate) struct BoundedBatch {
    queue: Arc<Queue>,
    capacity: usize,
    /// Spans sent in one export.
    batch: usize,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl BoundedBatch {
    /// Starts the export thread; at most `capacity` spans wait for it, the rest are dropped
    /// and counted.
    pub(crate) fn start(collector: Collector, capacity: usize, batch: usize, recent: Recent) -> Self {
        let queue = Arc::new(Queue::default());
        let spans = queue.clone();
        let worker = std::thread::Builder::new()
            .name("membrane-otlp".into())
            .spawn(move || send_batches(&collector, &spans, batch, &recent))
            .expect("starting the span export thread");
        BoundedBatch { queue, capacity, batch, worker: Mutex::new(Some(worker)) }
    }

    /// Spans waiting for the export thread.
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().spans.len()
    }

    /// Asks the export thread to send what waits, and waits up to `timeout` for it.
    fn flush(&self, timeout: Duration, close: bool) -> OTelSdkResult {
        let (done, flushed) = mpsc::sync_channel(1);
        {
            let mut pending = self.queue.lock();
            if pending.closed {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            pending.flushes.push(done);
            pending.closed = close;
        }
        self.queue.ready.notify_one();
        flushed.recv_timeout(timeout).map_err(|_| OTelSdkError::Timeout(timeout))
    }

    /// Takes a span that ended, or drops and counts it when the queue is full.
    pub(crate) fn end(&self, span: Box<SpanData>) {
        let mut pending = self.queue.lock();
        if pending.closed || pending.spans.len() >= self.capacity {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.spans.push(span);
        let full = pending.spans.len() == self.batch;
        drop(pending);
        if full {
            self.queue.ready.notify_one();
        }
    }

    /// Sends what waits (for at most `timeout`) and stops the export thread; spans that
    /// end later are dropped and counted.
    pub(crate) fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush(timeout, true);
        drop(self.worker.lock().unwrap_or_else(|p| p.into_inner()).take());
        match flushed {
            Err(OTelSdkError::AlreadyShutdown) => Ok(()),
            other => other,
        }
    }
}

/// Where spans go: the collector's OTLP/HTTP traces address, with the headers it asks for.
#[derive(Debug)]
pub(crate) struct Collector {
    pub(crate) traces: http::Uri,
    pub(crate) headers: http::HeaderMap,
    pub(crate) timeout: Duration,
    pub(crate) resource: Resource,
}

impl Collector {
    /// Sends one batch.
    fn send(&self, runtime: &tokio::runtime::Runtime, client: &HyperClient, batch: &[Box<SpanData>]) {
        let count = batch.len() as u64;
        let body = crate::otlp::encode(&self.resource, batch);
        let mut request = http::Request::post(self.traces.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(bytes::Bytes::from(body))
            .expect("a POST to a parsed address is a request");
        request.headers_mut().extend(self.headers.clone());
        let refused = match runtime.block_on(client.send_bytes(request)) {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("it answered {}", response.status())),
            Err(error) => Some(error.to_string()),
        };
        match refused {
            None => EXPORTED.fetch_add(count, Ordering::Relaxed),
            Some(why) => {
                tracing::warn!(spans = count, collector = %self.traces, "the collector did not take a batch of spans: {why}");
                DROPPED.fetch_add(count, Ordering::Relaxed)
            }
        };
    }
}

/// The export thread's nice value.
const NICE: i32 = 10;

/// Lowers the export thread's scheduling priority ([`NICE`]), so that a batch being encoded
/// and sent yields the core to a request that wakes: the export is not urgent, only
/// bounded. Under CFS, against two busy threads on a core, a thread at nice 10 gets about
/// 5 % of it, about what exporting every span of a server saturated on two cores takes:
/// in one run of three at 100 % sampling it fell behind and 0.35 % of the spans were
/// dropped (and counted). At nice 5 (14 %) none were, but p99 at one connection went from
/// 1.5–1.9× untraced to 2.7–3.4×, a batch's encoding holding the core a request wakes on
/// (BENCHMARKS.md, "Tracing"). Latency is the request's, spans are best effort.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id changes only its nice value.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE);
    }
}

/// The export thread: sends what waits whenever a batch is full, a flush is asked, or
/// [`LINGER`] has passed, in batches of at most `batch` spans.
fn send_batches(collector: &Collector, queue: &Queue, batch: usize, recent: &Recent) {
    yield_to_requests();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("span export is off: cannot start its runtime: {error}");
            return;
        }
    };
    // One client for the thread's life: its connection to the collector is kept.
    let client = HyperClient::with_default_connector(collector.timeout, None);
    // The queue's vector and this one take turns, so neither grows again once it has.
    let mut spare = Vec::with_capacity(batch);
    let mut pending = queue.lock();
    loop {
        while pending.spans.len() < batch && pending.flushes.is_empty() && !pending.closed {
            let (woken, waited) = queue.ready.wait_timeout(pending, LINGER).unwrap_or_else(|p| p.into_inner());
            pending = woken;
            if waited.timed_out() {
                break;
            }
        }
        let mut spans = std::mem::replace(&mut pending.spans, spare);
        let flushes = std::mem::take(&mut pending.flushes);
        let closed = pending.closed;
        drop(pending);
        while !spans.is_empty() {
            let sent = spans.len().min(batch);
            collector.send(&runtime, &client, &spans[..sent]);
            // Sent (encoded from a borrow), the spans move to the recent traces: no copy.
            recent.record(spans.drain(..sent));
        }
        spare = spans;
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
        pending = queue.lock();
    }
}
