//! `membrane serve --watch`: when the manifest or a component file changes, the app is
//! reloaded from disk and swapped in if it checks; otherwise the running version keeps
//! serving and the log says why.

use membrane_manifest::AppSpec;
use membrane_runtime::{Deployment, Source};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Events closer together than this are one change: editors write a file in several steps.
const SETTLE: Duration = Duration::from_millis(250);

/// Watches `target` (a manifest when `is_app`, else the one component) and the component
/// files of the running app. The watch lasts as long as the returned watcher.
pub fn start(deployment: Arc<Deployment>, target: PathBuf, is_app: bool) -> anyhow::Result<notify::RecommendedWatcher> {
    let (events, mut changed) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            for path in event.paths {
                let _ = events.send(path);
            }
        }
    })?;
    let mut watched = watched_files(&deployment, &target, is_app);
    // Directories, not files: an editor that saves by renaming a new file over the old
    // one would end a watch on the file itself.
    for dir in watched.iter().filter_map(|f| f.parent()).collect::<BTreeSet<_>>() {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tracing::info!(target: "membrane::serve", files = watched.len(), "watching the app's files for changes");
    tokio::spawn(async move {
        while let Some(first) = changed.recv().await {
            let mut paths = vec![first];
            tokio::time::sleep(SETTLE).await;
            while let Ok(more) = changed.try_recv() {
                paths.push(more);
            }
            let Some(path) = paths.iter().map(|p| canonical(p)).find(|p| watched.contains(p)) else { continue };
            let (for_task, target_now) = (deployment.clone(), target.clone());
            let outcome = tokio::task::spawn_blocking(move || reload(&for_task, &target_now, is_app)).await;
            match outcome {
                Ok(Ok(changes)) if changes.is_empty() => {
                    tracing::debug!(target: "membrane::serve", path = %path.display(), "changed, but no build differs")
                }
                Ok(Ok(changes)) => {
                    for change in changes {
                        tracing::info!(
                            target: "membrane::serve",
                            component = change.component,
                            revision = change.to.revision,
                            digest = change.to.digest,
                            "{} changed: swapped in", path.display()
                        );
                    }
                }
                Ok(Err(error)) => tracing::warn!(
                    target: "membrane::serve",
                    "{} changed, but the change was not applied and the running version keeps serving: {error:#}",
                    path.display()
                ),
                Err(error) => tracing::error!(target: "membrane::serve", "the reload task failed: {error}"),
            }
            // A manifest may now name other files (in directories already watched).
            watched = watched_files(&deployment, &target, is_app);
        }
    });
    Ok(watcher)
}

fn reload(deployment: &Deployment, target: &Path, is_app: bool) -> anyhow::Result<Vec<membrane_runtime::Change>> {
    if is_app {
        let spec = AppSpec::load(target)?;
        return Ok(deployment.reload(spec)?);
    }
    let app = deployment.current();
    let component = app.spec.components.keys().next().expect("a one-component app").clone();
    let before = app.revisions()[&component].file.sha256;
    let file_now = membrane_runtime::ComponentFile::read(target)?;
    if file_now.sha256 == before {
        return Ok(Vec::new());
    }
    Ok(vec![deployment.swap(&component, Source::Path(target.to_path_buf()))?])
}

/// The manifest (or component) and every component file the running app came from.
fn watched_files(deployment: &Deployment, target: &Path, is_app: bool) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::from([canonical(target)]);
    if is_app {
        files.extend(deployment.current().spec.components.values().map(|c| canonical(&c.source)));
    }
    files
}

/// The absolute form of `path` with its directory resolved, for comparing event paths.
fn canonical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent().and_then(|d| d.canonicalize().ok()), absolute.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => absolute,
    }
}
