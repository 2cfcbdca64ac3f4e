//! Outbound HTTP through the membrane: every request a guest sends through
//! `wasi:http/outgoing-handler` is checked against its `grants.outbound_http`, the name is
//! resolved here in the host, and only vetted addresses are connected to. Loopback,
//! private, link-local and metadata addresses are refused unless a grant names the IP.

mod connect;

use crate::audit::Audit;
use membrane_manifest::{OutboundRule, is_restricted};
use membrane_telemetry::{KeyValue, Span, SpanKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a name lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The outbound policy of one sandbox.
#[derive(Clone)]
pub struct Outbound {
    component: Arc<str>,
    rules: Arc<[OutboundRule]>,
    audit: Audit,
    /// Guest-set timeouts are clamped to this (the component's wall-clock limit).
    max_timeout: Option<Duration>,
    /// The trace the sandbox's calls are part of, when tracing is on.
    pub(crate) trace: Option<membrane_telemetry::Context>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<HyperOutgoingBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl Outbound {
    /// The component whose requests these are, and where its refusals are audited: shared
    /// with the component's other host interfaces.
    pub(crate) fn component(&self) -> (&str, &Audit) {
        (&self.component, &self.audit)
    }

    pub fn new(component: Arc<str>, rules: &[OutboundRule], audit: Audit, max_timeout: Option<Duration>) -> Self {
        Outbound { component, rules: rules.into(), audit, max_timeout, trace: None }
    }

    fn deny(&self, what: &str, why: String) -> HttpError {
        if self.audit.record_in(self.trace.as_ref(), &self.component, "denied", what, &why) {
            tracing::warn!(component = %self.component, request = what, "outbound HTTP denied: {why}");
        }
        HttpError::HttpRequestDenied
    }

    /// Checks the request against the grants and resolves its host to an address it may
    /// reach. For plain HTTP the request is pointed at that address, so no second lookup
    /// can lead elsewhere.
    async fn vet(&self, request: &mut http::Request<WasiBody>) -> Result<SocketAddr, HttpError> {
        let uri = request.uri().clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let what =
            format!("{} {}://{host}:{port}{}", request.method(), if https { "https" } else { "http" }, uri.path());
        let Some(rule) = self.rules.iter().find(|r| r.allows(https, &host, port)) else {
            let origin = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => host.clone(),
            };
            let scheme = if https { "https" } else { "http" };
            return Err(self.deny(
                &what,
                format!(
                    "no grants.outbound_http rule matches; add \"{scheme}://{origin}:{port}\" to grants.outbound_http of [component.{}] (or --allow-http)",
                    self.component
                ),
            ));
        };
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(membrane_manifest::canonical(ip), port)],
            Err(_) => match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                // A name that does not resolve is a DNS error, as wasmtime's own client and
                // its WASI HTTP test programs have it.
                Ok(Err(error)) => {
                    return Err(HttpError::DnsError { rcode: Some(error.to_string()), info_code: None });
                }
                Err(_) => return Err(HttpError::DnsTimeout),
            },
        };
        let Some(addr) = addrs.iter().copied().find(|a| !is_restricted(a.ip()) || rule.names_ip(a.ip())) else {
            let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            self.deny(
                &what,
                format!(
                    "{host} resolves to {}, a loopback, private or link-local address, which only a grant naming the IP literally reaches",
                    ips.join(", ")
                ),
            );
            return Err(HttpError::DestinationIpProhibited);
        };
        let how = format!("connecting to {addr} under {rule}");
        self.audit.record_in(self.trace.as_ref(), &self.component, "granted", &what, &how);
        Ok(addr)
    }

    /// The guest's timeouts, no longer than the component's own wall-clock limit.
    fn clamp(&self, options: Option<RequestOptions>) -> Option<RequestOptions> {
        let Some(max) = self.max_timeout else {
            return options;
        };
        let clamp = |t: Option<Duration>| Some(t.map_or(max, |t| t.min(max)));
        let mut options = options.unwrap_or_default();
        options.connect_timeout = clamp(options.connect_timeout);
        options.first_byte_timeout = clamp(options.first_byte_timeout);
        options.between_bytes_timeout = clamp(options.between_bytes_timeout);
        Some(options)
    }
}

/// Headers a guest may not set on any request or response it builds: wasmtime's list of
/// connection-level headers, and `te` and `trailer`, which would let a guest change how
/// the host frames a message it then sends on.
pub fn is_forbidden_header(name: &http::HeaderName) -> bool {
    wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
        || name == http::header::TE
        || name == http::header::TRAILER
}

impl WasiHttpHooks for Outbound {
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        std::sync::Arc::new(is_forbidden_header)
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let policy = self.clone();
        let mut span = client_span(self.trace.as_ref(), &request);
        // The next service joins the trace; a guest cannot set these headers itself to
        // forge another request's context, since the host writes them last.
        if let Some(cx) = span.context() {
            membrane_telemetry::inject(&cx, request.headers_mut());
        }
        Box::new(async move {
            let sent = async {
                let addr = policy.vet(&mut request).await?;
                let https = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
                let tls_name = https.then(|| request.uri().host().unwrap_or_default().to_string());
                connect::send(request, addr, tls_name, policy.clamp(options)).await
            }
            .await;
            match &sent {
                Ok((response, _)) => {
                    let status = i64::from(response.status().as_u16());
                    span.set(|| KeyValue::new("http.response.status_code", status));
                    if status >= 500 {
                        span.fail(|| format!("status {status}"));
                    }
                }
                Err(error) => {
                    if matches!(error, HttpError::HttpRequestDenied | HttpError::DestinationIpProhibited) {
                        span.event("denied", || vec![KeyValue::new("error.type", format!("{error:?}"))]);
                    }
                    span.fail(|| format!("{error:?}"));
                }
            }
            sent
        })
    }
}

/// The client span of an outbound request (HTTP semantic conventions), under the trace the
/// sandbox is part of; nothing when tracing is off.
fn client_span(parent: Option<&membrane_telemetry::Context>, request: &http::Request<WasiBody>) -> Span {
    let Some(parent) = parent else { return Span::default() };
    let method = request.method().to_string();
    let uri = request.uri();
    Span::start(method.clone(), SpanKind::Client, Some(parent), || {
        vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("server.address", uri.host().unwrap_or_default().to_string()),
            KeyValue::new(
                "url.full",
                format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str()),
                    uri.path()
                ),
            ),
        ]
    })
}
