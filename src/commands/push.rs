//! `membrane push`: publish a component to a registry.

use crate::common::SourceFlags;
use anyhow::Context;
use clap::Parser;
use membrane_runtime::ComponentFile;
use membrane_runtime::registry::{OciRef, Signature, SignatureError, sha256_digest};
use std::path::PathBuf;

/// Publish a component to a registry as a Wasm OCI artifact (config
/// application/vnd.wasm.config.v0+json, one application/wasm layer). Its signature,
/// `FILE.sig` from `membrane sign`, is pushed with it when present.
#[derive(Parser, Debug)]
pub struct PushCommand {
    /// The component (or WASI preview 1 command module) to publish.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Where: oci://REGISTRY/REPOSITORY:TAG.
    #[arg(value_name = "REF")]
    pub reference: String,

    /// Push without the signature even if FILE.sig exists [default: push it].
    #[arg(long)]
    pub no_signature: bool,

    #[command(flatten)]
    pub registry: SourceFlags,
}

impl PushCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let reference: OciRef = self.reference.parse()?;
        anyhow::ensure!(!self.registry.offline(), "--offline: pushing needs the registry; drop --offline");
        anyhow::ensure!(
            reference.digest.is_none(),
            "{reference}: a push names a tag, not a digest (the digest is the registry's to compute); \
             write oci://REGISTRY/REPOSITORY:TAG"
        );
        // Only what membrane can run is published, byte for byte as it is on disk.
        let file = ComponentFile::read(&self.file)?;
        let bytes = std::fs::read(&self.file).with_context(|| format!("{}: cannot read it", self.file.display()))?;
        anyhow::ensure!(
            !file.bytes.is_empty() && bytes.starts_with(b"\0asm"),
            "{}: only binary WebAssembly is pushed; turn the text form into a binary first \
             (e.g. `wasm-tools parse {} -o out.wasm`)",
            self.file.display(),
            self.file.display()
        );
        let sig_path = Signature::path_beside(&self.file);
        let signature = match std::fs::read(&sig_path) {
            Ok(sig) if !self.no_signature => {
                let shown = sig_path.display().to_string();
                let parsed = Signature::parse(&shown, &sig)?;
                let digest = sha256_digest(&bytes);
                if parsed.digest != digest {
                    return Err(SignatureError::Tampered {
                        file: self.file.display().to_string(),
                        signed: parsed.digest,
                        actual: digest,
                    })
                    .with_context(|| {
                        format!("{shown} does not match the file; push with --no-signature to leave it out")
                    });
                }
                Some(sig)
            }
            _ => None,
        };
        let sources = self.registry.sources();
        let title = self.file.file_name().map(|n| n.to_string_lossy().into_owned());
        let pushed = sources.push(&reference, &bytes, title.as_deref(), signature.as_deref())?;
        println!("pushed {} to {reference}", self.file.display());
        println!(
            "  manifest   {}  (run exactly this: {})",
            pushed.manifest_digest,
            reference.with_digest(&pushed.manifest_digest)
        );
        println!("  digest     {}  (pin it: digest = \"{}\")", pushed.layer_digest, pushed.layer_digest);
        println!("  signature  {}", if signature.is_some() { "pushed as a referrer" } else { "none" });
        Ok(())
    }
}
