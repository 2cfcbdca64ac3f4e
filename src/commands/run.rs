//! `membrane run`: run a command component once, behind a deny-by-default membrane.

use crate::common::RunCommon;
use anyhow::Context;
use clap::Parser;
use membrane_runtime::{Command, ComponentFile, MembraneEngine};
use std::path::PathBuf;

/// Run a wasi:cli/run component. It sees no file, environment variable or socket unless
/// granted, and is stopped by its limits.
#[derive(Parser, Debug)]
#[command(after_help = crate::exit::HELP)]
pub struct RunCommand {
    /// The component to run (.wasm, or its .wat text form).
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,

    /// Arguments for the guest, after the component (use `--` before ones that start with `-`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,

    #[command(flatten)]
    pub common: RunCommon,
}

impl RunCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        // Everything is validated before the guest starts.
        let grants = self.common.grants.to_grants()?;
        let limits = self.common.limits.to_limits();
        let audit = self.common.audit()?;
        let file = ComponentFile::read(&self.component)?;
        let engine = MembraneEngine::new(self.common.engine_settings(&limits))?;
        let (component, outcome) = file.compile(engine.engine(), &self.common.cache())?;
        tracing::debug!(component = %file.name, cache = ?outcome, "compiled");

        let mut argv = vec![
            file.path
                .file_name()
                .map_or(file.name.clone(), |n| n.to_string_lossy().into_owned()),
        ];
        argv.extend(self.args);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let status = runtime.block_on(
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
}
