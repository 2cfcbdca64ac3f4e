//! `membrane inspect`: what a component imports and exports, and what each import could
//! reach if granted.

use clap::Parser;
use membrane_runtime::ComponentFile;
use std::path::PathBuf;

/// Show a component's imports and exports as WIT, each import with the grant that would
/// give it something, and the component's size and sha256.
#[derive(Parser, Debug)]
pub struct InspectCommand {
    /// The component to inspect: a file or an oci:// reference.
    #[arg(value_name = "COMPONENT")]
    pub component: PathBuf,

    /// Print JSON instead of text [default: text].
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub registry: crate::common::SourceFlags,
}

impl InspectCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let file = ComponentFile::open(&self.component, &self.registry.sources())?;
        let report = membrane_runtime::inspect(&file)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        Ok(())
    }
}
