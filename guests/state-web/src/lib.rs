//! A wasi:http handler that keeps state in wasi:keyvalue and reads wasi:config, for
//! membrane's state tests and the multi-node demo. Requests (under any route prefix):
//!
//! - `GET|PUT|DELETE …/kv/BUCKET/KEY`: read, write (the body) or delete one key
//! - `POST …/incr/BUCKET/KEY?by=N`: atomic increment, answers the new value
//! - `POST …/count/BUCKET/KEY?id=ID`: an idempotent increment built on compare-and-swap: a
//!   retried `ID` is counted once, so a client may retry until it gets a 2xx
//! - `GET …/exists/BUCKET/KEY`: `true` or `false`
//! - `GET …/list/BUCKET`: every key, one per line
//! - `POST …/batch/BUCKET?n=N`: set-many of N keys, then get-many of them
//! - `GET …/config` (the keys this component sees) and `GET …/config/KEY` (one value)
//!
//! A wasi:keyvalue error answers 403 (access-denied), 404 (no-such-store) or 500 (other),
//! with the error in the body.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    path: ["../../wit/deps/keyvalue", "../../wit/deps/config", "../../wit/state"],
    world: "membrane:state/host",
    generate_all,
});

use membrane::state::cas;
use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store};

wasip2::http::proxy::export!(StateWeb);

struct StateWeb;

/// How many recent request ids a `count` record remembers; a retry older than that would
/// count twice, so it is far above the number of clients retrying at once.
const REMEMBERED_IDS: usize = 512;

impl wasip2::exports::http::incoming_handler::Guest for StateWeb {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match serve(&request) {
            Ok(reply) => reply,
            Err(error) => kv_error(error),
        };
        respond(out, status, &body);
    }
}

type Reply = (u16, String);

fn serve(request: &IncomingRequest) -> Result<Reply, store::Error> {
    let target = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_string)
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segments
        .iter()
        .position(|s| matches!(*s, "kv" | "exists" | "incr" | "count" | "list" | "batch" | "config"))
        .unwrap_or(segments.len());
    let args = segments.get(at + 1..).unwrap_or_default();
    let method = request.method();
    Ok(match (segments.get(at).copied(), args) {
        (Some("kv"), [bucket, key]) => {
            let bucket = store::open(bucket)?;
            match method {
                Method::Get => match bucket.get(key)? {
                    Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
                    None => (404, format!("no key {key}")),
                },
                Method::Put | Method::Post => {
                    bucket.set(key, &read_body(request))?;
                    (200, format!("set {key}"))
                }
                Method::Delete => {
                    bucket.delete(key)?;
                    (200, format!("deleted {key}"))
                }
                _ => (405, "GET, PUT or DELETE".into()),
            }
        }
        (Some("exists"), [bucket, key]) => (200, store::open(bucket)?.exists(key)?.to_string()),
        (Some("incr"), [bucket, key]) => {
            let by = param("by").and_then(|b| b.parse().ok()).unwrap_or(1);
            (200, atomics::increment(&store::open(bucket)?, key, by)?.to_string())
        }
        (Some("count"), [bucket, key]) => match param("id") {
            Some(id) => (200, count_once(&store::open(bucket)?, key, &id)?.to_string()),
            None => (400, "give ?id=".into()),
        },
        (Some("list"), [bucket]) => {
            let bucket = store::open(bucket)?;
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            keys.sort();
            (200, keys.join("\n"))
        }
        (Some("batch"), [bucket]) => {
            let n: usize = param("n").and_then(|b| b.parse().ok()).unwrap_or(10);
            let bucket = store::open(bucket)?;
            let entries: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("b{i}"), i.to_string().into_bytes())).collect();
            batch::set_many(&bucket, &entries)?;
            let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
            let found = batch::get_many(&bucket, &keys)?.into_iter().flatten().count();
            (200, format!("set {n}, found {found}"))
        }
        (Some("config"), []) => match config::get_all() {
            Ok(all) => {
                let mut keys: Vec<String> = all.into_iter().map(|(k, _)| k).collect();
                keys.sort();
                (200, keys.join("\n"))
            }
            Err(e) => (500, format!("{e:?}")),
        },
        (Some("config"), [key]) => match config::get(key) {
            Ok(Some(value)) => (200, value),
            Ok(None) => (404, format!("no config key {key}")),
            Err(e) => (500, format!("{e:?}")),
        },
        _ => (404, "unknown request; see the guest's documentation".into()),
    })
}

/// Adds one to the counter at `key` unless request `id` was counted already, and answers
/// the count. The record is `COUNT ID ID …` (most recent ids last), replaced as a whole by
/// compare-and-swap, so the count and the ids never disagree.
fn count_once(bucket: &store::Bucket, key: &str, id: &str) -> Result<u64, store::Error> {
    loop {
        let current = bucket.get(key)?;
        let text = current.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        let mut parts = text.split(' ').filter(|p| !p.is_empty());
        let count: u64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut ids: Vec<&str> = parts.collect();
        if ids.contains(&id) {
            return Ok(count);
        }
        ids.push(id);
        let keep = ids.len().saturating_sub(REMEMBERED_IDS);
        let next = std::iter::once((count + 1).to_string())
            .chain(ids[keep..].iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        if cas::compare_and_swap(bucket, key, current.as_deref(), next.as_bytes())? {
            return Ok(count + 1);
        }
    }
}

fn kv_error(error: store::Error) -> Reply {
    match error {
        store::Error::AccessDenied => (403, "access-denied".into()),
        store::Error::NoSuchStore => (404, "no-such-store".into()),
        store::Error::Other(message) => (500, format!("other: {message}")),
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().unwrap();
    let mut stream = body.stream().unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).unwrap();
    let response = OutgoingResponse::new(headers);
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
