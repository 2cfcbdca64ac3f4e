//! Reading a component from disk or a registry: telling a component from everything that
//! is not one (a WASI preview 1 command module is adapted into one), and compiling it
//! through the cache.

use crate::cache::{CacheOutcome, CompileCache};
use crate::engine::MembraneEngine;
use membrane_registry::{OciRef, RegistryError, Sources};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;

/// Why a file could not be loaded as a component. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file; check the path (relative paths start in the current directory)")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read it: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not WebAssembly: it does not start with the `\\0asm` magic bytes; \
         membrane runs WebAssembly components (a .wasm file built for wasm32-wasip2)"
    )]
    NotWasm { path: PathBuf },
    #[error(
        "{path} is a core WebAssembly module, not a component, and not a WASI preview 1 command \
         (one that exports `_start` and imports only wasi_snapshot_preview1), which membrane would \
         adapt; build a component instead (Rust: `cargo build --target wasm32-wasip2`)"
    )]
    CoreModule { path: PathBuf },
    #[error("{path} is not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path} is a WASI 0.3 component, and membrane does not support {what} for WASI 0.3 \
         components yet (issue #14); build it for WASI 0.2 to use it there"
    )]
    WasiP3 { path: PathBuf, what: String },
    #[error(
        "{path} uses {feature}, which membrane (on wasmtime 48) does not support yet; \
         build the component without it"
    )]
    Unsupported { path: PathBuf, feature: String },
    #[error(transparent)]
    Registry(Box<RegistryError>),
}

impl From<RegistryError> for LoadError {
    fn from(error: RegistryError) -> Self {
        LoadError::Registry(Box::new(error))
    }
}

/// What a WASI 0.3 component lacks on an engine made without the async ABI: it happens
/// only when the component's WASI 0.3 use went unnoticed before the engine was chosen.
const NO_ASYNC_ENGINE: &str = "an engine without the component-model async ABI";

/// Where a component's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File,
    /// A registry, through membrane's store; with the signatures published for it.
    Registry {
        reference: String,
        signatures: Vec<Vec<u8>>,
    },
}

/// The bytes of a component file, checked to be a component binary.
#[derive(Debug, Clone)]
pub struct ComponentFile {
    /// A short name for messages: the file name without `.wasm`.
    pub name: String,
    pub path: PathBuf,
    /// The component's binary (after WAT parsing or preview 1 adaptation).
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`: the compile cache's key.
    pub sha256: [u8; 32],
    /// sha256 of the file as read (or the registry layer): what `digest` pins and
    /// signatures cover, and what `sha256sum` prints.
    pub source_sha256: [u8; 32],
    /// Whether `bytes` is a WASI preview 1 module adapted into a component.
    pub adapted_p1: bool,
    /// Whether it is a WASI 0.3 component, which needs an engine with the component-model
    /// async ABI ([`crate::EngineSettings::component_model_async`]).
    pub wasi_p3: bool,
    pub origin: Origin,
}

impl ComponentFile {
    /// Reads `path`, accepting a component binary or its text (WAT) form.
    pub fn read(path: &Path) -> Result<ComponentFile, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound { path: path.to_owned() },
            _ => LoadError::Unreadable { path: path.to_owned(), source },
        })?;
        let name =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        Self::from_bytes(name, path, bytes)
    }

    /// Reads `source`: a file, or an `oci://` reference resolved through `sources`.
    pub fn open(source: &Path, sources: &Sources) -> Result<ComponentFile, LoadError> {
        let Some(reference) = OciRef::from_source(source) else {
            return Self::read(source);
        };
        let fetched = sources.fetch(&reference?)?;
        let name = fetched.reference.repository.rsplit('/').next().unwrap_or("component").to_string();
        let mut file = Self::from_bytes(name, source, fetched.bytes)?;
        file.origin = Origin::Registry { reference: fetched.reference.to_string(), signatures: fetched.signatures };
        Ok(file)
    }

    pub fn from_bytes(name: String, path: &Path, bytes: Vec<u8>) -> Result<ComponentFile, LoadError> {
        let source_sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let text = looks_like_text(&bytes);
        let bytes = if text {
            wat::parse_bytes(&bytes)
                .map_err(|e| LoadError::Invalid { path: path.to_owned(), reason: e.to_string() })?
                .into_owned()
        } else {
            bytes
        };
        let adapted_p1 = wasmparser::Parser::is_core_wasm(&bytes);
        let bytes = if adapted_p1 {
            if !crate::preview1::is_command(&bytes) {
                return Err(LoadError::CoreModule { path: path.to_owned() });
            }
            crate::preview1::adapt(&bytes)
                .map_err(|e| LoadError::Invalid { path: path.to_owned(), reason: format!("{e:#}") })?
        } else {
            bytes
        };
        if !wasmparser::Parser::is_component(&bytes) {
            return Err(LoadError::NotWasm { path: path.to_owned() });
        }
        // Most files are components as they are: their digest is the file's.
        let sha256 = if !text && !adapted_p1 { source_sha256 } else { Sha256::digest(&bytes).into() };
        let wasi_p3 = crate::p3::needs_async(&bytes);
        Ok(ComponentFile {
            name,
            path: path.to_owned(),
            bytes,
            sha256,
            source_sha256,
            adapted_p1,
            wasi_p3,
            origin: Origin::File,
        })
    }

    /// `sha256:<hex>` of the file as read: what a `digest` pin or a signature names.
    pub fn source_digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.source_sha256))
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Compiles the component for `engine`, through `cache` (whose entries are keyed by the
    /// engine's settings, so a WASI 0.3 engine's code never mixes with a 0.2 one's). A WASI
    /// 0.3 component needs an engine with the component-model async ABI, which `run` and
    /// apps build when one of their components is a WASI 0.3 one.
    pub fn compile(
        &self,
        engine: &MembraneEngine,
        cache: &CompileCache,
    ) -> Result<(Component, CacheOutcome), LoadError> {
        if self.wasi_p3 && !engine.settings().component_model_async {
            return Err(LoadError::WasiP3 { path: self.path.clone(), what: NO_ASYNC_ENGINE.into() });
        }
        cache.load(engine.engine(), &self.bytes, &self.sha256).map_err(|e| {
            let reason = format!("{e:#}");
            match crate::p3::missing_feature(&reason) {
                Some(feature)
                    if !self.wasi_p3 && !engine.settings().component_model_async && feature.contains("async") =>
                {
                    LoadError::WasiP3 { path: self.path.clone(), what: NO_ASYNC_ENGINE.into() }
                }
                Some(feature) => LoadError::Unsupported { path: self.path.clone(), feature },
                None => LoadError::Invalid { path: self.path.clone(), reason },
            }
        })
    }
}

/// WAT starts with `(` after optional whitespace and comments; binaries start with `\0asm`.
fn looks_like_text(bytes: &[u8]) -> bool {
    !bytes.starts_with(b"\0asm")
        && std::str::from_utf8(&bytes[..bytes.len().min(4096)]).is_ok_and(|s| {
            let s = s.trim_start();
            s.starts_with('(') || s.starts_with(";;")
        })
}
