//! `membrane swap`, `rollback` and `restart`: changes to a running app through its admin
//! API, which checks a new build against the whole app before it serves.

use crate::admin_client::AdminFlags;
use anyhow::Context;
use clap::Parser;
use serde_json::Value;
use std::path::PathBuf;

/// Replace a component of a running `membrane serve` with a new build. It is compiled and
/// type-checked against every link and route first; requests in flight finish on the old
/// build. An incompatible build is refused and nothing changes.
#[derive(Parser, Debug)]
pub struct SwapCommand {
    #[command(flatten)]
    pub admin: AdminFlags,
    /// The component to replace, as named in the app.
    pub component: String,
    /// The new build (uploaded, so the server may be on another host).
    pub file: PathBuf,
}

/// Return a component of a running `membrane serve` to the build before its last swap.
#[derive(Parser, Debug)]
pub struct RollbackCommand {
    #[command(flatten)]
    pub admin: AdminFlags,
    pub component: String,
}

/// Restart a component of a running `membrane serve`: clear a failed singleton and drop
/// idle pooled instances.
#[derive(Parser, Debug)]
pub struct RestartCommand {
    #[command(flatten)]
    pub admin: AdminFlags,
    pub component: String,
}

impl SwapCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        let bytes = std::fs::read(&self.file).with_context(|| format!("{}: cannot read it", self.file.display()))?;
        let change =
            self.admin.post(&format!("/api/components/{}/swap", self.component), Some((bytes, "application/wasm")))?;
        print_change(&change);
        Ok(0)
    }
}

impl RollbackCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        let change = self.admin.post(&format!("/api/components/{}/rollback", self.component), None)?;
        print_change(&change);
        Ok(0)
    }
}

impl RestartCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        self.admin.post(&format!("/api/components/{}/restart", self.component), None)?;
        println!("{}: restarted", self.component);
        Ok(0)
    }
}

fn print_change(change: &Value) {
    let revision = |side: &str| {
        let r = &change[side];
        let digest = r["digest"].as_str().unwrap_or("");
        format!("revision {} ({})", r["revision"], digest.get(..19).unwrap_or(digest))
    };
    println!(
        "{} {}: {} -> {}",
        change["component"].as_str().unwrap_or("?"),
        change["action"].as_str().unwrap_or("changed"),
        revision("from"),
        revision("to"),
    );
}
