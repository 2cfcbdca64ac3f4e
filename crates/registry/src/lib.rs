//! Components from OCI registries: `oci://` references, pull and push in the Wasm OCI
//! artifact layout, the content-addressed store they are kept in, and ed25519 signatures.
//!
//! The runtime asks [`Sources::fetch`] for a reference and gets verified bytes and their
//! digest; nothing past this crate knows where a component came from.

pub mod progress;
pub mod reference;
pub mod remote;
pub mod signature;
pub mod sources;
pub mod store;

pub use reference::OciRef;
pub use signature::{KeyError, PublicKey, SecretKey, Signature, SignatureError};
pub use sources::{Fetched, Sources};
pub use store::Store;

/// The Wasm OCI artifact layout (as used by wkg, Spin and wasmCloud): this config media type
/// and exactly one layer holding the component.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The artifact type of a membrane signature pushed as a referrer of a component.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.membrane.signature.v1+json";

/// Why a component could not be had from a registry or the store. Each names the
/// reference and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{reference}: not an OCI reference: {reason}; write oci://REGISTRY/REPOSITORY:TAG or \
         oci://REGISTRY/REPOSITORY@sha256:DIGEST (e.g. oci://ghcr.io/acme/hello:1.0)"
    )]
    BadReference { reference: String, reason: String },
    #[error(
        "{reference}: cannot reach the registry {registry}: {reason}; check that it is up and the \
         address is right{hint}"
    )]
    Unreachable { reference: String, registry: String, reason: String, hint: String },
    #[error("{reference}: the registry {registry} refused: {reason}{hint}")]
    Refused { reference: String, registry: String, reason: String, hint: String },
    #[error(
        "{reference}: not in membrane's store ({store}) and --offline is set; run \
         `membrane pull {reference}` while online, or drop --offline"
    )]
    NotStored { reference: String, store: String },
    #[error(
        "{reference}: the store entry {path} is corrupted: its content is sha256:{actual}, not \
         {expected}; {fix}"
    )]
    Corrupted { reference: String, path: String, expected: String, actual: String, fix: String },
    #[error(
        "{reference}: not a Wasm component artifact: {reason}; publish it with `membrane push` (or \
         any client) as config {WASM_CONFIG_MEDIA_TYPE} and one {WASM_LAYER_MEDIA_TYPE} layer"
    )]
    NotWasmArtifact { reference: String, reason: String },
    #[error(
        "{reference}: the registry sent {what} that is sha256:{actual}, not the {expected} it named; the registry or the network altered it"
    )]
    Altered { reference: String, what: String, expected: String, actual: String },
    #[error("membrane's store {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
