//! `membrane run`: run a command component once, behind a deny-by-default membrane.

use crate::common::RunCommon;
use anyhow::Context;
use clap::Parser;
use membrane_manifest::AppSpec;
use membrane_runtime::{App, Build};
use membrane_runtime::{Command, ComponentFile, MembraneEngine};
use std::path::PathBuf;

/// Run a wasi:cli/run component, or the entry of an app (a membrane.toml). A component sees
/// no file, environment variable or socket unless granted, and is stopped by its limits.
/// For an app, each component's grants and limits come from its manifest.
#[derive(Parser, Debug)]
#[command(after_help = crate::exit::HELP)]
pub struct RunCommand {
    /// The component to run (.wasm, its .wat text form, a WASI preview 1 command module, or
    /// oci://REGISTRY/REPOSITORY:TAG or @sha256:DIGEST), or an app's membrane.toml.
    #[arg(value_name = "COMPONENT|APP.toml")]
    pub component: PathBuf,

    /// Arguments for the guest, after the component (use `--` before ones that start with `-`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,

    #[command(flatten)]
    pub common: RunCommon,
}

impl RunCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        if !membrane_manifest::is_oci(&self.component) && self.component.extension().is_some_and(|e| e == "toml") {
            return self.execute_app();
        }
        // Everything is validated before the guest starts.
        let grants = self.common.grants.to_grants()?;
        let limits = self.common.limits.to_limits();
        let audit = self.common.audit(None)?;
        let file =
            ComponentFile::open(&self.component, &self.common.registry.sources(self.common.state.data_dir.clone()))?;
        // A WASI 0.3 component gets an engine with the component-model async ABI; a 0.2
        // one keeps the faster engine without it.
        let engine = MembraneEngine::new(self.common.engine_settings(&limits, file.wasi_p3))?;
        let (component, outcome) = file.compile(&engine, &self.common.cache())?;
        tracing::debug!(component = %file.name, cache = ?outcome, "compiled");

        let mut argv = vec![file.path.file_name().map_or(file.name.clone(), |n| n.to_string_lossy().into_owned())];
        argv.extend(self.args);
        let status = runtime()?.block_on(
            Command {
                engine: &engine,
                name: &file.name,
                component: &component,
                grants: &grants,
                limits: &limits,
                args: &argv,
                audit: &audit,
            }
            .run(),
        )?;
        // Exit statuses are 0..=255 on the platforms membrane runs on; a guest's larger
        // code is truncated the same way the OS would.
        Ok(status as u8)
    }

    /// Runs an app's entry component, every other component instantiated as its manifest says.
    fn execute_app(self) -> anyhow::Result<u8> {
        if self.common.grants.any() {
            return Err(crate::common::Usage(format!(
                "{}: grants for the components of an app are set in the manifest, as \
                 [component.NAME] grants = {{ ... }}; remove the grant flags",
                self.component.display()
            ))
            .into());
        }
        let spec = AppSpec::load(&self.component)?;
        let audit = self.common.audit(spec.app.audit.as_deref())?;
        let _telemetry = self.common.telemetry()?;
        let build = Build {
            state: self.common.state.options(),
            sources: self.common.registry.sources(self.common.state.data_dir.clone()),
            ..Default::default()
        };
        let app = App::build(spec, &self.common.cache(), audit, build)?;
        let entry = app.spec.app.entry.clone().unwrap_or_default();
        let mut argv = vec![entry];
        argv.extend(self.args);
        let status = runtime()?.block_on(app.run_entry(&argv))?;
        Ok(status as u8)
    }
}

/// One thread: the guest's CPU time is then the thread's, and a command needs no more.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}
