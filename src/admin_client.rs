//! The client side of the admin API, for `membrane status`, `swap`, `rollback` and
//! `restart`: plain HTTP/1.1 to the admin listener, the token read from its file.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use membrane_admin::token;
use std::path::PathBuf;

/// Which admin listener to talk to, and with which token.
#[derive(Args, Debug)]
pub struct AdminFlags {
    /// The admin listener of a running `membrane serve`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9900")]
    pub admin: String,
    /// The token file [default: $MEMBRANE_ADMIN_TOKEN, else the file `serve` wrote for
    /// the admin port].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// A refusal from the admin API: the status and its message.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {status}: {message}")]
pub struct Refused {
    pub url: String,
    pub status: u16,
    pub message: String,
}

/// The admin listener could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{url}: cannot reach the admin API ({reason}); is `membrane serve` running with --admin-listen there?")]
pub struct Unreachable {
    pub url: String,
    pub reason: String,
}

impl AdminFlags {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.token_file {
            return token::read(path).with_context(|| format!("--token-file {}: cannot read a token", path.display()));
        }
        if let Ok(t) = std::env::var(token::TOKEN_ENV)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_string());
        }
        let uri: hyper::Uri = self.admin.parse().with_context(|| format!("--admin {}: not a URL", self.admin))?;
        let port = uri.port_u16().unwrap_or(80);
        let path = token::default_path(port);
        token::read(&path).with_context(|| {
            format!("no admin token: {} cannot be read; pass --token-file or set {}", path.display(), token::TOKEN_ENV)
        })
    }

    /// GET `path`, as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.send(hyper::Method::GET, path, None, None)
    }

    /// POST `path` with the token, and `body` (bytes and content type) if any.
    pub fn post(&self, path: &str, body: Option<(Vec<u8>, &'static str)>) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        self.send(hyper::Method::POST, path, Some(token), body)
    }

    fn send(
        &self,
        method: hyper::Method,
        path: &str,
        token: Option<String>,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.admin.trim_end_matches('/'));
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (bytes, content_type) = body.unwrap_or((Vec::new(), "application/octet-stream"));
        let request = request
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(bytes)))
            .with_context(|| format!("--admin {}: not a usable URL", self.admin))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let response =
                client.request(request).await.map_err(|e| Unreachable { url: url.clone(), reason: format!("{e}") })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Unreachable { url: url.clone(), reason: format!("reading the response: {e}") })?;
            let value: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
            if !status.is_success() {
                let message = value.get("error").and_then(|e| e.as_str()).unwrap_or("no details").to_string();
                return Err(Refused { url: url.clone(), status: status.as_u16(), message }.into());
            }
            Ok(value)
        })
    }
}
