//! What the read endpoints return: plain serializable snapshots of the running version.

use membrane_manifest::{Grants, Limits, LinkSpec, RestartPolicy, RouteSpec, TenantSpec};
use membrane_runtime::App;
use membrane_runtime::AuditEvent;
use membrane_runtime::ComponentConfig;
use membrane_runtime::ComponentSnapshot;
use membrane_runtime::{Deployment, RevisionInfo};
use membrane_runtime::{LinkFunction, LinkStatsEntry};
use serde::Serialize;
use std::collections::BTreeMap;

/// `GET /api/app`: the app as it runs, each component with its membrane.
#[derive(Debug, Serialize)]
pub struct AppView {
    pub name: String,
    /// The app version serving now; it changes with every swap.
    pub generation: u64,
    pub entry: Option<String>,
    pub components: BTreeMap<String, ComponentView>,
    pub links: Vec<LinkView>,
    pub routes: Vec<RouteSpec>,
    pub tenants: BTreeMap<String, TenantSpec>,
}

/// A link as the manifest has it, and the path each of its functions takes (typed or
/// dynamic; see the runtime's `link::typed`).
#[derive(Debug, Serialize)]
pub struct LinkView {
    #[serde(flatten)]
    pub spec: LinkSpec,
    pub functions: Vec<LinkFunction>,
}

#[derive(Debug, Serialize)]
pub struct ComponentView {
    /// The build running now.
    #[serde(flatten)]
    pub revision: RevisionInfo,
    pub instances: String,
    pub grants: Grants,
    pub limits: Limits,
    pub restart: RestartPolicy,
    /// The component's wasi:config keys; secrets (from env or files) show as `<redacted>`.
    pub config: Option<ComponentConfig>,
    /// Interfaces it imports and exports, as named in its binary.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Earlier builds a rollback returns to, newest last.
    pub history: Vec<RevisionInfo>,
}

impl AppView {
    pub fn of(deployment: &Deployment) -> AppView {
        let app = deployment.current();
        let engine = app.engine().engine().clone();
        let components = app
            .spec
            .components
            .iter()
            .map(|(name, spec)| {
                let ty = app.instances(name).expect("spec names components").pre().component().component_type();
                let view = ComponentView {
                    revision: (&app.revisions()[name]).into(),
                    instances: spec.instances.to_string(),
                    grants: spec.grants.clone(),
                    limits: spec.limits.clone(),
                    restart: spec.restart,
                    config: app.config(name).cloned(),
                    imports: ty.imports(&engine).map(|(n, _)| n.to_string()).collect(),
                    exports: ty.exports(&engine).map(|(n, _)| n.to_string()).collect(),
                    history: deployment.history(name),
                };
                (name.clone(), view)
            })
            .collect();
        AppView {
            name: app.spec.app.name.clone(),
            generation: app.generation(),
            entry: app.spec.app.entry.clone(),
            components,
            links: app
                .spec
                .links
                .iter()
                .zip(app.link_functions())
                .map(|(spec, functions)| LinkView { spec: spec.clone(), functions })
                .collect(),
            routes: app.spec.routes.clone(),
            tenants: app.spec.tenants.clone(),
        }
    }
}

/// `GET /api/stats`: counters of every component, link and route.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub generation: u64,
    pub components: BTreeMap<String, ComponentSnapshot>,
    pub links: Vec<LinkStatsEntry>,
    /// Requests answered by the HTTP server, by route and status (empty when not serving).
    pub requests: Vec<RequestCount>,
}

#[derive(Debug, Serialize)]
pub struct RequestCount {
    pub route: String,
    pub status: u16,
    pub count: u64,
}

impl StatsView {
    pub fn of(app: &App, requests: BTreeMap<(String, u16), u64>) -> StatsView {
        let stats = app.stats();
        StatsView {
            generation: app.generation(),
            components: stats.components,
            links: stats.links,
            requests: requests
                .into_iter()
                .map(|((route, status), count)| RequestCount { route, status, count })
                .collect(),
        }
    }
}

/// `GET /api/audit?since=N`: events after N, oldest first, and the number to ask from next.
#[derive(Debug, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: u64,
}
