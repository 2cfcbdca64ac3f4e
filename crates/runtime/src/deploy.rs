//! Hot swap: the running app is one immutable [`App`] version behind an atomic pointer. A
//! change (a new build of a component, a rollback, an edited manifest) builds and checks a
//! whole new version beside it — compiled, every link type-checked, every route still an
//! HTTP handler — and only then publishes it in one store. Requests and calls in flight
//! keep the `Arc<App>` they started with and finish on the old version, which is dropped
//! with its last user; new ones see the new version. A change that does not check leaves
//! the running version untouched.

use crate::app::{App, AppError, Build, Preloaded, Revision};
use crate::audit::Audit;
use crate::cache::CompileCache;
use crate::engine::{EngineSettings, MembraneEngine};
use crate::file::{ComponentFile, LoadError};
use arc_swap::ArcSwap;
use membrane_manifest::AppSpec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Earlier builds kept per component for rollback.
pub const KEPT_REVISIONS: usize = 8;

/// Where a new build of a component comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on the host.
    Path(PathBuf),
    /// Bytes sent to the admin API.
    Bytes(Vec<u8>),
}

/// Why a change was refused. The running version is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no component `{component}` in the app; its components are: {known}")]
    UnknownComponent { component: String, known: String },
    /// The new build is not a usable component at all.
    #[error("component `{component}`: {source}")]
    Invalid {
        component: String,
        #[source]
        source: LoadError,
    },
    /// The new build (or manifest) does not fit the app: a link, route or import breaks.
    #[error("the change was not applied; the running version keeps serving: {0}")]
    Incompatible(Box<AppError>),
    #[error("component `{component}` has no earlier build to roll back to")]
    NothingToRollBack { component: String },
}

/// A published change, as the admin API reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub component: String,
    /// `swap` or `rollback`.
    pub action: &'static str,
    pub from: RevisionInfo,
    pub to: RevisionInfo,
    /// The app version now serving.
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RevisionInfo {
    pub revision: u64,
    pub digest: String,
    pub origin: String,
}

impl From<&Revision> for RevisionInfo {
    fn from(r: &Revision) -> Self {
        RevisionInfo { revision: r.number, digest: r.digest(), origin: r.origin.clone() }
    }
}

/// The running app and what it replaced.
pub struct Deployment {
    current: ArcSwap<App>,
    cache: CompileCache,
    /// Where a reload finds `oci://` sources.
    sources: crate::Sources,
    audit: Audit,
    /// Earlier builds by component, newest last. The lock also serializes changes;
    /// requests never take it.
    history: Mutex<BTreeMap<String, Vec<Revision>>>,
}

impl Deployment {
    pub fn new(app: App, cache: CompileCache) -> Deployment {
        Deployment {
            audit: app.audit().clone(),
            current: ArcSwap::from_pointee(app),
            cache,
            sources: crate::Sources::default(),
            history: Mutex::default(),
        }
    }

    /// Reloads resolve `oci://` sources through `sources` (the server's registry flags).
    pub fn with_sources(mut self, sources: crate::Sources) -> Deployment {
        self.sources = sources;
        self
    }

    /// The version serving now. Hold it for the whole request or call.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Earlier builds of `component` that a rollback can return to, newest last.
    pub fn history(&self, component: &str) -> Vec<RevisionInfo> {
        self.lock().get(component).map(|h| h.iter().map(RevisionInfo::from).collect()).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Revision>>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces `component` with a new build, if the whole app still checks with it.
    /// Compiles, so call it off the async executor.
    pub fn swap(&self, component: &str, source: Source) -> Result<Change, DeployError> {
        let mut history = self.lock();
        let current = self.current();
        known(&current, component)?;
        let invalid = |source| DeployError::Invalid { component: component.to_string(), source };
        let (file, origin) = match source {
            Source::Path(path) => (ComponentFile::read(&path).map_err(invalid)?, path.display().to_string()),
            Source::Bytes(bytes) => (
                ComponentFile::from_bytes(component.to_string(), Path::new("uploaded component"), bytes)
                    .map_err(invalid)?,
                "upload".to_string(),
            ),
        };
        let replaced = current.revisions()[component].clone();
        let change = self.publish(&current, component, Arc::new(file), origin, "swap")?;
        let kept = history.entry(component.to_string()).or_default();
        kept.push(replaced);
        if kept.len() > KEPT_REVISIONS {
            kept.remove(0);
        }
        Ok(change)
    }

    /// Returns `component` to the build it ran before its last swap. The build rolled back
    /// from is discarded; rolling back again goes one build further back.
    pub fn rollback(&self, component: &str) -> Result<Change, DeployError> {
        let mut history = self.lock();
        let current = self.current();
        known(&current, component)?;
        let Some(previous) = history.get(component).and_then(|h| h.last()).cloned() else {
            return Err(DeployError::NothingToRollBack { component: component.to_string() });
        };
        let change = self.publish(&current, component, previous.file.clone(), previous.origin.clone(), "rollback")?;
        history.get_mut(component).expect("found above").pop();
        Ok(change)
    }

    /// Replaces the whole app with `spec` as read from disk again (`--watch`): every
    /// component whose build changed gets a new revision, and its old build is kept for
    /// rollback. Returns the components that changed.
    pub fn reload(&self, spec: AppSpec) -> Result<Vec<Change>, DeployError> {
        let mut history = self.lock();
        let current = self.current();
        let build = Build { previous: Some(&current), sources: self.sources.clone(), ..Build::default() };
        let app = App::build(spec, &self.cache, self.audit.clone(), build).map_err(incompatible)?;
        let mut changes = Vec::new();
        for (name, revision) in app.revisions() {
            let Some(before) = current.revisions().get(name) else { continue };
            if before.file.sha256 != revision.file.sha256 {
                let kept = history.entry(name.clone()).or_default();
                kept.push(before.clone());
                if kept.len() > KEPT_REVISIONS {
                    kept.remove(0);
                }
                changes.push(Change {
                    component: name.clone(),
                    action: "swap",
                    from: before.into(),
                    to: revision.into(),
                    generation: app.generation(),
                });
            }
        }
        self.current.store(Arc::new(app));
        for change in &changes {
            self.record(change);
        }
        Ok(changes)
    }

    /// Restarts `component` in the running version: a failed singleton is cleared and
    /// idle pooled instances are dropped.
    pub async fn restart(&self, component: &str) -> Result<(), DeployError> {
        let current = self.current();
        known(&current, component)?;
        current.restart(component).await;
        Ok(())
    }

    /// Builds the app with `file` as `component`, checks it, and publishes it.
    fn publish(
        &self,
        current: &App,
        component: &str,
        file: Arc<ComponentFile>,
        origin: String,
        action: &'static str,
    ) -> Result<Change, DeployError> {
        // The first WASI 0.3 component of an app needs an engine with the component-model
        // async ABI: it is compiled on one, which the new version then runs on.
        let engine = match file.wasi_p3 && !current.engine().settings().component_model_async {
            true => {
                let settings = EngineSettings { component_model_async: true, ..current.engine().settings().clone() };
                MembraneEngine::new(settings).map_err(|e| {
                    incompatible(AppError::EngineStart {
                        file: current.spec.file.display().to_string(),
                        reason: format!("{e:#}"),
                    })
                })?
            }
            false => current.engine().clone(),
        };
        let (compiled, _) = file
            .compile(&engine, &self.cache)
            .map_err(|source| DeployError::Invalid { component: component.to_string(), source })?;
        let mut spec = current.spec.clone();
        // The manifest's digest pin named the build it started with; an operator's swap
        // is the decision to run another, recorded in the audit trail with both digests.
        spec.components.get_mut(component).expect("known component").digest = None;
        let mut preloaded: Preloaded = current
            .revisions()
            .iter()
            .filter(|(name, _)| *name != component)
            .map(|(name, r)| {
                let compiled = current.instances(name).expect("revisions name components").pre().component().clone();
                (name.clone(), (r.file.clone(), compiled))
            })
            .collect();
        preloaded.insert(component.to_string(), (file, compiled));
        let mut origins: BTreeMap<String, String> =
            current.revisions().iter().map(|(name, r)| (name.clone(), r.origin.clone())).collect();
        origins.insert(component.to_string(), origin);
        let build = Build {
            preloaded,
            origins,
            previous: Some(current),
            engine: Some(engine),
            sources: self.sources.clone(),
            ..Build::default()
        };
        let app = App::build(spec, &self.cache, self.audit.clone(), build).map_err(incompatible)?;
        let change = Change {
            component: component.to_string(),
            action,
            from: (&current.revisions()[component]).into(),
            to: (&app.revisions()[component]).into(),
            generation: app.generation(),
        };
        self.current.store(Arc::new(app));
        self.record(&change);
        Ok(change)
    }

    fn record(&self, change: &Change) {
        self.audit.record(
            &change.component,
            change.action,
            &format!("{} -> {}", change.from.digest, change.to.digest),
            &format!("revision {} ({}) now serving", change.to.revision, change.to.origin),
        );
    }
}

fn known(app: &App, component: &str) -> Result<(), DeployError> {
    if app.spec.components.contains_key(component) {
        return Ok(());
    }
    Err(DeployError::UnknownComponent {
        component: component.to_string(),
        known: app.spec.components.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

fn incompatible(error: AppError) -> DeployError {
    DeployError::Incompatible(Box::new(error))
}
