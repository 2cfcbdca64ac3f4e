//! Sending a vetted request: connect to the address the policy chose (never a second name
//! lookup), speak TLS with the request's host as the server name when the scheme is https,
//! and honour the guest's (clamped) timeouts. Follows wasmtime-wasi-http's
//! `default_send_request`, which connects by name and so cannot be pinned to an address.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// No guest timeout given and no component limit: the most a connection may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The TLS client configuration, built once: the Mozilla roots from `webpki-roots`.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

pub type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>);

/// Sends `request` to `addr`; `tls_name` is the host to verify for https, `None` for http.
pub async fn send(
    mut request: http::Request<WasiBody>,
    addr: SocketAddr,
    tls_name: Option<String>,
    options: Option<RequestOptions>,
) -> Result<Sent, HttpError> {
    let timeout = |t: Option<Duration>| t.unwrap_or(DEFAULT_TIMEOUT);
    let connect_timeout = timeout(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = timeout(options.and_then(|o| o.first_byte_timeout));
    let between_bytes = timeout(options.and_then(|o| o.between_bytes_timeout)).max(Duration::from_nanos(1));

    let tcp = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(HttpError::Connect(error)),
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match tls_name {
        None => Box::new(tcp),
        Some(host) => {
            let name = rustls::pki_types::ServerName::try_from(host)?;
            let tls = tokio_rustls::TlsConnector::from(tls_config());
            match tokio::time::timeout(connect_timeout, tls.connect(name, tcp)).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(error)) => return Err(HttpError::Tls(error)),
                Err(_) => return Err(HttpError::ConnectionTimeout),
            }
        }
    };
    let (mut sender, connection) =
        tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;

    // On the wire the target is the path alone; scheme and authority are for proxies.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() =
        http::Uri::builder().path_and_query(path).build().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let connection = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        use http_body_util::BodyExt;
        TimedBody { incoming, timeout: between_bytes, sleep: Box::pin(tokio::time::sleep(between_bytes)) }
            .boxed_unsync()
    });
    let io = async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if error.is_timeout() => Err(HttpError::HttpResponseTimeout),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(io)))
}

/// A response body that fails when no data arrives for `timeout`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + self.timeout;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
