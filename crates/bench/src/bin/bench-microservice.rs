//! The provider logic of the call benchmark as a native HTTP/1.1 microservice (hyper): what
//! a component link replaces. Listens on a free loopback port, prints it, serves
//! `POST /increment` (a counter), `POST /string` (the body's length), `POST /bytes` (the
//! sum of the body's bytes), `POST /words` (the sum of its little-endian `u32`s) and
//! `POST /same` (the body sent back), until its standard input closes.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static COUNT: AtomicU64 = AtomicU64::new(0);

async fn serve(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    if path == "/same" {
        return Ok(Response::new(Full::new(body)));
    }
    let answer = match path.as_str() {
        "/words" => {
            body.chunks_exact(4).fold(0u32, |sum, w| sum.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                as u64
        }
        "/increment" => COUNT.fetch_add(1, Relaxed) + 1,
        "/string" => std::str::from_utf8(&body).map(|s| s.len() as u64).unwrap_or(0),
        _ => body.iter().fold(0u32, |sum, b| sum.wrapping_add(*b as u32)) as u64,
    };
    Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read(&mut [0u8; 1]);
            let _ = closed_tx.send(());
        });
        loop {
            tokio::select! {
                _ = &mut closed => return Ok(()),
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    stream.set_nodelay(true)?;
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, hyper::service::service_fn(serve))
                            .await;
                    });
                }
            }
        }
    })
}
