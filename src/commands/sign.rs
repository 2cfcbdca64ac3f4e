//! `membrane sign`: a detached signature over a component's digest.

use anyhow::Context;
use clap::Parser;
use membrane_runtime::registry::{SecretKey, Signature, sha256_digest};
use std::path::PathBuf;

/// Sign a component: an ed25519 signature over its sha256, written to FILE.sig. A
/// component whose trusted_keys include the key's public half then starts; `membrane push`
/// publishes the signature with it.
#[derive(Parser, Debug)]
pub struct SignCommand {
    /// The component (or module) to sign.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The secret key from `membrane keygen`.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
}

impl SignCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.key).with_context(|| {
            format!("--key {}: cannot read it; make one with `membrane keygen`", self.key.display())
        })?;
        let key = SecretKey::from_text(&text).map_err(|reason| {
            anyhow::anyhow!("--key {}: {reason}; give the secret key `membrane keygen` wrote", self.key.display())
        })?;
        let bytes = std::fs::read(&self.file).with_context(|| format!("{}: cannot read it", self.file.display()))?;
        let digest = sha256_digest(&bytes);
        let signature = key.sign(&digest);
        let out = Signature::path_beside(&self.file);
        std::fs::write(&out, signature.to_json()).with_context(|| format!("{}: cannot write it", out.display()))?;
        println!("signed {} ({digest}) with {}; wrote {}", self.file.display(), signature.key, out.display());
        Ok(())
    }
}
