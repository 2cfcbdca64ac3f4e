//! The on-disk compile cache: native code for a component, keyed by the component's sha256
//! and the engine's configuration, checked before it is trusted.
//!
//! wasmtime's own cache (`wasmtime-cache`) keys modules, not our components' digests, and
//! cannot tell us whether an entry was hit; this cache is small enough to own, and owning
//! it lets every entry carry a checksum so a corrupt file is recompiled, never loaded.
//!
//! An entry is two files: `NAME.cwasm`, wasmtime's own artifact, which a warm start maps
//! into memory rather than reading and copying it (that halved the warm start of a 1.4 MB
//! component), and `NAME.cwasm.sum`, a header and the artifact's checksum, checked by
//! streaming the file before wasmtime sees it. The checksum is xxh3-128, not sha256: it
//! guards against a damaged file, not an author (whoever can write the cache directory can
//! write native code into it, checksum and all), and it runs at memory speed.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8] = b"membrane-cwasm-sum-v2\n";
/// Bytes of the checksum after the header.
const SUM_LEN: usize = 16;

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
        let outcome = match open_entry(engine, &path) {
            Ok(component) => {
                tracing::debug!(entry = %path.display(), "compile cache hit");
                return Ok((component, CacheOutcome::Hit));
            }
            Err(Rejected::Missing) => {
                tracing::debug!(entry = %path.display(), "compile cache miss");
                CacheOutcome::Miss
            }
            Err(Rejected::Invalid(reason)) => {
                tracing::warn!(entry = %path.display(), %reason, "compile cache entry rejected; recompiling");
                CacheOutcome::Replaced { reason }
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

enum Rejected {
    Missing,
    Invalid(String),
}

fn sum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sum");
    PathBuf::from(name)
}

fn open_entry(engine: &Engine, path: &Path) -> Result<Component, Rejected> {
    let sum = match std::fs::read(sum_path(path)) {
        Ok(sum) => sum,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejected::Missing),
        Err(e) => return Err(Rejected::Invalid(e.to_string())),
    };
    let expected = sum.strip_prefix(MAGIC).ok_or_else(|| Rejected::Invalid("missing header".into()))?;
    let actual = file_checksum(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Rejected::Missing,
        _ => Rejected::Invalid(e.to_string()),
    })?;
    if expected != actual {
        return Err(Rejected::Invalid("checksum mismatch".into()));
    }
    // SAFETY: the file is byte-for-byte what `precompile_component` produced when the
    // entry was written (its checksum matched just now; entries are replaced by rename,
    // never rewritten in place), and wasmtime checks that it was compiled for this
    // engine's configuration before using it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| Rejected::Invalid(format!("{e}")))
}

/// The checksum of the file at `path`, read in small chunks into one buffer (reading it
/// whole would fault in fresh pages for every byte, which cost more than the hashing).
fn file_checksum(path: &Path) -> std::io::Result<[u8; SUM_LEN]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hasher.digest128().to_le_bytes())
}

fn checksum(payload: &[u8]) -> [u8; SUM_LEN] {
    xxhash_rust::xxh3::xxh3_128(payload).to_le_bytes()
}

/// Writes the artifact and then its checksum, each to a temporary file renamed into
/// place, so a reader never sees a half-written file and concurrent writers do not
/// interleave. A reader between the two renames finds a mismatch and recompiles.
fn write_entry(dir: &Path, path: &Path, serialized: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let persist = |target: &Path, parts: &[&[u8]]| -> std::io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.as_file().sync_data()?;
        file.persist(target).map_err(|e| e.error)?;
        Ok(())
    };
    persist(path, &[serialized])?;
    persist(&sum_path(path), &[MAGIC, &checksum(serialized)])
}
