//! `membrane pull`: fetch a component from a registry into membrane's store.

use crate::common::SourceFlags;
use clap::Parser;
use membrane_runtime::ComponentFile;
use membrane_runtime::registry::OciRef;

/// Fetch a component (and the signature published with it) from a registry into
/// membrane's store, verified, so it runs later without the network (`--offline`).
/// A tag is resolved again, following it if it moved.
#[derive(Parser, Debug)]
pub struct PullCommand {
    /// oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST.
    #[arg(value_name = "REF")]
    pub reference: String,

    #[command(flatten)]
    pub registry: SourceFlags,
}

impl PullCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let reference: OciRef = self.reference.parse()?;
        let sources = self.registry.sources();
        anyhow::ensure!(!sources.offline, "--offline: pulling needs the registry; drop --offline");
        let fetched = sources.fetch(&reference)?;
        // Refuse now, not at run time, what membrane could never run.
        ComponentFile::from_bytes(reference.repository.clone(), self.reference.as_ref(), fetched.bytes.clone())?;
        println!("pulled {}", fetched.reference);
        println!("  digest     {}  (pin it: digest = \"{}\")", fetched.digest, fetched.digest);
        println!("  size       {} bytes", fetched.bytes.len());
        println!("  signatures {} published (checked against trusted_keys when it runs)", fetched.signatures.len());
        println!("  stored in  {}", sources.store.root().display());
        Ok(())
    }
}
