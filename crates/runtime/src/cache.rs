//! The on-disk compile cache: native code for a component, keyed by the component's sha256
//! and the engine's configuration, checked before it is trusted.
//!
//! wasmtime's own cache (`wasmtime-cache`) keys modules, not our components' digests, and
//! cannot tell us whether an entry was hit; this cache is small enough to own, and owning
//! it lets every entry carry a checksum so a corrupt file is recompiled, never loaded.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8] = b"membrane-cwasm-v1\n";

/// What the cache did for one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a verified entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but failed verification or deserialization; recompiled and replaced.
    Replaced { reason: String },
    /// The cache is turned off.
    Disabled,
    /// Already compiled in this process (an unchanged component of a running app).
    Memory,
}

#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    pub fn disabled() -> Self {
        CompileCache { dir: None }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        CompileCache { dir: Some(dir.into()) }
    }

    /// `$XDG_CACHE_HOME/membrane`, else `$HOME/.cache/membrane`; disabled when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("membrane"))
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component for `wasm` (whose sha256 is `digest`), from the cache when a verified
    /// entry exists, else compiled and stored. A failure to write the cache is logged and
    /// does not fail the load.
    pub fn load(&self, engine: &Engine, wasm: &[u8], digest: &[u8; 32]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, wasm)?, CacheOutcome::Disabled));
        };
        let path = dir.join(entry_name(engine, digest));
        let outcome = match std::fs::read(&path) {
            Ok(bytes) => match open_entry(engine, &bytes) {
                Ok(component) => {
                    tracing::debug!(entry = %path.display(), "compile cache hit");
                    return Ok((component, CacheOutcome::Hit));
                }
                Err(reason) => {
                    tracing::warn!(entry = %path.display(), %reason, "compile cache entry rejected; recompiling");
                    CacheOutcome::Replaced { reason }
                }
            },
            Err(_) => {
                tracing::debug!(entry = %path.display(), "compile cache miss");
                CacheOutcome::Miss
            }
        };
        let serialized = engine.precompile_component(wasm)?;
        if let Err(error) = write_entry(dir, &path, &serialized) {
            tracing::warn!(entry = %path.display(), %error, "could not write the compile cache");
        }
        // SAFETY: `serialized` was produced just now by this engine's own compiler.
        let component = unsafe { Component::deserialize(engine, &serialized)? };
        Ok((component, outcome))
    }
}

/// `<component sha256>-<engine hash>.cwasm`: a new wasmtime or a different engine
/// configuration gives a new name, so stale entries are never looked at.
fn entry_name(engine: &Engine, digest: &[u8; 32]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    format!("{}-{:016x}.cwasm", hex::encode(digest), hasher.finish())
}

fn open_entry(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let rest = bytes.strip_prefix(MAGIC).ok_or("missing header")?;
    if rest.len() < 32 {
        return Err("truncated".into());
    }
    let (sum, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the payload is byte-for-byte what `precompile_component` produced when the
    // entry was written (its checksum matched), and wasmtime checks that it was compiled
    // for this engine's configuration before using it.
    unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e}"))
}

/// Writes the entry to a temporary file and renames it into place, so a reader never
/// sees a half-written entry and concurrent writers do not interleave.
fn write_entry(dir: &Path, path: &Path, serialized: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(serialized))?;
    file.write_all(serialized)?;
    file.as_file().sync_data()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
