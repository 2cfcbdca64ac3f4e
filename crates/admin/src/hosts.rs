//! The names the admin listener answers to. A web page can point a name it owns at
//! 127.0.0.1 (DNS rebinding) and read whatever answers there as its own origin; the
//! browser still sends that name as `Host`, so refusing names other than the listener's
//! own keeps `/api/app` and `/api/audit` out of such a page's reach.

use crate::AdminState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use membrane_manifest::{InvalidHost, canonical, normalize_authority, normalize_host};
use std::net::{IpAddr, SocketAddr};

/// Which `Host` headers the admin listener answers: an IP literal of the listener's own
/// address (any, when it listens on all addresses), `localhost`, or a configured name; a
/// port, when given, must be the listener's.
#[derive(Debug, Clone, Default)]
pub struct AdminHosts {
    /// The listener's bound address; `None` in-process, where any IP literal and port pass.
    pub listener: Option<SocketAddr>,
    names: Vec<String>,
}

impl AdminHosts {
    /// `names` (`--admin-host`), for an admin API reached through a name of its own
    /// (a proxy, a DNS name of the node).
    pub fn new(names: &[String]) -> Result<AdminHosts, InvalidHost> {
        let names = names.iter().map(|n| normalize_host(n)).collect::<Result<_, _>>()?;
        Ok(AdminHosts { listener: None, names })
    }

    /// Whether a request with this `Host` header value is for this listener.
    pub fn allows(&self, host: &str) -> bool {
        let Ok((name, port)) = normalize_authority(host) else {
            return false;
        };
        if let (Some(port), Some(listener)) = (port, self.listener)
            && port != listener.port()
        {
            return false;
        }
        // No page can rebind an IP literal: a browser sends the name it resolved, so an
        // address in `Host` was typed by whoever is asking.
        match (name.parse::<IpAddr>(), self.listener) {
            (Ok(_), None) => true,
            (Ok(_), Some(listener)) if listener.ip().is_unspecified() => true,
            (Ok(ip), Some(listener)) => canonical(ip) == canonical(listener.ip()),
            (Err(_), _) => name == "localhost" || self.names.contains(&name),
        }
    }
}

/// Refuses (421) a request whose `Host` is not this listener's, before any endpoint runs.
/// A request without `Host` (no browser sends one) is answered.
pub(crate) async fn check(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    match (first, second) {
        (None, _) => next.run(request).await,
        (Some(host), None) if host.to_str().is_ok_and(|h| state.hosts.allows(h)) => next.run(request).await,
        (Some(host), _) => ApiError::Misdirected(String::from_utf8_lossy(host.as_bytes()).into_owned()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_own_address_and_names_pass_and_others_do_not() {
        let mut hosts = AdminHosts::new(&["Admin.Example.com".into()]).unwrap();
        hosts.listener = Some("127.0.0.1:9900".parse().unwrap());
        for ok in ["127.0.0.1:9900", "127.0.0.1", "localhost:9900", "LOCALHOST.", "admin.example.com.:9900"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in ["evil.example:9900", "127.0.0.1:80", "10.0.0.1:9900", "localhost.evil.example", "", "a b"] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        hosts.listener = Some("0.0.0.0:9900".parse().unwrap());
        assert!(hosts.allows("10.0.0.1:9900"));
        assert!(!hosts.allows("rebound.example:9900"));
    }
}
