//! A running app: every component with its own instances behind its membrane, and the
//! links between them, built from a checked `membrane.toml`.

mod build;
pub mod check;
mod error;
mod load;

pub use build::Build;

pub use error::{AppError, NotReady};
pub use load::Preloaded;

use crate::audit::Audit;
use crate::command::{self, RunError};
use crate::engine::MembraneEngine;
use crate::file::ComponentFile;
use crate::invocation::DynamicCall;
use crate::link::typed::Crossing;
use crate::link::{Components, Link, LinkedFunc};
use crate::pool::{CallError, Pool};
use crate::routes::Router;
use crate::sandbox::CallChain;
use crate::sandbox::SandboxState;
use crate::state::{ComponentConfig, KeyValue, StateOptions};
use crate::stats::{ComponentSnapshot, LinkSnapshot};
use membrane_manifest::{AppSpec, Isolation};
use membrane_telemetry::{KeyValue as Attribute, Span, SpanKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::AsContextMut;
use wasmtime::component::InstancePre;
use wasmtime::component::Val;
use wasmtime::component::types::ComponentItem;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// The components and links of a running app, as links reach them.
pub struct AppInner {
    components: Vec<Arc<Pool>>,
    index: BTreeMap<String, usize>,
    links: Vec<Arc<Link<AppInner>>>,
}

impl Components for AppInner {
    fn instances(&self, index: usize) -> &Arc<Pool> {
        &self.components[index]
    }
}

/// A loaded, checked and linked app: one immutable version of it. A hot swap builds a
/// new `App` beside the running one and publishes it (see [`crate::deploy`]).
pub struct App {
    pub spec: AppSpec,
    engine: MembraneEngine,
    audit: Audit,
    inner: Arc<AppInner>,
    router: Router,
    handlers: BTreeMap<String, HttpHandler>,
    revisions: BTreeMap<String, Revision>,
    generation: u64,
    keyvalue: Option<Arc<KeyValue>>,
    configs: BTreeMap<String, ComponentConfig>,
    /// How the key-value store was found, for the versions that follow this one.
    state: StateOptions,
}

/// What a routed component serves HTTP with: WASI 0.2's `wasi:http/incoming-handler` or
/// WASI 0.3's `wasi:http/handler`, ready to instantiate.
#[derive(Clone)]
pub enum HttpHandler {
    P2(ProxyPre<SandboxState>),
    P3(ServicePre<SandboxState>),
}

impl HttpHandler {
    /// The handler `pre` exports: WASI 0.3's when it has one, else WASI 0.2's, else the
    /// reason it has neither.
    pub fn new(pre: &InstancePre<SandboxState>) -> wasmtime::Result<HttpHandler> {
        match ServicePre::new(pre.clone()) {
            Ok(p3) => Ok(HttpHandler::P3(p3)),
            Err(_) => ProxyPre::new(pre.clone()).map(HttpHandler::P2),
        }
    }
}

/// Which build of a component an app version runs.
#[derive(Debug, Clone)]
pub struct Revision {
    /// 1 for the first build a process loaded; one more for each different build since.
    pub number: u64,
    pub file: Arc<ComponentFile>,
    /// Where it came from: the manifest's path, or `upload` for bytes sent to the admin API.
    pub origin: String,
}

impl Revision {
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.file.sha256_hex())
    }
}

impl App {
    /// Which version of the app this is, unique in the process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The build each component runs.
    pub fn revisions(&self) -> &BTreeMap<String, Revision> {
        &self.revisions
    }

    /// The app's `[[route]]`s.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The HTTP handler of a routed component, ready to instantiate.
    pub fn http_handler(&self, component: &str) -> Option<&HttpHandler> {
        self.handlers.get(component)
    }

    fn link_stats(&self, from: &str, import: &str, to: &str) -> Option<Arc<crate::stats::LinkStats>> {
        self.inner
            .links
            .iter()
            .find(|l| *l.consumer == *from && l.import == import && *l.provider_name == *to)
            .map(|l| l.stats.clone())
    }

    /// Whether the app can serve: its components are compiled (they are, once loaded) and
    /// its key-value store, if it has one, answers.
    pub async fn ready(&self) -> Result<(), NotReady> {
        match &self.keyvalue {
            Some(kv) => kv.ready().await.map_err(|cause| NotReady { location: kv.location.clone(), cause }),
            None => Ok(()),
        }
    }

    /// The app's key-value store, if a component holds a bucket grant.
    pub fn keyvalue(&self) -> Option<&Arc<KeyValue>> {
        self.keyvalue.as_ref()
    }

    /// The resolved config of `component`; its Debug and Serialize redact secrets.
    pub fn config(&self, component: &str) -> Option<&ComponentConfig> {
        self.configs.get(component)
    }

    pub fn engine(&self) -> &MembraneEngine {
        &self.engine
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The instances of `component`, for ingress that instantiates it per request.
    pub fn instances(&self, component: &str) -> Option<&Arc<Pool>> {
        self.inner.index.get(component).map(|i| &self.inner.components[*i])
    }

    /// Runs the app's entry component as a command with `args` (program name first).
    pub async fn run_entry(&self, args: &[String]) -> Result<i32, AppError> {
        let entry = self
            .spec
            .app
            .entry
            .as_deref()
            .ok_or_else(|| AppError::NoEntry { file: self.spec.file.display().to_string() })?;
        let instances = self.instances(entry).expect("the entry was checked");
        let run_error = |e| AppError::Run(Box::new(e));
        let mut store = instances.new_store(args).map_err(|error| {
            run_error(match error {
                CallError::Fault(fault) => RunError::Fault(fault),
                other => RunError::Fault(instances.fault(crate::fault::FaultKind::Host(other.to_string()))),
            })
        })?;
        // One trace for the run: the entry's calls across links and out of the app are in it.
        let mut run = Span::start(format!("run {}", self.spec.app.name), SpanKind::Internal, None, || {
            vec![
                Attribute::new("membrane.app", self.spec.app.name.clone()),
                Attribute::new("membrane.component", entry.to_string()),
            ]
        });
        store.data_mut().join_trace(run.context());
        let status = command::execute(instances, store).await;
        match &status {
            Ok(code) => run.set(|| Attribute::new("process.exit.code", i64::from(*code))),
            Err(error) => run.fail(|| error.to_string()),
        }
        status.map_err(run_error)
    }

    /// Calls `function` of `interface` exported by `component`, as the host: the call goes
    /// through the component's instance mode and supervision, but through no link.
    pub async fn call(
        &self,
        component: &str,
        interface: &str,
        function: &str,
        params: &[Val],
    ) -> Result<Vec<Val>, CallError> {
        let no_export =
            || CallError::NoSuchExport { component: component.to_string(), export: format!("{interface}#{function}") };
        let instances = self.instances(component).ok_or_else(no_export)?;
        let c = instances.pre().component();
        let iface = c.get_export_index(None, interface).ok_or_else(no_export)?;
        let func = c.get_export_index(Some(&iface), function).ok_or_else(no_export)?;
        let Some(ComponentItem::ComponentFunc(ty)) =
            c.component_type().get_export(self.engine.engine(), interface).and_then(|e| match e.ty {
                ComponentItem::ComponentInstance(i) => i.get_export(self.engine.engine(), function).map(|f| f.ty),
                _ => None,
            })
        else {
            return Err(no_export());
        };
        let call = DynamicCall::new(params.to_vec(), ty.results().len());
        let chain: CallChain = Arc::new([]);
        let (_, call) = instances.call(&chain, None, func, None, None, call).await?;
        Ok(call.results)
    }

    /// Calls `function` through the link that serves `consumer`'s `import`, as if
    /// `consumer` had called it, on the dynamic path: with the link's policy, timeout and
    /// circuit, or in a store of `consumer`'s own when the link has isolation = "component".
    pub async fn call_link(
        &self,
        consumer: &str,
        import: &str,
        function: &str,
        params: &[Val],
    ) -> wasmtime::Result<Vec<Val>> {
        let link = self
            .inner
            .links
            .iter()
            .find(|l| *l.consumer == *consumer && crate::wit_compat::same_interface(&l.import, import))
            .ok_or_else(|| wasmtime::format_err!("no link serves {import} of `{consumer}`"))?;
        let func = link
            .funcs
            .iter()
            .position(|f| f.name == function)
            .ok_or_else(|| wasmtime::format_err!("{import} has no function {function}"))?;
        let instances = self.instances(consumer).expect("links name known components");
        let mut store = instances.new_store(&[consumer.to_string()])?;
        let mut results = vec![Val::Bool(false); link.funcs[func].results];
        let mut store = store.as_context_mut();
        match link.isolation {
            Isolation::Store => link.forward(&mut store, func, params, &mut results).await?,
            Isolation::Component => {
                link.call_in_store(&mut store, func, &mut crate::link::ValCall { params, results: &mut results })
                    .await?
            }
        }
        Ok(results)
    }

    /// Installs a chaos experiment's `fault` on every link from `consumer` to `provider`;
    /// returns how many links took it. Used by `membrane chaos` only.
    pub fn inject_link_fault(&self, consumer: &str, provider: &str, fault: Arc<dyn crate::link::LinkFault>) -> usize {
        let links = self.inner.links.iter().filter(|l| *l.consumer == *consumer && *l.provider_name == *provider);
        links.filter(|l| l.inject(fault.clone())).count()
    }

    /// Restarts a component: a failed singleton is cleared and pooled instances dropped.
    pub async fn restart(&self, component: &str) -> bool {
        match self.instances(component) {
            Some(instances) => {
                instances.reset().await;
                self.audit.record(component, "restart", "operator", "cleared");
                true
            }
            None => false,
        }
    }

    /// How each function of each link (in manifest order) crosses it.
    pub fn link_functions(&self) -> Vec<Vec<LinkFunction>> {
        let function = |f: &LinkedFunc| LinkFunction { name: f.name.clone(), crossing: f.crossing.clone() };
        self.inner.links.iter().map(|l| l.funcs.iter().map(function).collect()).collect()
    }

    /// Each link's latency over the last five minutes, in manifest order.
    pub fn link_latency(&self) -> Vec<LinkLatency> {
        let latency = |l: &Arc<Link<AppInner>>| LinkLatency {
            from: l.consumer.to_string(),
            import: l.import.clone(),
            to: l.provider_name.to_string(),
            window_s: crate::latency::WINDOW_SECS,
            windows: l.stats.recent_latency(),
        };
        self.inner.links.iter().map(latency).collect()
    }

    /// Counters of every component and link.
    pub fn stats(&self) -> AppStats {
        AppStats {
            components: self.inner.components.iter().map(|c| (c.name().to_string(), c.stats.snapshot())).collect(),
            links: self
                .inner
                .links
                .iter()
                .map(|l| LinkStatsEntry {
                    from: l.consumer.to_string(),
                    import: l.import.clone(),
                    to: l.provider_name.to_string(),
                    circuit: l.circuit_state(),
                    stats: l.stats.snapshot(),
                })
                .collect(),
        }
    }
}

/// One link's latency over the last five minutes.
#[derive(Debug, Clone, Serialize)]
pub struct LinkLatency {
    pub from: String,
    pub import: String,
    pub to: String,
    /// Seconds each window covers.
    pub window_s: u64,
    /// Oldest first, the last one still filling.
    pub windows: Vec<crate::latency::LatencyWindow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppStats {
    pub components: BTreeMap<String, ComponentSnapshot>,
    pub links: Vec<LinkStatsEntry>,
}

/// One function of a link and the path its calls take.
#[derive(Debug, Clone, Serialize)]
pub struct LinkFunction {
    pub name: String,
    #[serde(flatten)]
    pub crossing: Crossing,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkStatsEntry {
    pub from: String,
    pub import: String,
    pub to: String,
    pub circuit: Option<&'static str>,
    #[serde(flatten)]
    pub stats: LinkSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineSettings;

    fn spec(app_section: &str) -> AppSpec {
        let text = format!("[app]\nname = \"slots\"\n{app_section}\n[component.c]\nsource = \"c.wasm\"\n");
        AppSpec::parse(std::path::Path::new("membrane.toml"), &text).unwrap()
    }

    #[test]
    fn the_pool_has_the_slots_the_manifest_asks_for() {
        let slots = |spec: &AppSpec| EngineSettings::for_app(spec, false).pooling.map(|p| p.instances);
        assert_eq!(slots(&spec("")), Some(crate::engine::APP_INSTANCE_SLOTS));
        assert_eq!(slots(&spec("max_instances = 10000")), Some(10_000));
        // And an engine with that many slots can be made.
        MembraneEngine::new(EngineSettings::for_app(&spec("max_instances = 10000"), false)).unwrap();
    }
}
