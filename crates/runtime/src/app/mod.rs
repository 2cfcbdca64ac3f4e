//! A running app: every component with its own instances behind its membrane, and the
//! links between them, built from a checked `membrane.toml`.

pub mod check;
mod error;
mod load;

pub use error::{AppError, NotReady};
use load::slot_shares;
pub use load::{LoadedComponent, Preloaded, check_app, load_components, load_components_with};

use crate::audit::Audit;
use crate::cache::CompileCache;
use crate::command::{self, RunError};
use crate::engine::{EngineSettings, MembraneEngine, Pooling};
use crate::invocation::DynamicCall;
use crate::link::typed::{self, Crossing};
use crate::link::{Components, Link, LinkedFunc, Policy};
use crate::load::ComponentFile;
use crate::pool::{CallError, Pool};
use crate::routes::{Route, Router};
use crate::sandbox::CallChain;
use crate::sandbox::SandboxState;
use crate::state::{ComponentConfig, ComponentState, KeyValue, KeyValueAccess, StateOptions};
use crate::stats::{ComponentSnapshot, ComponentStats, LinkSnapshot};
use crate::values::holds_handles;
use membrane_manifest::{AppSpec, OnTrap};
use membrane_registry::Sources;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use wasmtime::AsContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, ResourceType, Val};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The engine settings an app needs: fuel counting if any component has a fuel limit,
/// and a stack as large as the largest limit (the stack is engine-wide in wasmtime).
pub fn engine_settings(spec: &AppSpec) -> EngineSettings {
    let components = spec.components.values();
    EngineSettings {
        fuel: components.clone().any(|c| c.limits.fuel.is_some()),
        max_wasm_stack: components
            .clone()
            .map(|c| c.limits.wasm_stack.bytes() as usize)
            .max()
            .unwrap_or(EngineSettings::default().max_wasm_stack),
        pooling: Some(Pooling {
            instances: spec.app.max_instances.unwrap_or(APP_INSTANCE_SLOTS),
            max_memory: components.clone().map(|c| c.limits.memory.bytes() as usize).max().unwrap_or(0),
            table_elements: components.map(|c| c.limits.table_elements as usize).max().unwrap_or(0),
        }),
    }
}

/// Instance slots an app's engine preallocates (virtual memory only until used) unless
/// its manifest sets `[app] max_instances`.
pub const APP_INSTANCE_SLOTS: u32 = 1000;

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
    handlers: BTreeMap<String, ProxyPre<SandboxState>>,
    revisions: BTreeMap<String, Revision>,
    generation: u64,
    store: Option<Arc<KeyValue>>,
    configs: BTreeMap<String, ComponentConfig>,
    /// How the store was found, for the versions that follow this one.
    state: StateOptions,
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

/// Proxy handle types must differ between links, and between apps in one process.
static NEXT_RESOURCE_TYPE: AtomicU32 = AtomicU32::new(1);

/// App versions built in this process; the number tells versions apart.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// What an app version is built from besides its manifest.
#[derive(Default)]
pub struct Build<'a> {
    /// Components already read and compiled.
    pub preloaded: Preloaded,
    /// Where preloaded components came from, when not from the manifest's `source`.
    pub origins: BTreeMap<String, String>,
    /// The version this one replaces: revision numbers continue from it and counters carry
    /// over, so a swap does not reset what the admin API shows.
    pub previous: Option<&'a App>,
    /// How to find the key-value store, when there is no previous version to take it from.
    pub state: StateOptions,
    /// Where `oci://` sources come from.
    pub sources: Sources,
}

impl App {
    /// Loads every component, checks the whole app and links it. Nothing runs yet. A
    /// key-value store, if any component needs one, is opened with the default options.
    pub fn load(spec: AppSpec, engine: &MembraneEngine, cache: &CompileCache, audit: Audit) -> Result<App, AppError> {
        App::build(spec, engine, cache, audit, Build::default())
    }

    /// [`App::load`], with the key-value store found through `state`.
    pub fn load_with(
        spec: AppSpec,
        engine: &MembraneEngine,
        cache: &CompileCache,
        audit: Audit,
        state: &StateOptions,
    ) -> Result<App, AppError> {
        App::build(spec, engine, cache, audit, Build { state: state.clone(), ..Build::default() })
    }

    /// As [`App::load`], from what `build` already holds.
    pub fn build(
        spec: AppSpec,
        engine: &MembraneEngine,
        cache: &CompileCache,
        audit: Audit,
        build: Build<'_>,
    ) -> Result<App, AppError> {
        // The engine outlives versions (a swap or reload keeps it): a version that needs
        // what it lacks is refused here, before anything of it runs.
        engine
            .settings()
            .covers(&engine_settings(&spec))
            .map_err(|needs| AppError::Engine { file: spec.file.display().to_string(), needs })?;
        if let Some(previous) = build.previous
            && previous.spec.tenants != spec.tenants
        {
            return Err(AppError::TenantsChanged { file: spec.file.display().to_string() });
        }
        let mut configs = BTreeMap::new();
        for (name, component) in &spec.components {
            configs.insert(name.clone(), ComponentConfig::resolve(name, &component.config)?);
        }
        // A new version of a running app keeps its store: the embedded file is open once.
        let state = build.previous.map_or(build.state.clone(), |p| p.state.clone());
        let store = match build.previous.and_then(|p| p.store.clone()) {
            Some(store) => Some(store),
            None => KeyValue::for_app(&spec, &state)?.map(Arc::new),
        };
        let loaded = load_components_with(&spec, engine, cache, &build.preloaded, &build.sources)?;
        let report = check_app(&spec, engine, &loaded);
        if !report.is_ok() {
            return Err(AppError::Check {
                file: spec.file.display().to_string(),
                problems: report.errors().cloned().collect(),
            });
        }
        let index: BTreeMap<String, usize> = spec.components.keys().cloned().enumerate().map(|(i, n)| (n, i)).collect();
        let names: Vec<Arc<str>> = spec.components.keys().map(|n| Arc::from(n.as_str())).collect();

        let mut links = Vec::new();
        for (i, (link, plan)) in spec.links.iter().zip(&report.links).enumerate() {
            let consumer = &loaded[&link.from].component;
            let provider = &loaded[&link.to].component;
            let iface = provider.get_export_index(None, plan.export.as_str()).expect("checked export");
            let fallback = match &link.on_trap {
                OnTrap::Fallback(f) => {
                    let c = &loaded[f].component;
                    let export = plan.fallback_export.as_deref().expect("checked fallback");
                    Some((c, c.get_export_index(None, export).expect("checked fallback export")))
                }
                _ => None,
            };
            let lookup = |c: &Component, at: &ComponentExportIndex, name: &str| c.get_export_index(Some(at), name);
            let Some(ComponentItem::ComponentInstance(ty)) =
                consumer.component_type().get_import(engine.engine(), &plan.import).map(|e| e.ty)
            else {
                unreachable!("checked import {}", plan.import)
            };
            let mut funcs = Vec::new();
            for (name, item) in ty.exports(engine.engine()) {
                if let ComponentItem::ComponentFunc(f) = item.ty {
                    let crossing = plan.functions.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone());
                    let missing = || AppError::Link {
                        component: link.to.clone(),
                        reason: format!("{} has no function {name}", plan.export),
                    };
                    funcs.push(LinkedFunc {
                        name: name.to_string(),
                        results: f.results().len(),
                        resources: f.params().any(|(_, ty)| holds_handles(&ty))
                            || f.results().any(|ty| holds_handles(&ty)),
                        crossing: crossing.unwrap_or(Crossing::Dynamic),
                        provider: lookup(provider, &iface, name).ok_or_else(missing)?,
                        fallback: match &fallback {
                            Some((c, at)) => Some(lookup(c, at, name).ok_or_else(missing)?),
                            None => None,
                        },
                    });
                }
            }
            let policy = match &link.on_trap {
                OnTrap::Propagate => Policy::Propagate,
                OnTrap::Retry(n) => Policy::Retry(*n),
                OnTrap::Fallback(f) => Policy::Fallback(index[f]),
            };
            let mut runtime = Link::new(
                i,
                names[index[&link.from]].clone(),
                plan.import.clone(),
                index[&link.to],
                names[index[&link.to]].clone(),
                policy,
                link.timeout.map(|t| t.std()),
                link.circuit,
                funcs,
                NEXT_RESOURCE_TYPE.fetch_add(1, Ordering::Relaxed),
                audit.clone(),
            );
            if let Some(stats) = build.previous.and_then(|p| p.link_stats(&link.from, &plan.import, &link.to)) {
                runtime.stats = stats;
            }
            links.push(Arc::new(runtime));
        }

        let mut slots = slot_shares(&spec, engine, &loaded, build.previous)?;
        let mut components = Vec::new();
        let mut handlers = BTreeMap::new();
        for (name, spec_c) in &spec.components {
            let loaded_c = &loaded[name];
            let mut linker = command::wasi_linker(engine.engine());
            for link in links.iter().filter(|l| *l.consumer == **name) {
                let Some(ComponentItem::ComponentInstance(ty)) =
                    loaded_c.component.component_type().get_import(engine.engine(), &link.import).map(|e| e.ty)
                else {
                    unreachable!("checked import")
                };
                let link_error =
                    |e: wasmtime::Error| AppError::Link { component: name.clone(), reason: format!("{e:#}") };
                let mut instance = linker.instance(&link.import).map_err(link_error)?;
                for (item_name, item) in ty.exports(engine.engine()) {
                    if let ComponentItem::Resource(_) = item.ty {
                        let link = link.clone();
                        instance
                            .resource_async(
                                item_name,
                                ResourceType::host_dynamic(link.resource_type),
                                move |mut store, rep| {
                                    let link = link.clone();
                                    Box::new(async move { link.drop_proxy(store.data_mut(), rep).await })
                                },
                            )
                            .map_err(link_error)?;
                    }
                }
                for (func, linked) in link.funcs.iter().enumerate() {
                    if let Crossing::Typed { shape } = &linked.crossing {
                        typed::define(&mut instance, shape, link, func).map_err(link_error)?;
                        continue;
                    }
                    let link = link.clone();
                    instance
                        .func_new_async(&linked.name, move |mut store, _ty, params, results| {
                            let link = link.clone();
                            Box::new(async move { link.forward(&mut store, func, params, results).await })
                        })
                        .map_err(link_error)?;
                }
            }
            let pre = linker
                .instantiate_pre(&loaded_c.component)
                .map_err(|e| AppError::Link { component: name.clone(), reason: format!("{e:#}") })?;
            if spec.routes.iter().any(|r| r.component == *name) {
                let handler = ProxyPre::new(pre.clone())
                    .map_err(|e| AppError::Link { component: name.clone(), reason: format!("{e:#}") })?;
                handlers.insert(name.clone(), handler);
            }
            let stats = match build.previous.and_then(|p| p.instances(name)) {
                Some(previous) => previous.stats.clone(),
                None => Arc::new(ComponentStats::default()),
            };
            components.push(Arc::new(Pool::new(
                names[index[name]].clone(),
                spec_c.instances,
                spec_c.grants.clone(),
                spec_c.limits.clone(),
                spec_c.restart,
                engine.engine().clone(),
                pre,
                audit.clone(),
                ComponentState {
                    keyvalue: Arc::new(KeyValueAccess::new(
                        name,
                        store.clone(),
                        &spec_c.grants.keyvalue,
                        &audit,
                        stats.clone(),
                    )),
                    config: Arc::new(configs[name].to_wasi()),
                },
                stats,
                slots.remove(name),
            )));
        }
        let inner = Arc::new(AppInner { components, index, links });
        for link in &inner.links {
            link.attach(Arc::downgrade(&inner));
        }
        let revisions = loaded
            .into_iter()
            .map(|(name, c)| {
                let before = build.previous.and_then(|p| p.revisions.get(&name));
                let number = match before {
                    Some(r) if r.file.sha256 == c.file.sha256 => r.number,
                    Some(r) => r.number + 1,
                    None => 1,
                };
                let origin = match build.origins.get(&name) {
                    Some(origin) => origin.clone(),
                    None => spec.components[&name].source.display().to_string(),
                };
                (name, Revision { number, file: c.file, origin })
            })
            .collect();
        let router = Router::new(
            spec.routes
                .iter()
                .map(|r| Route { host: r.host.clone(), prefix: r.path.clone(), component: r.component.clone() })
                .collect(),
        );
        Ok(App {
            spec,
            engine: engine.clone(),
            audit,
            inner,
            router,
            handlers,
            revisions,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            store,
            configs,
            state,
        })
    }

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
    pub fn http_handler(&self, component: &str) -> Option<&ProxyPre<SandboxState>> {
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
        match &self.store {
            Some(store) => store.ready().await.map_err(|cause| NotReady { location: store.location.clone(), cause }),
            None => Ok(()),
        }
    }

    /// The app's key-value store, if a component holds a bucket grant.
    pub fn store(&self) -> Option<&Arc<KeyValue>> {
        self.store.as_ref()
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
        let store = instances.new_store(args).map_err(|error| {
            run_error(match error {
                CallError::Fault(fault) => RunError::Fault(fault),
                other => RunError::Fault(instances.fault(crate::fault::FaultKind::Host(other.to_string()))),
            })
        })?;
        command::execute(instances, store).await.map_err(run_error)
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
        let (_, call) = instances.call(&chain, func, None, None, call).await?;
        Ok(call.results)
    }

    /// Calls `function` through the link that serves `consumer`'s `import`, as if
    /// `consumer` had called it: with the link's policy, timeout and circuit.
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
        link.forward(&mut store.as_context_mut(), func, params, &mut results).await?;
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

    fn spec(app_section: &str) -> AppSpec {
        let text = format!("[app]\nname = \"slots\"\n{app_section}\n[component.c]\nsource = \"c.wasm\"\n");
        AppSpec::parse(std::path::Path::new("membrane.toml"), &text).unwrap()
    }

    #[test]
    fn the_pool_has_the_slots_the_manifest_asks_for() {
        let slots = |spec: &AppSpec| engine_settings(spec).pooling.map(|p| p.instances);
        assert_eq!(slots(&spec("")), Some(APP_INSTANCE_SLOTS));
        assert_eq!(slots(&spec("max_instances = 10000")), Some(10_000));
        // And an engine with that many slots can be made.
        MembraneEngine::new(engine_settings(&spec("max_instances = 10000"))).unwrap();
    }
}
