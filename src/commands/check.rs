//! `membrane check`: everything about an app that can be known before it runs.

use clap::{Parser, ValueEnum};
use membrane_manifest::AppSpec;
use membrane_runtime::{App, graph_dot, graph_text};
use std::path::PathBuf;

/// Load every component of an app, verify digests, type-check every link against both
/// sides' WIT, report imports nothing satisfies and link cycles, and print the graph.
/// Exits 0 only when the app would start.
#[derive(Parser, Debug)]
pub struct CheckCommand {
    /// The app's manifest.
    #[arg(value_name = "APP.toml")]
    pub manifest: PathBuf,

    /// How to print the graph [default: text].
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,

    #[command(flatten)]
    pub cache: crate::common::CacheFlags,

    #[command(flatten)]
    pub registry: crate::common::SourceFlags,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
}

impl CheckCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        let spec = AppSpec::load(&self.manifest)?;
        let report = App::check(&spec, &self.cache.cache(), &self.registry.sources())?;
        match self.format {
            GraphFormat::Text => print!("{}", graph_text(&spec, &report)),
            GraphFormat::Dot => print!("{}", graph_dot(&spec)),
        }
        for problem in &report.problems {
            eprintln!("{problem}");
        }
        let errors = report.errors().count();
        if errors > 0 {
            eprintln!("{}: {errors} error(s); the app would not start", self.manifest.display());
            return Ok(crate::exit::APP_CHECK);
        }
        eprintln!("{}: ok, the app would start", self.manifest.display());
        Ok(0)
    }
}
