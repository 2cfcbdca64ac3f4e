//! A hostile wasi:http handler for membrane's hostile corpus: each path's last segment is
//! one attack on the host (CPU, stack, memory, host resources, sockets, stdout, outbound HTTP,
//! leftovers of earlier instances). Whatever it does, the host must stay up and its
//! neighbours must keep answering. Paths that report instead of trapping answer one line.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, RequestOptions,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Hostile);

struct Hostile;

/// Zero-initialised data: a fresh instance must find it all zeros, whatever an earlier
/// instance in the same memory slot left there.
static mut LEFTOVERS: [u8; 1 << 20] = [0; 1 << 20];

impl wasip2::exports::http::incoming_handler::Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let param = |name: &str| {
            query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string)
        };
        let action = path.rsplit('/').next().unwrap_or_default();
        let text = match action {
            // Never yields to the host: only the epoch can stop it.
            "spin" => loop {
                std::hint::black_box(&target);
            },
            // Blocked in a host call that would wait for 584 years.
            "block" => {
                wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX).block();
                "woke up".to_string()
            }
            "recurse" => format!("depth {}", recurse(std::hint::black_box(0))),
            // Grows linear memory by 1 MiB at a time, touching every page.
            "grow" => {
                let mut held = Vec::new();
                loop {
                    held.push(vec![0xA5u8; 1 << 20]);
                    std::hint::black_box(&held);
                }
            }
            // Host resources: a new `fields` each time, never dropped.
            "fields" => {
                let mut held = Vec::new();
                loop {
                    held.push(Fields::new());
                }
            }
            // Host resources: timers, never dropped.
            "pollables" => {
                let mut held = Vec::new();
                loop {
                    held.push(wasip2::clocks::monotonic_clock::subscribe_duration(1_000_000_000));
                }
            }
            "random" => format!("got {} random bytes", wasip2::random::random::get_random_bytes(u64::MAX).len()),
            // Host memory: `fields` of 120 KiB each (just under wasmtime's per-fields cap),
            // never dropped; the data lives in the host, not in this guest's memory.
            "big-fields" => {
                let count: usize = param("count").and_then(|c| c.parse().ok()).unwrap_or(1000);
                let value = vec![b'a'; 120 << 10];
                let mut held = Vec::new();
                while held.len() < count {
                    let fields = Fields::new();
                    if fields.append("x-big", &value).is_err() {
                        break;
                    }
                    held.push(fields);
                }
                format!("held {} fields of 120 KiB", held.len())
            }
            // File descriptors: TCP (or, with `udp`, UDP) sockets, never closed, until the
            // host refuses one (or 5,000 of them); then held for `hold-ms`.
            "sockets" => {
                use wasip2::sockets::network::IpAddressFamily::Ipv4;
                use wasip2::sockets::{tcp_create_socket::create_tcp_socket, udp_create_socket::create_udp_socket};
                let hold_ms: u64 = param("hold-ms").and_then(|v| v.parse().ok()).unwrap_or(0);
                let udp = query.split('&').any(|kv| kv == "udp");
                let (mut tcp_held, mut udp_held) = (Vec::new(), Vec::new());
                let refused = loop {
                    if tcp_held.len() + udp_held.len() == 5_000 {
                        break "none".to_string();
                    }
                    let created = if udp {
                        create_udp_socket(Ipv4).map(|s| udp_held.push(s))
                    } else {
                        create_tcp_socket(Ipv4).map(|s| tcp_held.push(s))
                    };
                    if let Err(code) = created {
                        break code.name().to_string();
                    }
                };
                if hold_ms > 0 {
                    wasip2::clocks::monotonic_clock::subscribe_duration(hold_ms * 1_000_000).block();
                }
                format!("created {} sockets; refused: {refused}", tcp_held.len() + udp_held.len())
            }
            // One UDP datagram to `to` (IP:PORT): `sent`, or the error.
            "udp-send" => {
                let to = param("to").unwrap_or_default();
                match std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"hostile", &to)) {
                    Ok(_) => "sent".to_string(),
                    Err(e) => format!("not sent: {e}"),
                }
            }
            // The text a stream error carries to the guest: a body written past its
            // declared Content-Length fails with one.
            "stream-error" => {
                let headers = Fields::new();
                headers.append("content-length", b"1").unwrap();
                let response = OutgoingResponse::new(headers);
                let body = response.body().unwrap();
                let stream = body.write().unwrap();
                match stream.blocking_write_and_flush(b"more than one byte") {
                    Ok(()) => "no error".to_string(),
                    Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => e.to_debug_string(),
                    Err(wasip2::io::streams::StreamError::Closed) => "closed".to_string(),
                }
            }
            // 100,000 headers in one `fields`: the host caps their total size.
            "headers" => {
                let fields = Fields::new();
                let mut appended = 0;
                let mut refused = None;
                for i in 0..100_000 {
                    match fields.append(&format!("x-h{i}"), b"value") {
                        Ok(()) => appended += 1,
                        Err(e) => {
                            refused = Some(format!("{e:?}"));
                            break;
                        }
                    }
                }
                format!("appended {appended} of 100000; refused: {}", refused.unwrap_or_else(|| "none".into()))
            }
            // Writes to stdout as fast as the host takes it, forever.
            "stdout" => {
                let chunk = vec![b'x'; 64 << 10];
                let stdout = wasip2::cli::stdout::get_stdout();
                loop {
                    if stdout.blocking_write_and_flush(&chunk[..4096]).is_err() {
                        break "stdout closed".to_string();
                    }
                }
            }
            // Reports anything non-zero left in memory that a fresh instance must see zeroed,
            // then leaves a canary there for the next instance to find.
            "canary" => {
                // SAFETY: one request at a time per instance; nothing else refers to it.
                let data = unsafe { &mut *std::ptr::addr_of_mut!(LEFTOVERS) };
                let dirty_data = data.iter().filter(|b| **b != 0).count();
                data.fill(0xC5);
                let pages = 64;
                let before = core::arch::wasm32::memory_grow(0, pages);
                let grown = (before * 65536) as *mut u8;
                // SAFETY: the pages were just added to linear memory and belong to nobody.
                let fresh = unsafe { std::slice::from_raw_parts_mut(grown, pages * 65536) };
                let dirty_grown = fresh.iter().filter(|b| **b != 0).count();
                fresh.fill(0xC5);
                format!("leftovers: data {dirty_data}, grown {dirty_grown}")
            }
            "forbidden" => {
                let mut accepted = Vec::new();
                for name in ["host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                    "http2-settings", "proxy-authorization", "te", "trailer", "TE"]
                {
                    let fields = Fields::new();
                    if fields.append(name, b"evil").is_ok() {
                        accepted.push(name);
                    }
                }
                format!("forbidden headers accepted: {accepted:?}")
            }
            // `count` outbound requests to `url` one after another (each refused, when the
            // host is not granted): how many were refused.
            "fetch-loop" => {
                let url = param("url").unwrap_or_default();
                let count: usize = param("count").and_then(|c| c.parse().ok()).unwrap_or(1);
                let refused = (0..count).filter(|_| fetch(&url, None, false).ends_with("HttpRequestDenied")).count();
                format!("{refused} of {count} refused")
            }
            "fetch" => {
                let url = param("url").unwrap_or_default();
                let timeout = param("timeout-ns").and_then(|t| t.parse().ok());
                // With `forge-trace`, the request claims another trace as its parent.
                fetch(&url, timeout, param("forge-trace").is_some())
            }
            _ => "healthy".to_string(),
        };
        respond(out, 200, &text);
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let local = [depth; 32];
    std::hint::black_box(&local);
    1 + recurse(std::hint::black_box(depth + 1)) + local[3]
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).unwrap();
    let body = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(body, None).unwrap();
}

/// A trace context that is not this request's.
const FORGED_TRACEPARENT: &[u8] = b"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";

/// GETs `url` with every timeout set to `timeout_ns` (when given), with a forged
/// `traceparent` when `forge_trace`; reports the outcome.
fn fetch(url: &str, timeout_ns: Option<u64>, forge_trace: bool) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return format!("not an http URL: {url}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    if forge_trace {
        headers.append("traceparent", FORGED_TRACEPARENT).unwrap();
    }
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Get).unwrap();
    request.set_scheme(Some(&Scheme::Http)).unwrap();
    request.set_authority(Some(authority)).unwrap();
    request.set_path_with_query(Some(path)).unwrap();
    let options = timeout_ns.map(|t| {
        let options = RequestOptions::new();
        let set = [
            options.set_connect_timeout(Some(t)),
            options.set_first_byte_timeout(Some(t)),
            options.set_between_bytes_timeout(Some(t)),
        ];
        (options, set.iter().all(Result::is_ok))
    });
    let accepted = options.as_ref().map(|(_, ok)| *ok);
    let future = match outgoing_handler::handle(request, options.map(|(o, _)| o)) {
        Ok(future) => future,
        Err(code) => return format!("timeouts accepted: {accepted:?}; refused: {code:?}"),
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("timeouts accepted: {accepted:?}; upstream {}", response.status()),
        Some(Ok(Err(code))) => format!("timeouts accepted: {accepted:?}; failed: {code:?}"),
        _ => format!("timeouts accepted: {accepted:?}; no response"),
    }
}
