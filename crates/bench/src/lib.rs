//! Shared pieces of membrane's benchmarks: engines and stores configured as the product
//! configures them, and a native idle process for the density comparison.

use membrane_manifest::{AppSpec, Grants, Limits};
use membrane_runtime::{App, SandboxState};
use membrane_runtime::{Audit, CompileCache, EngineSettings, MembraneEngine};
use std::path::Path;
use wasmtime::Store;

/// Loads the app described by `manifest` (TOML) from `dir`, on the engine the app would
/// get from `membrane serve`/`membrane run` (pooling allocator, copy-on-write images).
pub fn load_app(dir: &Path, manifest: &str) -> App {
    let path = dir.join("membrane.toml");
    std::fs::write(&path, manifest).unwrap();
    let spec = AppSpec::load(&path).unwrap();
    App::load(spec, &CompileCache::at(dir.join("cache")), Audit::default()).unwrap()
}

/// The engine settings of an app of one component with default limits: what every
/// per-request instance of `membrane serve` is made with.
pub fn app_engine_settings() -> EngineSettings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("membrane.toml");
    std::fs::write(&path, "[app]\nname = \"bench\"\n\n[component.c]\nsource = \"c.wasm\"\n").unwrap();
    EngineSettings::for_app(&AppSpec::load(&path).unwrap(), false)
}

/// A store for one instance with no grants and default limits, as the product makes it.
pub fn new_store(engine: &MembraneEngine) -> Store<SandboxState> {
    let audit = Audit::default();
    let state = membrane_runtime::ComponentState::none("bench", &audit);
    membrane_runtime::new_store(
        engine.engine(),
        engine.settings().fuel,
        "bench",
        &Grants::default(),
        &Limits::default(),
        &[],
        &audit,
        &state,
    )
    .unwrap()
}

/// Resident and proportional set size of process `pid` (or this process), in bytes, from
/// /proc/PID/smaps_rollup.
pub fn memory_of(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/smaps_rollup"),
        None => "/proc/self/smaps_rollup".to_string(),
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("Rss:"), field("Pss:"))
}
