//! Reading an app's components: each opened (file or registry), verified against its
//! digest pin and signatures, compiled through the cache, and the whole app checked,
//! down to whether every component fits its share of the engine's pooled slots.

use super::AppError;
use super::check::{self, Checked, LinkPlan, Report};
use crate::cache::CompileCache;
use crate::engine::MembraneEngine;
use crate::file::{ComponentFile, Origin};
use crate::link::typed::Crossing;
use crate::wit_compat::ComponentWit;
use membrane_manifest::{AppSpec, ComponentSpec, Isolation, LinkSpec, OnTrap};
use membrane_registry::{PublicKey, Signature, SignatureError, Sources};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// One component read, verified and compiled.
pub struct LoadedComponent {
    pub file: Arc<ComponentFile>,
    pub component: Component,
    pub wit: ComponentWit,
}

/// Components already read and compiled, by name: a swap's new component and the
/// unchanged components of the running version, so that nothing is read twice.
pub type Preloaded = BTreeMap<String, (Arc<ComponentFile>, Component)>;

/// A component read and verified, not yet compiled for this version's engine; with the
/// code it was compiled to before, when it was preloaded.
pub(crate) struct Opened {
    file: Arc<ComponentFile>,
    compiled: Option<Component>,
}

/// Reads and verifies (digest pins, signatures) every component of `spec`, taking the
/// components in `preloaded` as they are and resolving `oci://` sources through `sources`.
/// Nothing is compiled yet: what the files are (WASI 0.3 or not) decides the engine.
pub(crate) fn open_components(
    spec: &AppSpec,
    preloaded: &Preloaded,
    sources: &Sources,
) -> Result<BTreeMap<String, Opened>, AppError> {
    let mut opened = BTreeMap::new();
    for (name, component) in &spec.components {
        if let Some((file, compiled)) = preloaded.get(name) {
            opened.insert(name.clone(), Opened { file: file.clone(), compiled: Some(compiled.clone()) });
            continue;
        }
        let file = ComponentFile::open(&component.source, sources)
            .map_err(|source| AppError::Load { component: name.clone(), source })?;
        if let Some(pin) = &component.digest
            && pin.0 != file.source_sha256
        {
            return Err(AppError::Digest {
                component: name.clone(),
                path: component.source.display().to_string(),
                expected: pin.to_string(),
                actual: hex::encode(file.source_sha256),
            });
        }
        verify_signature(component, &file).map_err(|source| AppError::Signature { component: name.clone(), source })?;
        opened.insert(name.clone(), Opened { file: Arc::new(file), compiled: None });
    }
    Ok(opened)
}

/// Whether any opened component is a WASI 0.3 one, which needs the component-model async ABI.
pub(crate) fn any_wasi_p3(opened: &BTreeMap<String, Opened>) -> bool {
    opened.values().any(|o| o.file.wasi_p3)
}

/// Compiles every opened component for `engine` through the cache (a preloaded one is
/// taken as it is when it was compiled for this engine) and reads its WIT.
pub(crate) fn compile_components(
    opened: BTreeMap<String, Opened>,
    engine: &MembraneEngine,
    cache: &CompileCache,
) -> Result<BTreeMap<String, LoadedComponent>, AppError> {
    let mut loaded = BTreeMap::new();
    for (name, Opened { file, compiled }) in opened {
        let component = match compiled {
            Some(compiled) if wasmtime::Engine::same(compiled.engine(), engine.engine()) => compiled,
            _ => file.compile(engine, cache).map_err(|source| AppError::Load { component: name.clone(), source })?.0,
        };
        let wit = ComponentWit::decode(&file.bytes)
            .map_err(|e| AppError::Wit { component: name.clone(), reason: format!("{e:#}") })?;
        loaded.insert(name, LoadedComponent { file, component, wit });
    }
    Ok(loaded)
}

/// When the component names `trusted_keys`, accepts it only with a signature over its
/// digest by one of them: `FILE.sig` beside a file, or one published in its registry.
/// With several signatures, one that verifies is enough; else the first one's fault is told.
fn verify_signature(spec: &ComponentSpec, file: &ComponentFile) -> Result<(), SignatureError> {
    if spec.trusted_keys.is_empty() {
        return Ok(());
    }
    let shown = spec.source.display().to_string();
    let trusted = spec
        .trusted_keys
        .iter()
        .map(|k| k.0.parse::<PublicKey>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| SignatureError::Malformed { file: shown.clone(), reason: reason.to_string() })?;
    let (signatures, looked) = match &file.origin {
        Origin::Registry { signatures, .. } => {
            (signatures.clone(), "no signature is published for it in the registry".to_string())
        }
        Origin::File => {
            let beside = Signature::path_beside(&spec.source);
            (std::fs::read(&beside).ok().into_iter().collect(), format!("no {}", beside.display()))
        }
    };
    let mut first_error = None;
    for bytes in &signatures {
        match Signature::parse(&shown, bytes).and_then(|s| s.verify(&shown, &file.source_digest(), &trusted)) {
            Ok(signer) => {
                tracing::debug!(component = %shown, %signer, "signature verified");
                return Ok(());
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(SignatureError::Missing { file: shown, looked }))
}

/// Checks an app whose components are loaded.
pub(crate) fn check_app(spec: &AppSpec, engine: &MembraneEngine, loaded: &BTreeMap<String, LoadedComponent>) -> Report {
    let checked: BTreeMap<String, Checked<'_>> = loaded
        .iter()
        .map(|(name, c)| {
            let ty = c.component.component_type();
            let imports = ty.imports(engine.engine()).map(|(n, _)| n.to_string()).collect();
            let exports = ty.exports(engine.engine()).map(|(n, _)| n.to_string()).collect();
            (name.clone(), Checked { wit: &c.wit, imports, exports })
        })
        .collect();
    let mut report = check::check(spec, &checked);
    // Each link whose check passed is planned, whatever else is wrong with the app, so
    // that every problem is told at once.
    let planned: Vec<_> = spec
        .links
        .iter()
        .zip(&report.links)
        .enumerate()
        .filter(|(i, _)| !report.errors().any(|p| p.key.starts_with(&format!("link[{i}]."))))
        .map(|(i, (link, plan))| (i, crossings(engine, loaded, link, plan)))
        .collect();
    for (i, planned) in planned {
        match planned {
            Ok(functions) => report.links[i].functions = functions,
            Err(why) => report.error(format!("link[{i}].import"), why),
        }
    }
    report
}

/// The path each function of a checked link takes: concurrent for an async function or
/// one with streams or futures, typed where the consumer's import, the provider's export
/// and the fallback's all have one typed shape, else dynamic. A function whose streams or
/// futures the link cannot forward is refused, named with its reason.
fn crossings(
    engine: &MembraneEngine,
    loaded: &BTreeMap<String, LoadedComponent>,
    link: &LinkSpec,
    plan: &LinkPlan,
) -> Result<Vec<(String, Crossing)>, String> {
    let engine = engine.engine();
    let instance = |item: Option<ComponentItem>| match item {
        Some(ComponentItem::ComponentInstance(i)) => Some(i),
        _ => None,
    };
    let func = |item: Option<ComponentItem>| match item {
        Some(ComponentItem::ComponentFunc(f)) => Some(f),
        _ => None,
    };
    let ty = |component: &str| loaded[component].component.component_type();
    let Some(imported) = instance(ty(&link.from).get_import(engine, &plan.import).map(|e| e.ty)) else {
        return Ok(Vec::new());
    };
    // A middleware's hop carries requests its own way (`link::http_hop`).
    if crate::link::http_hop::is_http_hop(&link.import) {
        return Ok(Vec::new());
    }
    let mut sides = vec![instance(ty(&link.to).get_export(engine, &plan.export).map(|e| e.ty))];
    if let (OnTrap::Fallback(fallback), Some(export)) = (&link.on_trap, &plan.fallback_export) {
        sides.push(instance(ty(fallback).get_export(engine, export).map(|e| e.ty)));
    }
    imported
        .exports(engine)
        .filter_map(|(name, item)| {
            let wanted = func(Some(item.ty))?;
            let offered: Option<Vec<_>> =
                sides.iter().map(|side| func(side.as_ref()?.get_export(engine, name).map(|e| e.ty))).collect();
            let refused = |why: String| format!("{}: {name} cannot cross the link: {why}", plan.import);
            let crossing = match offered {
                Some(offered) => Crossing::choose(&wanted, &offered).map_err(refused),
                None => Ok(Crossing::Dynamic),
            };
            let crossing = crossing.and_then(|crossing| match crossing {
                Crossing::Concurrent { .. } if link.isolation == Isolation::Component => Err(refused(
                    "an async function needs the provider in a store of its own; remove isolation = \"component\""
                        .into(),
                )),
                other => Ok(other),
            });
            Some(crossing.map(|crossing| (name.to_string(), crossing)))
        })
        .collect()
}

/// Each component's share of the engine's pooled slots (`None` without a pool), carried
/// over from the version this one replaces where the share is unchanged. A component
/// that serves HTTP or is the entry makes an instance per request or run, so it shares
/// what the fixed singletons and pools leave, like a per-call one.
pub(super) fn slot_shares(
    spec: &AppSpec,
    engine: &MembraneEngine,
    loaded: &BTreeMap<String, LoadedComponent>,
    previous: Option<&super::App>,
) -> Result<BTreeMap<String, crate::slots::InstanceSlots>, AppError> {
    use crate::slots::{Claim, InstanceSlots, SlotNeeds, divide};
    use membrane_manifest::InstanceMode;
    let Some(pooling) = engine.settings().pooling else { return Ok(BTreeMap::new()) };
    let claims: Vec<(String, SlotNeeds, Claim)> = spec
        .components
        .iter()
        .map(|(name, c)| {
            let per_request =
                spec.routes.iter().any(|r| r.component == *name) || spec.app.entry.as_deref() == Some(name.as_str());
            let claim = match c.instances {
                InstanceMode::Singleton if !per_request => Claim::Fixed(1),
                InstanceMode::Pool(n) if !per_request => Claim::Fixed(n),
                _ => Claim::Share,
            };
            let needs = |name: &str| SlotNeeds::of(&loaded[name].component, &loaded[name].file.bytes);
            let embedded = embedded_providers(spec, name).into_iter().map(|p| needs(&p));
            (name.clone(), embedded.fold(needs(name), SlotNeeds::with), claim)
        })
        .collect();
    let shares = divide(&pooling, &claims)?;
    Ok(claims
        .into_iter()
        .zip(shares)
        .map(|((name, needs, _), share)| {
            let before = previous.and_then(|p| p.instances(&name)).and_then(|i| i.slots.as_ref());
            let slots = InstanceSlots::carried_over(before, share, needs);
            (name, slots)
        })
        .collect())
}

/// The providers that live in an instance of `consumer`'s store: those its links with
/// isolation = "component" reach, and theirs in turn, each once (one instance per store).
fn embedded_providers(spec: &AppSpec, consumer: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut next = vec![consumer.to_string()];
    while let Some(at) = next.pop() {
        for link in spec.links.iter().filter(|l| l.from == at && l.isolation == membrane_manifest::Isolation::Component)
        {
            if link.to != consumer && !found.contains(&link.to) {
                found.push(link.to.clone());
                next.push(link.to.clone());
            }
        }
    }
    found
}
