//! Request bodies cut off at a byte limit while they stream, and the small bodies of the
//! responses the host itself writes.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A request body that fails, and raises `exceeded`, once more than `limit` bytes have
/// arrived: a body larger than allowed is refused without ever being held whole.
pub struct LimitedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    limit: u64,
    pub exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub fn new(inner: hyper::body::Incoming, limit: u64) -> Self {
        LimitedBody { inner, remaining: limit, limit, exceeded: Arc::default() }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(HttpError::from(error)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                self.exceeded.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(self.limit)))));
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response the host writes itself: a status and a short plain-text body that never
/// carries internals.
pub fn plain(status: http::StatusCode, text: &str) -> http::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{text}\n"))).map_err(|never| match never {}).boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A response body that counts the bytes it sends into its access log entry, which is
/// written when the body is dropped: finished, failed or abandoned by the client.
pub struct Counted {
    inner: HyperOutgoingBody,
    entry: crate::access::AccessEntry,
}

impl Counted {
    pub fn new(inner: HyperOutgoingBody, entry: crate::access::AccessEntry) -> Self {
        Counted { inner, entry }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.entry.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A guest's response body that aborts the guest's task when dropped before its end (the
/// client went away mid-body): a guest must not keep streaming to nobody, holding its
/// instance and permits, until its timeout. Reaching the end lets the guest finish.
pub struct StopsGuest {
    inner: HyperOutgoingBody,
    task: Option<tokio::task::AbortHandle>,
}

impl StopsGuest {
    pub fn new(inner: HyperOutgoingBody, task: Option<tokio::task::AbortHandle>) -> Self {
        StopsGuest { inner, task }
    }
}

impl Body for StopsGuest {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.task = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for StopsGuest {
    fn drop(&mut self) {
        // hyper may stop polling once the body says it has ended, before seeing `None`.
        if let Some(task) = self.task.take()
            && !self.inner.is_end_stream()
        {
            task.abort();
        }
    }
}
