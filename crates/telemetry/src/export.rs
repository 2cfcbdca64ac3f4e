//! The span queue between requests and the collector. The SDK's batch processor keeps its
//! count of dropped spans to itself (it only logs it at shutdown), and membrane must show
//! it in `/metrics`; so this queue is ours: a bounded queue that never blocks the span's
//! thread, and one thread that sends batches to the collector over OTLP/HTTP ([`Collector`]).
//!
//! A thread gathers the spans it ends, and every [`CHUNK_SPANS`] writes them in protobuf
//! ([`crate::otlp::Chunk`]) and frees them itself; only the chunk's bytes cross to the
//! export thread, which puts an export's header around them. Handing the spans themselves
//! over cost more than writing them: the export thread then read about 1 KB a span written
//! on another core, and freed each span's blocks on the core that allocated them, and that
//! freeing alone was more than half of its time. Writing each span the moment it ends cost
//! more than gathering them: the writer's code, run between a request's other work, pushed
//! that work's code out of the instruction cache, twice the misses for about the same
//! instructions (BENCHMARKS.md, "Tracing"). Spans a thread gathered and has not written (a
//! thread gone idle) are taken and written by the export thread after [`LINGER`], and on a
//! flush.
//!
//! The export thread is woken only when a batch is full (or a flush is asked), otherwise it
//! wakes by itself after [`LINGER`]: waking it for every span, as a channel does, cost each
//! request two context switches and took a third of the throughput on two cores.

use crate::otlp::{self, Chunk, Recorded};
use crate::recent::Recent;
use opentelemetry_http::HttpClient as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// How long a span may wait for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

/// Spans a thread gathers before it writes them into a chunk: enough that a chunk's
/// hand-over is rare and the writer's code runs seldom, few enough that writing one (about
/// 15 µs) is not a request's tail.
const CHUNK_SPANS: usize = 64;

/// What waits for the export thread.
#[derive(Debug, Default)]
struct Pending {
    chunks: Vec<Chunk>,
    /// Spans in `chunks`.
    spans: usize,
    /// Callers of a flush, answered once everything before it is sent.
    flushes: Vec<SyncSender<()>>,
    closed: bool,
}

/// The spans one thread ended and has not yet written into a chunk. Its lock is the
/// thread's own but when the export thread takes what an idle thread left. The spans stay
/// in the boxes they were made in (a [`crate::Span`] is one pointer): gathered without a
/// copy.
#[derive(Debug, Default)]
#[allow(clippy::vec_box, reason = "a span is boxed from its start; gathering it moves the box, not the span")]
struct Gathered(Mutex<Vec<Box<Recorded>>>);

impl Gathered {
    #[allow(clippy::vec_box, reason = "as for Gathered")]
    fn lock(&self) -> MutexGuard<'_, Vec<Box<Recorded>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `ended` written as chunks, one for each scope.
fn write(ended: &[Box<Recorded>]) -> Vec<Chunk> {
    otlp::write(ended.iter().map(|span| &**span))
}

#[derive(Debug, Default)]
struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when a batch fills, a flush is asked or the queue closes.
    ready: Condvar,
    /// What each thread that ended spans has gathered.
    threads: Mutex<Vec<Arc<Gathered>>>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spans threads gathered and have not written, written here; a thread that is gone
    /// is forgotten once its spans are taken.
    fn sweep(&self) -> Vec<Chunk> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let mut chunks = Vec::new();
        for gathered in threads.iter() {
            let mut ended = gathered.lock();
            if !ended.is_empty() {
                chunks.extend(write(&ended));
                ended.clear();
            }
        }
        threads.retain(|gathered| Arc::strong_count(gathered) > 1);
        chunks
    }
}

thread_local! {
    /// This thread's gathered spans, with the queue they are for (held weakly, so that its
    /// address is never another queue's).
    static GATHERED: RefCell<Option<(Weak<Queue>, Arc<Gathered>)>> = const { RefCell::new(None) };
}

/// The processor of every span: the export queue, which also feeds the dashboard's recent
/// traces (from the export thread, so one processor and no copy on the request path).
#[derive(Debug)]
pub(crate) struct BoundedBatch {
    queue: Arc<Queue>,
    capacity: usize,
    /// Spans sent in one export.
    batch: usize,
    /// Spans a thread gathers before writing them.
    chunk: usize,
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
        let chunk = CHUNK_SPANS.min(batch).min(capacity).max(1);
        BoundedBatch { queue, capacity, batch, chunk, worker: Mutex::new(Some(worker)) }
    }

    /// Spans waiting for the export thread, written (those threads still gather are not
    /// counted).
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().spans
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

    /// Gathers a span that ended on this thread, and writes those it gathered into chunks
    /// for the queue once there are enough, freeing them where they were made.
    pub(crate) fn end(&self, span: Box<Recorded>) {
        let mut span = Some(span);
        let handed = GATHERED.try_with(|gathered| {
            let mut gathered = gathered.borrow_mut();
            let this = match &*gathered {
                Some((queue, this)) if std::ptr::eq(queue.as_ptr(), Arc::as_ptr(&self.queue)) => this,
                _ => {
                    let this = Arc::new(Gathered::default());
                    self.queue.threads.lock().unwrap_or_else(|p| p.into_inner()).push(this.clone());
                    &gathered.insert((Arc::downgrade(&self.queue), this)).1
                }
            };
            let mut ended = this.lock();
            ended.extend(span.take());
            if ended.len() < self.chunk {
                return None;
            }
            let chunks = write(&ended);
            ended.clear();
            Some(chunks)
        });
        match handed {
            Ok(None) => {}
            Ok(Some(chunks)) => self.push(chunks),
            // The thread is ending: its span goes on its own.
            Err(_) => self.push(write(&[span.expect("not gathered")])),
        }
    }

    /// Queues written spans, or drops and counts them when the queue is full.
    fn push(&self, chunks: Vec<Chunk>) {
        let count: usize = chunks.iter().map(Chunk::len).sum();
        let mut pending = self.queue.lock();
        if pending.closed || pending.spans + count > self.capacity {
            drop(pending);
            DROPPED.fetch_add(count as u64, Ordering::Relaxed);
            return;
        }
        let before = pending.spans;
        pending.spans += count;
        pending.chunks.extend(chunks);
        let full = before < self.batch && pending.spans >= self.batch;
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
    fn send(&self, runtime: &tokio::runtime::Runtime, client: &HyperClient, batch: &[Chunk]) {
        let count = batch.iter().map(Chunk::len).sum::<usize>() as u64;
        let body = otlp::body(&self.resource, batch.iter());
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
/// [`LINGER`] has passed, in batches of about `batch` spans (whole chunks).
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
    let mut swept = Instant::now();
    let mut pending = queue.lock();
    loop {
        while pending.spans < batch && pending.flushes.is_empty() && !pending.closed {
            let (woken, waited) = queue.ready.wait_timeout(pending, LINGER).unwrap_or_else(|p| p.into_inner());
            pending = woken;
            if waited.timed_out() {
                break;
            }
        }
        let mut chunks = std::mem::take(&mut pending.chunks);
        pending.spans = 0;
        let flushes = std::mem::take(&mut pending.flushes);
        let closed = pending.closed;
        drop(pending);
        // What threads gathered and did not write yet: on a flush, and at least every
        // LINGER, however busy the queue is.
        if !flushes.is_empty() || closed || swept.elapsed() >= LINGER {
            chunks.extend(queue.sweep());
            swept = Instant::now();
        }
        let mut rest = chunks.into_iter().peekable();
        while rest.peek().is_some() {
            // Whole chunks, until they hold a batch.
            let (mut sent, mut spans) = (Vec::new(), 0);
            while spans < batch
                && let Some(chunk) = rest.next()
            {
                spans += chunk.len();
                sent.push(chunk);
            }
            collector.send(&runtime, &client, &sent);
            recent.keep(sent);
        }
        for done in flushes {
            let _ = done.send(());
        }
        if closed {
            return;
        }
        pending = queue.lock();
    }
}
