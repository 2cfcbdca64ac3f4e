//! Talking to a registry with the `oci-client` crate: pull a manifest and its layer, push a
//! component in the Wasm OCI artifact layout, and its signature as a referrer.

use crate::progress::Progress;
use crate::reference::OciRef;
use crate::{RegistryError, SIGNATURE_ARTIFACT_TYPE, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, sha256_digest};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageIndex, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;

/// Layers at least this large are pushed in chunks, so a progress bar can follow them.
const CHUNK: usize = 1 << 20;
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// A connection to registries, with credentials from the docker config file.
pub struct Remote {
    client: oci_client::Client,
    insecure: Vec<String>,
}

/// What `push` published.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest: `oci://…@<this>` names exactly what was pushed.
    pub manifest_digest: String,
    /// The component's own sha256, as a `digest =` pin in membrane.toml.
    pub layer_digest: String,
}

impl Remote {
    /// `insecure` lists registries (host or host:port) reached over plain HTTP.
    pub fn new(insecure: &[String]) -> Remote {
        // reqwest is built without a TLS provider of its own; it uses ring, as the rest of
        // membrane does. Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(insecure.to_vec())
            },
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        Remote { client: oci_client::Client::new(config), insecure: insecure.to_vec() }
    }

    /// Credentials for `registry` from `$DOCKER_CONFIG/config.json` (else
    /// `~/.docker/config.json`): user and password, or an identity token; else anonymous.
    fn auth(registry: &str) -> RegistryAuth {
        match docker_credential::get_credential(registry) {
            Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
                RegistryAuth::Basic(user, password)
            }
            Ok(docker_credential::DockerCredential::IdentityToken(token)) => RegistryAuth::Bearer(token),
            Err(error) => {
                tracing::debug!(%registry, %error, "no registry credentials; pulling anonymously");
                RegistryAuth::Anonymous
            }
        }
    }

    /// The manifest `reference` names, and its digest (checked against the reference's).
    pub async fn manifest(&self, reference: &OciRef) -> Result<(Vec<u8>, String), RegistryError> {
        let auth = Self::auth(&reference.registry);
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference.client_ref(), &auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .map_err(|e| self.error(reference, e, ""))?;
        let digest = sha256_digest(&bytes);
        if let Some(expected) = &reference.digest
            && *expected != digest
        {
            return Err(RegistryError::Altered {
                reference: reference.to_string(),
                what: "a manifest".into(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        Ok((bytes.to_vec(), digest))
    }

    /// The blob `descriptor` names, streamed and checked against its digest and size.
    pub async fn blob(
        &self,
        reference: &OciRef,
        descriptor: &OciDescriptor,
        progress: &Progress,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut stream = self
            .client
            .pull_blob_stream(&reference.client_ref(), descriptor)
            .await
            .map_err(|e| self.error(reference, e, ""))?;
        let expected_size = u64::try_from(descriptor.size).unwrap_or(0);
        let bar = progress.bar(&format!("pull {}", short(&descriptor.digest)), expected_size);
        let mut bytes = Vec::with_capacity(expected_size.min(1 << 30) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(reference, e.into(), ""))?;
            bytes.extend_from_slice(&chunk);
            bar.inc(chunk.len() as u64);
            // A registry that sends more than the manifest declared is not trusted further.
            if bytes.len() as u64 > expected_size {
                break;
            }
        }
        bar.finish();
        let actual = sha256_digest(&bytes);
        if actual != descriptor.digest {
            return Err(RegistryError::Altered {
                reference: reference.to_string(),
                what: "a layer".into(),
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Pushes `component` to `reference` as a Wasm OCI artifact: config
    /// `application/vnd.wasm.config.v0+json` and one `application/wasm` layer, titled
    /// `title` (the file name, which oras and other clients save it as).
    pub async fn push(
        &self,
        reference: &OciRef,
        component: &[u8],
        title: Option<&str>,
        progress: &Progress,
    ) -> Result<Pushed, RegistryError> {
        let auth = Self::auth(&reference.registry);
        self.client.store_auth_if_needed(&reference.registry, &auth).await;
        let layer_digest = sha256_digest(component);
        self.push_blob(reference, component, &layer_digest, progress).await?;

        // The wasm config (v0): what wkg and the Wasm OCI artifact spec write.
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        }))
        .expect("json");
        let config_digest = sha256_digest(&config);
        self.push_blob(reference, &config, &config_digest, &Progress::Hidden).await?;

        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
            config: descriptor(WASM_CONFIG_MEDIA_TYPE, &config_digest, config.len()),
            layers: vec![OciDescriptor {
                annotations: title.map(|t| [("org.opencontainers.image.title".to_string(), t.to_string())].into()),
                ..descriptor(WASM_LAYER_MEDIA_TYPE, &layer_digest, component.len())
            }],
            subject: None,
            artifact_type: None,
            annotations: None,
        };
        let manifest_digest = self.push_manifest(reference, &manifest).await?;
        Ok(Pushed { manifest_digest, layer_digest })
    }

    /// Publishes `signature` (a `.sig` file) as a referrer of the manifest `subject_digest`:
    /// an artifact whose `subject` is the component, listed also under the referrers tag
    /// `sha256-<hex>` for registries without the referrers API.
    pub async fn push_signature(
        &self,
        reference: &OciRef,
        subject_digest: &str,
        subject_size: usize,
        signature: &[u8],
    ) -> Result<String, RegistryError> {
        let signature_digest = sha256_digest(signature);
        self.push_blob(reference, signature, &signature_digest, &Progress::Hidden).await?;
        let empty = b"{}";
        let empty_digest = sha256_digest(empty);
        self.push_blob(reference, empty, &empty_digest, &Progress::Hidden).await?;
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
            config: descriptor(EMPTY_CONFIG_MEDIA_TYPE, &empty_digest, empty.len()),
            layers: vec![descriptor(SIGNATURE_ARTIFACT_TYPE, &signature_digest, signature.len())],
            subject: Some(descriptor(OCI_IMAGE_MEDIA_TYPE, subject_digest, subject_size)),
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let sig_manifest_digest = sha256_digest(&bytes);
        let by_digest = OciRef { tag: None, ..reference.with_digest(&sig_manifest_digest) };
        self.push_manifest_bytes(&by_digest, bytes.clone(), OCI_IMAGE_MEDIA_TYPE).await?;

        // The referrers tag schema: an index of the subject's referrers under `sha256-<hex>`,
        // keeping any other kinds of referrer already listed there.
        let tag = subject_digest.replace(':', "-");
        let tag_ref = OciRef { tag: Some(tag), digest: None, ..reference.clone() };
        let mut index = match self
            .client
            .pull_manifest_raw(&tag_ref.client_ref(), &Self::auth(&reference.registry), &[OCI_IMAGE_INDEX_MEDIA_TYPE])
            .await
        {
            Ok((bytes, _)) => serde_json::from_slice::<OciImageIndex>(&bytes).ok(),
            Err(_) => None,
        }
        .unwrap_or(OciImageIndex {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.into()),
            manifests: Vec::new(),
            artifact_type: None,
            annotations: None,
        });
        // Every signer's signature stays listed; the same one pushed again is listed once.
        index.manifests.retain(|m| m.digest != sig_manifest_digest);
        index.manifests.push(ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: sig_manifest_digest.clone(),
            size: bytes.len() as i64,
            platform: None,
            annotations: None,
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
        });
        self.push_manifest_bytes(&tag_ref, serde_json::to_vec(&index).expect("json"), OCI_IMAGE_INDEX_MEDIA_TYPE)
            .await?;
        Ok(sig_manifest_digest)
    }

    /// The signatures published for the manifest `manifest_digest` (at most 16).
    pub async fn signatures(&self, reference: &OciRef, manifest_digest: &str) -> Result<Vec<Vec<u8>>, RegistryError> {
        let subject = reference.with_digest(manifest_digest);
        let index = self
            .client
            .pull_referrers(&subject.client_ref(), Some(SIGNATURE_ARTIFACT_TYPE))
            .await
            .map_err(|e| self.error(reference, e, ""))?;
        let mut signatures = Vec::new();
        for entry in index.manifests.iter().take(16) {
            let sig_ref = OciRef { tag: None, ..reference.with_digest(&entry.digest) };
            if !crate::reference::valid_sha256(&entry.digest) {
                continue;
            }
            let (bytes, _) = self.manifest(&sig_ref).await?;
            let Ok(manifest) = serde_json::from_slice::<OciImageManifest>(&bytes) else { continue };
            // A signature is a few hundred bytes; anything large is not one of ours.
            match manifest.layers.first() {
                Some(layer) if layer.size <= 64 << 10 && crate::reference::valid_sha256(&layer.digest) => {
                    signatures.push(self.blob(&sig_ref, layer, &Progress::Hidden).await?);
                }
                _ => {}
            }
        }
        Ok(signatures)
    }

    async fn push_blob(
        &self,
        reference: &OciRef,
        data: &[u8],
        digest: &str,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let image = reference.client_ref();
        let exists = self.client.blob_exists(&image, digest).await.map_err(|e| self.error(reference, e, ""))?;
        if exists {
            return Ok(());
        }
        if data.len() < CHUNK {
            self.client.push_blob(&image, data.to_vec(), digest).await.map_err(|e| self.error(reference, e, ""))?;
            return Ok(());
        }
        let bar = progress.bar(&format!("push {}", short(digest)), data.len() as u64);
        let chunks: Vec<bytes::Bytes> =
            bytes::Bytes::copy_from_slice(data).chunks(CHUNK).map(bytes::Bytes::copy_from_slice).collect();
        let tick = bar.clone();
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            tick.inc(chunk.len() as u64);
            Ok(chunk)
        });
        self.client
            .push_blob_stream(&image, stream, digest, Some(data.len() as u64))
            .await
            .map_err(|e| self.error(reference, e, ""))?;
        bar.finish();
        Ok(())
    }

    async fn push_manifest(&self, reference: &OciRef, manifest: &OciImageManifest) -> Result<String, RegistryError> {
        // Serialized here, not by the client, so the digest printed is of the bytes sent.
        let bytes = serde_json::to_vec(manifest).expect("json");
        let digest = sha256_digest(&bytes);
        self.push_manifest_bytes(reference, bytes, OCI_IMAGE_MEDIA_TYPE).await?;
        Ok(digest)
    }

    async fn push_manifest_bytes(
        &self,
        reference: &OciRef,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .push_manifest_raw(&reference.client_ref(), bytes, media_type.parse().expect("a valid media type"))
            .await
            .map_err(|e| self.error(reference, e, ""))?;
        Ok(())
    }

    /// A registry failure as the user should read it: unreachable, or refused and why.
    pub(crate) fn error(&self, reference: &OciRef, error: OciDistributionError, hint: &str) -> RegistryError {
        let insecure = self.insecure.iter().any(|h| h == &reference.registry || h == reference.host());
        let connect = match &error {
            OciDistributionError::RequestError(e) => e.is_connect() || e.is_timeout(),
            _ => false,
        };
        let mut reason = format!("{error}");
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let mut hint = hint.to_string();
        if connect && !insecure {
            hint.push_str(&format!(
                "; if the registry speaks plain HTTP, add --insecure-registry {}",
                reference.registry
            ));
        }
        if connect {
            RegistryError::Unreachable {
                reference: reference.to_string(),
                registry: reference.registry.clone(),
                reason,
                hint,
            }
        } else {
            use oci_client::errors::OciErrorCode;
            let unknown = |code: &OciErrorCode| {
                matches!(
                    code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            };
            let reason = match &error {
                OciDistributionError::ImageManifestNotFoundError(_)
                | OciDistributionError::ServerError { code: 404, .. } => "no such repository, tag or digest".into(),
                OciDistributionError::RegistryError { envelope, .. }
                    if envelope.errors.iter().any(|e| unknown(&e.code)) =>
                {
                    format!("no such repository, tag or digest ({reason})")
                }
                OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                    format!(
                        "{reason}; log in with `docker login {}` (membrane reads the docker config file)",
                        reference.registry
                    )
                }
                _ => reason,
            };
            RegistryError::Refused {
                reference: reference.to_string(),
                registry: reference.registry.clone(),
                reason,
                hint,
            }
        }
    }
}

/// A digest shortened for a progress line.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> OciDescriptor {
    OciDescriptor { media_type: media_type.into(), digest: digest.into(), size: size as i64, ..Default::default() }
}
