//! The span queue between requests and the collector. The SDK's batch processor keeps its
//! count of dropped spans to itself (it only logs it at shutdown), and membrane must show
//! it in `/metrics`; so this processor is ours: a bounded queue that never blocks the span's
//! thread, and one thread that sends batches through the OTLP exporter.

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Spans sent in one request to the collector.
const BATCH: usize = 512;
/// How long a span may wait for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

enum Message {
    Span(Box<SpanData>),
    /// Send everything queued, then answer.
    Flush(SyncSender<()>),
}

#[derive(Debug)]
pub(crate) struct BoundedBatch {
    queue: SyncSender<Message>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl BoundedBatch {
    pub(crate) fn start<E: SpanExporter + 'static>(mut exporter: E, resource: &Resource, capacity: usize) -> Self {
        exporter.set_resource(resource);
        let (queue, spans) = mpsc::sync_channel(capacity);
        let worker = std::thread::Builder::new()
            .name("membrane-otlp".into())
            .spawn(move || send_batches(exporter, spans))
            .expect("starting the span export thread");
        BoundedBatch { queue, worker: Mutex::new(Some(worker)) }
    }
}

impl SpanProcessor for BoundedBatch {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, flushed) = mpsc::sync_channel(1);
        self.queue.send(Message::Flush(done)).map_err(|_| OTelSdkError::AlreadyShutdown)?;
        flushed.recv_timeout(Duration::from_secs(10)).map_err(|_| OTelSdkError::Timeout(Duration::from_secs(10)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (done, flushed) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            flushed.recv_timeout(timeout).map_err(|_| OTelSdkError::Timeout(timeout))?;
        }
        // The worker ends when the last sender is gone, which is when the provider drops us.
        drop(self.worker.lock().unwrap_or_else(|p| p.into_inner()).take());
        Ok(())
    }
}

/// The worker: batches of up to [`BATCH`] spans, each sent when full or [`LINGER`] after
/// its first span. The exporter's HTTP client needs a Tokio runtime; this thread has its
/// own, so an export never runs on a request's threads.
fn send_batches<E: SpanExporter>(exporter: E, spans: Receiver<Message>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("span export is off: cannot start its runtime: {error}");
            return;
        }
    };
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut deadline = None;
    loop {
        let wait = deadline.map_or(Duration::from_secs(3600), |d: Instant| d.saturating_duration_since(Instant::now()));
        let mut flushed = None;
        match spans.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                deadline.get_or_insert_with(|| Instant::now() + LINGER);
                batch.push(*span);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Ok(Message::Flush(done)) => flushed = Some(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                send(&runtime, &exporter, std::mem::take(&mut batch));
                return;
            }
        }
        send(&runtime, &exporter, std::mem::take(&mut batch));
        deadline = None;
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

fn send<E: SpanExporter>(runtime: &tokio::runtime::Runtime, exporter: &E, batch: Vec<SpanData>) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len() as u64;
    match runtime.block_on(exporter.export(batch)) {
        Ok(()) => EXPORTED.fetch_add(count, Ordering::Relaxed),
        Err(error) => {
            tracing::warn!(spans = count, "the collector did not take a batch of spans: {error}");
            DROPPED.fetch_add(count, Ordering::Relaxed)
        }
    };
}
