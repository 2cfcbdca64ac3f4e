//! Which component answers a request: by `Host` (when a route names one) and the longest
//! matching path prefix.

use membrane_manifest::normalize_host;
use std::sync::Arc;

/// One `[[route]]`: an optional host, a path prefix, and the component behind it. The
/// prefix and component are shared, as every request's access log line and server span
/// carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: Option<String>,
    pub prefix: Arc<str>,
    pub component: Arc<str>,
    /// Its requests' server span names, and their attributes naming the route.
    span_names: membrane_telemetry::RouteNames,
    span_attributes: membrane_telemetry::PreparedOnce,
}

impl Route {
    pub fn new(host: Option<String>, prefix: &str, component: &str) -> Route {
        Route {
            host,
            prefix: prefix.into(),
            component: component.into(),
            span_names: membrane_telemetry::RouteNames::default(),
            span_attributes: membrane_telemetry::PreparedOnce::default(),
        }
    }

    /// The name of the server span of a request with `method` to this route.
    pub fn span_name(&self, method: &http::Method) -> std::borrow::Cow<'static, str> {
        self.span_names.of(method, &self.prefix)
    }

    /// `http.route` and `membrane.component` of its requests' server spans.
    pub fn span_attributes(&self) -> &'static membrane_telemetry::Prepared {
        use membrane_telemetry::KeyValue;
        self.span_attributes.of(|| {
            vec![
                KeyValue::new("http.route", self.prefix.to_string()),
                KeyValue::new("membrane.component", self.component.to_string()),
            ]
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Router {
        for route in &mut routes {
            // The manifest refuses a host that does not normalize; one that slips through
            // (a router built by hand) keeps its spelling and matches no request.
            route.host = route.host.take().map(|h| normalize_host(&h).unwrap_or(h));
            if &*route.prefix != "/" {
                route.prefix = route.prefix.trim_end_matches('/').into();
            }
        }
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `host` (a `Host` header, port allowed, compared as DNS compares names)
    /// and `path`. A route with a host beats one without; among those, the longest prefix
    /// wins. A prefix matches whole segments only: `/api` matches `/api` and `/api/x`, not
    /// `/apix`. A host that is not a valid name matches only the routes without a host.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let host = host.and_then(|h| normalize_host(h).ok());
        self.routes
            .iter()
            .filter(|r| r.host.is_none() || r.host == host)
            .filter(|r| {
                &*r.prefix == "/"
                    || path == &*r.prefix
                    || path.strip_prefix(&*r.prefix).is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|r| (r.host.is_some(), r.prefix.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let route =
            |host: Option<&str>, prefix: &str, component: &str| Route::new(host.map(str::to_string), prefix, component);
        Router::new(vec![
            route(None, "/", "site"),
            route(None, "/api", "api"),
            route(None, "/api/admin/", "admin"),
            route(Some("Notes.localhost"), "/", "notes"),
        ])
    }

    #[test]
    fn host_then_longest_prefix_wins() {
        let r = router();
        let at = |host: Option<&str>, path: &str| r.route(host, path).map(|r| &*r.component);
        assert_eq!(at(None, "/"), Some("site"));
        assert_eq!(at(None, "/api"), Some("api"));
        assert_eq!(at(None, "/api/x"), Some("api"));
        assert_eq!(at(None, "/apix"), Some("site"));
        assert_eq!(at(None, "/api/admin/users"), Some("admin"));
        assert_eq!(at(Some("notes.localhost:8080"), "/api"), Some("notes"));
        assert_eq!(at(Some("other.localhost"), "/api"), Some("api"));
        assert_eq!(at(Some("NOTES.localhost.:8080"), "/api"), Some("notes"));
        assert_eq!(at(Some("notes..localhost"), "/api"), Some("api"));
        assert_eq!(Router::new(vec![]).route(None, "/"), None);
    }
}
