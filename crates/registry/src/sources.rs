//! Where the runtime gets a component named by an `oci://` reference: from the store when
//! it holds a verified copy, else from the registry (then kept in the store).

use crate::progress::Progress;
use crate::reference::{OciRef, valid_sha256};
use crate::remote::{Pushed, Remote};
use crate::store::{Blob, Store};
use crate::{RegistryError, WASM_LAYER_MEDIA_TYPE};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use std::path::PathBuf;

/// Older tools (wasm-to-oci) name the layer so; it holds the same bytes.
const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// How `oci://` sources are resolved: the store, whether the network may be used, which
/// registries speak plain HTTP.
#[derive(Debug, Clone)]
pub struct Sources {
    pub store: Store,
    pub offline: bool,
    pub insecure: Vec<String>,
    pub progress: Progress,
}

/// A component had from a registry or the store, verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The reference, with the manifest digest it resolved to.
    pub reference: OciRef,
    pub bytes: Vec<u8>,
    /// The component's sha256 (its layer digest), `sha256:<hex>`.
    pub digest: String,
    /// The signatures published for it (each a `.sig` file's bytes).
    pub signatures: Vec<Vec<u8>>,
}

impl Default for Sources {
    /// The default data dir, online, HTTPS only, no progress bars.
    fn default() -> Self {
        let data_dir = Store::default_data_dir().unwrap_or_else(|| std::env::temp_dir().join("membrane"));
        Sources {
            store: Store::in_data_dir(&data_dir),
            offline: false,
            insecure: Vec::new(),
            progress: Progress::Hidden,
        }
    }
}

impl Sources {
    pub fn new(data_dir: Option<PathBuf>, offline: bool, insecure: Vec<String>) -> Sources {
        let mut sources = Sources { offline, insecure, ..Sources::default() };
        if let Some(dir) = data_dir {
            sources.store = Store::in_data_dir(&dir);
        }
        sources
    }

    /// The component `reference` names. A digest reference is served from the store
    /// without the network when the store holds it; a tag is resolved by the registry each
    /// time (so a moved tag is followed) or, `--offline`, by the digest recorded when it
    /// was last resolved. Online, the published signatures are fetched again.
    pub fn fetch(&self, reference: &OciRef) -> Result<Fetched, RegistryError> {
        block_on(self.resolve(reference))
    }

    /// Publishes `component` (titled `title`, its file name) at `reference`, and `signature`
    /// (a `.sig` file) as its referrer.
    pub fn push(
        &self,
        reference: &OciRef,
        component: &[u8],
        title: Option<&str>,
        signature: Option<&[u8]>,
    ) -> Result<Pushed, RegistryError> {
        block_on(async {
            let remote = Remote::new(&self.insecure);
            let pushed = remote.push(reference, component, title, &self.progress).await?;
            if let Some(signature) = signature {
                let manifest = self.manifest_size(&remote, reference, &pushed.manifest_digest).await?;
                remote.push_signature(reference, &pushed.manifest_digest, manifest, signature).await?;
            }
            Ok(pushed)
        })
    }

    async fn manifest_size(&self, remote: &Remote, reference: &OciRef, digest: &str) -> Result<usize, RegistryError> {
        Ok(remote.manifest(&reference.with_digest(digest)).await?.0.len())
    }

    async fn resolve(&self, reference: &OciRef) -> Result<Fetched, RegistryError> {
        let remote = (!self.offline).then(|| Remote::new(&self.insecure));
        let named = reference.to_string();

        // 1. The manifest digest: the reference's own, else the tag's.
        let manifest_digest = match (&reference.digest, &remote) {
            (Some(digest), _) => digest.clone(),
            (None, None) => self
                .store
                .tag(reference)
                .ok_or_else(|| RegistryError::NotStored { reference: named.clone(), store: self.store_dir() })?,
            (None, Some(remote)) => {
                let (bytes, digest) =
                    remote.manifest(reference).await.map_err(|e| self.with_offline_hint(reference, e))?;
                self.store.write_blob(&digest, &bytes)?;
                self.store.record_tag(reference, &digest)?;
                digest
            }
        };
        let pinned = reference.with_digest(&manifest_digest);

        // 2. The manifest itself, from the store (checked) or the registry.
        let manifest_bytes = self.blob_or_fetch(&pinned, &manifest_digest, remote.as_ref(), None).await?;
        let layer = wasm_layer(&pinned, &manifest_bytes)?;

        // 3. The component.
        let bytes = self.blob_or_fetch(&pinned, &layer.digest, remote.as_ref(), Some(&layer)).await?;

        // 4. The signatures published for it, as the registry lists them now; those
        //    fetched before still count offline or when the registry is down.
        if let Some(remote) = &remote {
            match remote.signatures(&pinned, &manifest_digest).await {
                Ok(signatures) => {
                    for signature in signatures {
                        self.store.write_signature(&layer.digest, &signature)?;
                    }
                }
                Err(error) => tracing::debug!(reference = %pinned, %error, "no signatures fetched"),
            }
        }
        Ok(Fetched {
            reference: OciRef { tag: reference.tag.clone(), ..pinned },
            bytes,
            signatures: self.store.signatures(&layer.digest),
            digest: layer.digest,
        })
    }

    /// The blob `digest`: from the store when it verifies; otherwise from the registry,
    /// verified and stored. A corrupted entry is fetched again online and refused offline.
    async fn blob_or_fetch(
        &self,
        reference: &OciRef,
        digest: &str,
        remote: Option<&Remote>,
        layer: Option<&OciDescriptor>,
    ) -> Result<Vec<u8>, RegistryError> {
        let found = self.store.read_blob(digest)?;
        let remote = match (found, remote) {
            (Blob::Verified(bytes), _) => return Ok(bytes),
            (Blob::Missing, None) => {
                return Err(RegistryError::NotStored { reference: reference.to_string(), store: self.store_dir() });
            }
            (Blob::Corrupted { path, actual }, None) => {
                return Err(RegistryError::Corrupted {
                    reference: reference.to_string(),
                    path: path.display().to_string(),
                    expected: digest.into(),
                    actual,
                    fix: format!("run `membrane pull {reference}` without --offline to fetch it again"),
                });
            }
            (Blob::Corrupted { path, actual }, Some(remote)) => {
                tracing::warn!(
                    entry = %path.display(), expected = digest, %actual,
                    "store entry corrupted; fetching it again from the registry"
                );
                remote
            }
            (Blob::Missing, Some(remote)) => remote,
        };
        let bytes = match layer {
            Some(layer) => remote.blob(reference, layer, &self.progress).await?,
            None => remote.manifest(reference).await.map_err(|e| self.with_offline_hint(reference, e))?.0,
        };
        self.store.write_blob(digest, &bytes)?;
        Ok(bytes)
    }

    /// For an unreachable registry, tells whether the store could serve the reference.
    fn with_offline_hint(&self, reference: &OciRef, error: RegistryError) -> RegistryError {
        match error {
            RegistryError::Unreachable { reference: r, registry, reason, mut hint } => {
                let recorded = reference.digest.clone().or_else(|| self.store.tag(reference));
                if let Some(digest) = recorded
                    && matches!(self.store.read_blob(&digest), Ok(Blob::Verified(_)))
                {
                    hint.push_str(&format!(
                        "; membrane's store holds {digest} for it: add --offline to run that copy, or name it as {}",
                        reference.with_digest(&digest)
                    ));
                }
                RegistryError::Unreachable { reference: r, registry, reason, hint }
            }
            other => other,
        }
    }

    fn store_dir(&self) -> String {
        self.store.root().display().to_string()
    }
}

/// The one component layer of a Wasm OCI artifact.
fn wasm_layer(reference: &OciRef, manifest: &[u8]) -> Result<OciDescriptor, RegistryError> {
    let not_wasm = |reason: String| RegistryError::NotWasmArtifact { reference: reference.to_string(), reason };
    let manifest: OciImageManifest = serde_json::from_slice(manifest)
        .map_err(|e| not_wasm(format!("its manifest is not an OCI image manifest ({e})")))?;
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE || l.media_type == LEGACY_WASM_LAYER_MEDIA_TYPE)
        .collect();
    match wasm.as_slice() {
        [layer] if manifest.layers.len() == 1 && valid_sha256(&layer.digest) => Ok((*layer).clone()),
        [_] if manifest.layers.len() == 1 => Err(not_wasm("its layer digest is not sha256".into())),
        _ => Err(not_wasm(format!(
            "it has {} layer(s) of types [{}]",
            manifest.layers.len(),
            manifest.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Runs a registry operation to completion from synchronous code, on a thread of its own
/// so that it works whether or not the caller is inside an async runtime.
fn block_on<F: std::future::Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("starting the registry client's runtime")
                    .block_on(future)
            })
            .join()
            .expect("the registry client does not panic")
    })
}
