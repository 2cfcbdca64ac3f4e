//! A guard on HTTP/1 request framing, between the socket and hyper. hyper resolves a
//! request that has both `Content-Length` and `Transfer-Encoding` by the latter (as RFC 9112
//! allows) and drops the former before any service sees it; membrane refuses such a
//! request outright, since two framings for one body is how requests are smuggled past
//! proxies. The guard follows each request's framing, holds back only header blocks (which
//! hyper buffers whole anyway, so no latency is added), and blanks the `Transfer-Encoding`
//! value of a conflicting block so that hyper's own parser answers 400 and closes. Lines
//! may end in a bare LF as well as CRLF, since hyper's parser accepts both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Framing state of the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header block.
    Head,
    /// `n` body bytes to pass.
    Body(u64),
    /// A chunked body: reading a chunk-size line.
    ChunkSize,
    /// A chunked body: `n` data bytes, then CRLF.
    ChunkData(u64),
    ChunkCrlf(u8),
    /// A chunked body's trailers, up to the empty line.
    Trailers,
    /// Not HTTP/1 framing we follow (HTTP/2, or a block hyper will refuse): pass all.
    Passthrough,
}

/// The framing tracker, apart from I/O so it can be tested on its own.
#[derive(Debug)]
pub struct Framing {
    state: State,
    held: Vec<u8>,
    line: Vec<u8>,
    max_head: usize,
    started: bool,
    /// Header blocks completed so far.
    heads: u64,
}

impl Framing {
    pub fn new(max_head: usize) -> Framing {
        Framing { state: State::Head, held: Vec::new(), line: Vec::new(), max_head, started: false, heads: 0 }
    }

    /// Takes bytes read from the client and appends to `out` those that may go on to hyper.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(data);
                    return;
                }
                State::Head => {
                    // The blank line that ends a head is at most 3 bytes ("\n\r\n").
                    let searched = self.held.len().saturating_sub(3);
                    self.held.extend_from_slice(data);
                    if !self.started && self.held.len() >= 3 {
                        self.started = true;
                        if self.held.starts_with(b"PRI") {
                            self.state = State::Passthrough;
                            out.append(&mut self.held);
                            return;
                        }
                    }
                    let Some(end) = head_end(&self.held[searched..]).map(|i| searched + i) else {
                        if self.held.len() > self.max_head {
                            // hyper refuses an oversized head (431); nothing to follow after.
                            self.state = State::Passthrough;
                            out.append(&mut self.held);
                        }
                        return;
                    };
                    let rest = self.held.split_off(end);
                    let mut head = std::mem::take(&mut self.held);
                    self.heads += 1;
                    self.state = inspect(&mut head);
                    out.extend_from_slice(&head);
                    // The bytes after the head are fed again under the new state.
                    self.feed(&rest, out);
                    return;
                }
                State::Body(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.state = if n == take as u64 { State::Head } else { State::Body(n - take as u64) };
                }
                State::ChunkData(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.state = if n == take as u64 { State::ChunkCrlf(2) } else { State::ChunkData(n - take as u64) };
                }
                State::ChunkCrlf(k) => {
                    let take = (k as usize).min(data.len());
                    out.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.state = if take == k as usize { State::ChunkSize } else { State::ChunkCrlf(k - take as u8) };
                }
                State::ChunkSize | State::Trailers => {
                    let newline = data.iter().position(|b| *b == b'\n');
                    let take = newline.map_or(data.len(), |i| i + 1);
                    out.extend_from_slice(&data[..take]);
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if newline.is_none() {
                        if self.line.len() > self.max_head {
                            self.state = State::Passthrough;
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim();
                    self.state = match self.state {
                        State::ChunkSize => {
                            let size = text.split(';').next().unwrap_or("").trim();
                            match u64::from_str_radix(size, 16) {
                                Ok(0) => State::Trailers,
                                Ok(n) => State::ChunkData(n),
                                // hyper will refuse the body; stop following.
                                Err(_) => State::Passthrough,
                            }
                        }
                        _ if text.is_empty() => State::Head,
                        _ => State::Trailers,
                    };
                }
            }
        }
    }

    /// Whether part of a header block is held back, waiting for the rest.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// At end of input: whatever is held goes on, for hyper to judge.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
    }
}

/// Where a header block ends (just past its blank line), if it does in `bytes`. A line
/// ends in LF with or without a CR before it: hyper accepts both, so the guard must see
/// a block end wherever hyper does, or a conflicting block slips past unread.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').find_map(|(i, _)| match &bytes[i + 1..] {
        [b'\n', ..] => Some(i + 2),
        [b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// The lines of a header block as (start, length without the CR or LF that ends it).
fn lines(head: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = head[at..].iter().position(|b| *b == b'\n')?;
        let start = at;
        at += len + 1;
        let len = if len > 0 && head[start + len - 1] == b'\r' { len - 1 } else { len };
        Some((start, len))
    })
}

/// Reads a complete header block's framing; blanks `Transfer-Encoding` when
/// `Content-Length` is there too, which makes hyper answer 400.
fn inspect(head: &mut [u8]) -> State {
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_value: Option<(usize, usize)> = None;
    let mut fields = lines(head);
    // The request line says nothing about framing.
    if fields.next().is_none() {
        return State::Passthrough;
    }
    for (at, len) in fields {
        let line = &head[at..at + len];
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
            let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_ascii_lowercase();
            match name.as_str() {
                "content-length" => content_length = value.parse().ok().or(Some(u64::MAX)),
                "transfer-encoding" => {
                    chunked = value.rsplit(',').next().is_some_and(|last| last.trim() == "chunked");
                    te_value = Some((at + colon + 1, at + len));
                }
                _ => {}
            }
        }
    }
    match (te_value, content_length) {
        (Some((start, end)), Some(_)) => {
            for byte in &mut head[start..end] {
                if !byte.is_ascii_whitespace() {
                    *byte = b'!';
                }
            }
            State::Passthrough
        }
        (Some(_), None) if chunked => State::ChunkSize,
        (Some(_), None) => State::Passthrough,
        (None, Some(u64::MAX)) => State::Passthrough,
        (None, Some(n)) if n > 0 => State::Body(n),
        _ => State::Head,
    }
}

/// A socket whose reads pass through [`Framing`]. Since hyper sees no byte of a header
/// block until it is whole, the header timeout (slowloris) is enforced here: a block begun
/// and not finished within `header_timeout` ends the connection.
pub struct Guarded<S> {
    inner: S,
    framing: Framing,
    ready: Vec<u8>,
    offset: usize,
    eof: bool,
    header_timeout: Duration,
    /// When the header block being held must be complete, and which block that is.
    deadline: Option<(u64, Pin<Box<tokio::time::Sleep>>)>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, max_head: usize, header_timeout: Duration) -> Self {
        Guarded {
            inner,
            framing: Framing::new(max_head),
            ready: Vec::new(),
            offset: 0,
            eof: false,
            header_timeout,
            deadline: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.offset < this.ready.len() {
                let n = (this.ready.len() - this.offset).min(buf.remaining());
                buf.put_slice(&this.ready[this.offset..this.offset + n]);
                this.offset += n;
                if this.offset == this.ready.len() {
                    this.ready.clear();
                    this.offset = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if !this.framing.holding() {
                        this.deadline = None;
                        return Poll::Pending;
                    }
                    let head = this.framing.heads;
                    if this.deadline.as_ref().is_none_or(|(h, _)| *h != head) {
                        this.deadline = Some((head, Box::pin(tokio::time::sleep(this.header_timeout))));
                    }
                    let (_, deadline) = this.deadline.as_mut().expect("set above");
                    return match deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request headers too slow")))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    this.eof = true;
                    this.framing.finish(&mut this.ready);
                }
                Poll::Ready(Ok(())) => this.framing.feed(read.filled(), &mut this.ready),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and returns what reaches hyper.
    fn run(input: &str, step: usize) -> String {
        let mut framing = Framing::new(64 << 10);
        let mut out = Vec::new();
        for piece in input.as_bytes().chunks(step) {
            framing.feed(piece, &mut out);
        }
        framing.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ordinary_requests_pass_unchanged_however_they_are_split() {
        let pipeline = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                        POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nworld\r\n0\r\nX-T: 1\r\n\r\n\
                        GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(run(pipeline, step), pipeline, "split every {step} bytes");
        }
    }

    #[test]
    fn a_conflicting_head_is_spoiled_even_after_clean_requests() {
        // A body that mentions both headers is only a body.
        let first = "POST /a HTTP/1.1\r\nContent-Length: 47\r\n\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n";
        let second = "POST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for step in [1, 5, 4096] {
            let out = run(&format!("{first}{second}"), step);
            assert!(out.starts_with(first), "{out}");
            assert!(out.contains("Transfer-Encoding: !!!!!!!\r\n"), "{out}");
            assert_eq!(out.matches("chunked").count(), 1, "only the body's mention survives: {out}");
        }
    }

    #[test]
    fn a_conflicting_head_with_bare_lf_line_ends_is_spoiled_too() {
        // hyper reads a bare LF as a line end, so the guard must as well; mixed ends too.
        let heads = [
            "POST /a HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\nContent-Length: 5\n\r\n0\r\n\r\n",
        ];
        for head in heads {
            for step in [1, 2, 4096] {
                let out = run(head, step);
                assert!(out.contains("Transfer-Encoding: !!!!!!!"), "{out:?}");
                assert!(!out.contains("chunked"), "{out:?}");
            }
        }
        // A clean bare-LF pipeline is followed: the body that looks like a head stays a body.
        let pipeline = "POST /a HTTP/1.1\nContent-Length: 47\n\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
                        GET /b HTTP/1.1\nHost: x\n\n";
        assert_eq!(run(pipeline, 3), pipeline);
    }

    #[test]
    fn http2_prior_knowledge_passes_through() {
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0";
        assert_eq!(run(preface, 2), preface);
    }
}
