//! Building one version of an app, in phases that each have one job: choose the engine
//! the manifest needs, resolve what the manifest says without running anything, load and
//! check every component, open the key-value store, make the links, and prepare each
//! component's instances.

use super::check::Report;
use super::load::{
    LoadedComponent, Preloaded, any_wasi_p3, check_app, compile_components, open_components, slot_shares,
};
use super::{App, AppError, AppInner, HttpHandler, Revision};
use crate::audit::Audit;
use crate::cache::CompileCache;
use crate::command;
use crate::engine::{EngineSettings, MembraneEngine};
use crate::link::http_hop;
use crate::link::typed::{self, Crossing};
use crate::link::{Link, LinkedFunc, Policy, ValCall};
use crate::pool::Pool;
use crate::routes::{Route, Router};
use crate::state::{ComponentConfig, ComponentState, KeyValue, KeyValueAccess, StateOptions};
use crate::stats::ComponentStats;
use crate::values::holds_handles;
use membrane_manifest::{AppSpec, Isolation, OnTrap};
use membrane_registry::Sources;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, ResourceType};

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
    /// The version this one replaces: revision numbers continue from it, counters carry
    /// over, and its engine and key-value store are kept when the new version can use them.
    pub previous: Option<&'a App>,
    /// An engine to run on when it has everything the manifest needs; otherwise, and
    /// without one, the build makes the engine the manifest needs.
    pub engine: Option<MembraneEngine>,
    /// How to find the key-value store, when there is no previous version to take it from.
    pub state: StateOptions,
    /// Where `oci://` sources come from.
    pub sources: Sources,
}

impl App {
    /// Loads every component, checks the whole app and links it, on an engine made for it.
    /// Nothing runs yet. A key-value store, if any component needs one, is opened with the
    /// default options.
    pub fn load(spec: AppSpec, cache: &CompileCache, audit: Audit) -> Result<App, AppError> {
        App::build(spec, cache, audit, Build::default())
    }

    /// What `membrane check` reports: every component loaded and compiled on the engine
    /// the app would run on, and the whole app checked. Errors in the report are the
    /// caller's to show; an error here is a component that could not even be loaded.
    pub fn check(spec: &AppSpec, cache: &CompileCache, sources: &Sources) -> Result<Report, AppError> {
        let opened = open_components(spec, &Default::default(), sources)?;
        let engine = engine_for(spec, any_wasi_p3(&opened), &Build::default())?;
        let loaded = compile_components(opened, &engine, cache)?;
        Ok(check_app(spec, &engine, &loaded))
    }

    /// As [`App::load`], from what `build` already holds.
    pub fn build(spec: AppSpec, cache: &CompileCache, audit: Audit, build: Build<'_>) -> Result<App, AppError> {
        let opened = open_components(&spec, &build.preloaded, &build.sources)?;
        let engine = engine_for(&spec, any_wasi_p3(&opened), &build)?;
        let configs = resolve(&spec, build.previous)?;
        let loaded = compile_components(opened, &engine, cache)?;
        let links = check_and_link(&spec, &engine, &loaded, &audit, build.previous)?;
        // Opened once the app is known to be sound; a new version keeps its version's store.
        let state = build.previous.map_or(build.state.clone(), |p| p.state.clone());
        let keyvalue = match build.previous.and_then(|p| p.keyvalue.clone()) {
            Some(keyvalue) => Some(keyvalue),
            None => KeyValue::for_app(&spec, &state)?.map(Arc::new),
        };
        // Slots and their counts carry over only within one engine's pool.
        let same_pool = build.previous.filter(|p| wasmtime::Engine::same(p.engine.engine(), engine.engine()));
        let mut slots = slot_shares(&spec, &engine, &loaded, same_pool)?;
        let mut components = Vec::new();
        let mut handlers = BTreeMap::new();
        for (name, component) in &spec.components {
            let pre = prepare(&engine, name, &loaded[name].component, &links)?;
            if spec.routes.iter().any(|r| r.component == *name) {
                let handler = HttpHandler::new(&pre).map_err(|e| link_error(name, e))?;
                handlers.insert(name.clone(), handler);
            }
            let stats = match build.previous.and_then(|p| p.instances(name)) {
                Some(previous) => previous.stats.clone(),
                None => Arc::new(ComponentStats::default()),
            };
            let state = ComponentState {
                keyvalue: Arc::new(KeyValueAccess::new(
                    name,
                    keyvalue.clone(),
                    &component.grants.keyvalue,
                    &audit,
                    stats.clone(),
                )),
                config: Arc::new(configs[name].to_wasi()),
                stats: stats.clone(),
            };
            components.push(Arc::new(Pool::new(
                Arc::from(name.as_str()),
                component.instances,
                component.grants.clone(),
                component.limits.clone(),
                component.restart,
                engine.engine().clone(),
                pre,
                audit.clone(),
                state,
                stats,
                slots.remove(name),
            )));
        }
        let index = spec.components.keys().cloned().enumerate().map(|(i, n)| (n, i)).collect();
        let inner = Arc::new(AppInner { components, index, links });
        for link in &inner.links {
            link.attach(Arc::downgrade(&inner));
        }
        Ok(App {
            revisions: revisions(&spec, loaded, &build),
            router: router(&spec),
            engine,
            audit,
            inner,
            handlers,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            keyvalue,
            configs,
            state,
            spec,
        })
    }
}

/// The engine the app runs on: the version it replaces keeps its engine, and an offered
/// one is taken, when it has what the manifest and its components need (fuel counting,
/// stack, slots, the component-model async ABI for a WASI 0.3 component); otherwise a new
/// one is made for it, so a reload that adds a fuel limit or a WASI 0.3 component runs on
/// an engine that has it while the version before it finishes on its own.
fn engine_for(spec: &AppSpec, wasi_p3: bool, build: &Build<'_>) -> Result<MembraneEngine, AppError> {
    let needs = EngineSettings::for_app(spec, wasi_p3);
    let offered = build.previous.map(|p| &p.engine).into_iter().chain(build.engine.as_ref());
    if let Some(engine) = offered.into_iter().find(|e| e.settings().covers(&needs).is_ok()) {
        return Ok(engine.clone());
    }
    MembraneEngine::new(needs)
        .map_err(|e| AppError::EngineStart { file: spec.file.display().to_string(), reason: format!("{e:#}") })
}

/// What the manifest says that needs no component: tenants a running server can keep, and
/// each component's config resolved (environment references, secrets).
fn resolve(spec: &AppSpec, previous: Option<&App>) -> Result<BTreeMap<String, ComponentConfig>, AppError> {
    if let Some(previous) = previous
        && previous.spec.tenants != spec.tenants
    {
        return Err(AppError::TenantsChanged { file: spec.file.display().to_string() });
    }
    let mut configs = BTreeMap::new();
    for (name, component) in &spec.components {
        configs.insert(name.clone(), ComponentConfig::resolve(name, &component.config)?);
    }
    Ok(configs)
}

/// Checks the loaded app (refusing it on any error) and makes one [`Link`] per manifest
/// link, with the counters of the version it replaces.
fn check_and_link(
    spec: &AppSpec,
    engine: &MembraneEngine,
    loaded: &BTreeMap<String, LoadedComponent>,
    audit: &Audit,
    previous: Option<&App>,
) -> Result<Vec<Arc<Link<AppInner>>>, AppError> {
    let report = check_app(spec, engine, loaded);
    if !report.is_ok() {
        return Err(AppError::Check {
            file: spec.file.display().to_string(),
            problems: report.errors().cloned().collect(),
        });
    }
    let index: BTreeMap<&str, usize> = spec.components.keys().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut links = Vec::new();
    for (link, plan) in spec.links.iter().zip(&report.links) {
        let funcs = linked_funcs(engine, loaded, link, plan)?;
        let policy = match &link.on_trap {
            OnTrap::Propagate => Policy::Propagate,
            OnTrap::Retry(n) => Policy::Retry(*n),
            OnTrap::Fallback(f) => Policy::Fallback(index[f.as_str()]),
        };
        let mut made = Link::new(
            Arc::from(link.from.as_str()),
            plan.import.clone(),
            index[link.to.as_str()],
            Arc::from(link.to.as_str()),
            policy,
            link.timeout.map(|t| t.std()),
            link.circuit,
            funcs,
            NEXT_RESOURCE_TYPE.fetch_add(1, Ordering::Relaxed),
            audit.clone(),
        );
        made.isolation = link.isolation;
        if let Some(budget) = link.stream_budget {
            made.budget = crate::link::streams::Budget::new(budget.bytes() as usize);
        }
        if let Some(stats) = previous.and_then(|p| p.link_stats(&link.from, &plan.import, &link.to)) {
            made.stats = stats;
        }
        links.push(Arc::new(made));
    }
    Ok(links)
}

/// Each function of a link's interface, found in the provider (and its fallback).
fn linked_funcs(
    engine: &MembraneEngine,
    loaded: &BTreeMap<String, LoadedComponent>,
    link: &membrane_manifest::LinkSpec,
    plan: &super::check::LinkPlan,
) -> Result<Vec<LinkedFunc>, AppError> {
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
                resources: f.params().any(|(_, ty)| holds_handles(&ty)) || f.results().any(|ty| holds_handles(&ty)),
                crossing: crossing.unwrap_or(Crossing::Dynamic),
                provider: lookup(provider, &iface, name).ok_or_else(missing)?,
                fallback: match &fallback {
                    Some((c, at)) => Some(lookup(c, at, name).ok_or_else(missing)?),
                    None => None,
                },
            });
        }
    }
    Ok(funcs)
}

/// A component's linker: WASI and the host interfaces, and every link it consumes as
/// host functions that forward to the provider; instantiated as far as can be ahead.
fn prepare(
    engine: &MembraneEngine,
    name: &str,
    component: &Component,
    links: &[Arc<Link<AppInner>>],
) -> Result<wasmtime::component::InstancePre<crate::sandbox::SandboxState>, AppError> {
    let mut linker = command::wasi_linker(engine.engine());
    if engine.settings().component_model_async {
        crate::p3::add_to_linker(&mut linker).map_err(|e| link_error(name, e))?;
    }
    for link in links.iter().filter(|l| *l.consumer == *name) {
        let Some(ComponentItem::ComponentInstance(ty)) =
            component.component_type().get_import(engine.engine(), &link.import).map(|e| e.ty)
        else {
            unreachable!("checked import")
        };
        let mut instance = linker.instance(&link.import).map_err(|e| link_error(name, e))?;
        if http_hop::is_http_hop(&link.import) {
            http_hop::define(&mut instance, link.clone()).map_err(|e| link_error(name, e))?;
            continue;
        }
        for (item_name, item) in ty.exports(engine.engine()) {
            if let ComponentItem::Resource(_) = item.ty {
                let link = link.clone();
                instance
                    .resource_async(item_name, ResourceType::host_dynamic(link.resource_type), move |mut store, rep| {
                        let link = link.clone();
                        Box::new(async move { link.drop_proxy(store.data_mut(), rep).await })
                    })
                    .map_err(|e| link_error(name, e))?;
            }
        }
        for (func, linked) in link.funcs.iter().enumerate() {
            if let Crossing::Concurrent { .. } = &linked.crossing {
                crate::link::define_concurrent(&mut instance, link.clone(), func).map_err(|e| link_error(name, e))?;
                continue;
            }
            if let Crossing::Typed { shape } = &linked.crossing {
                typed::define(&mut instance, shape, link, func).map_err(|e| link_error(name, e))?;
                continue;
            }
            let link = link.clone();
            let defined = match link.isolation {
                Isolation::Store => instance.func_new_async(&linked.name, move |mut store, _ty, params, results| {
                    let link = link.clone();
                    Box::new(async move { link.forward(&mut store, func, params, results).await })
                }),
                Isolation::Component => {
                    instance.func_new_async(&linked.name, move |mut store, _ty, params, results| {
                        let link = link.clone();
                        Box::new(
                            async move { link.call_in_store(&mut store, func, &mut ValCall { params, results }).await },
                        )
                    })
                }
            };
            defined.map_err(|e| link_error(name, e))?;
        }
    }
    linker.instantiate_pre(component).map_err(|e| link_error(name, e))
}

fn link_error(component: &str, error: wasmtime::Error) -> AppError {
    AppError::Link { component: component.to_string(), reason: format!("{error:#}") }
}

/// Which build each component runs: numbers continue from the version replaced, one more
/// for each component whose build changed.
fn revisions(
    spec: &AppSpec,
    loaded: BTreeMap<String, LoadedComponent>,
    build: &Build<'_>,
) -> BTreeMap<String, Revision> {
    loaded
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
        .collect()
}

fn router(spec: &AppSpec) -> Router {
    Router::new(spec.routes.iter().map(|r| Route::new(r.host.clone(), r.path.as_str(), r.component.as_str())).collect())
}
