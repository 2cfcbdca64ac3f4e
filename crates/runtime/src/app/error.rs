//! Why an app cannot be built or cannot serve: each error names the component or file, the
//! cause and the fix.

use super::check::Problem;
use crate::command::RunError;
use crate::file::LoadError;
use crate::state::{ConfigError, StoreError};
use membrane_manifest::ManifestError;
use membrane_registry::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("component `{component}`: {source}")]
    Load {
        component: String,
        #[source]
        source: LoadError,
    },
    #[error(
        "component `{component}`: digest mismatch: membrane.toml pins {expected} but {path} is \
         sha256:{actual}; if the new file is intended, update `digest` in [component.{component}]"
    )]
    Digest { component: String, path: String, expected: String, actual: String },
    #[error("component `{component}`: refused to start: {source}")]
    Signature {
        component: String,
        #[source]
        source: SignatureError,
    },
    #[error("component `{component}`: cannot read its WIT: {reason}")]
    Wit { component: String, reason: String },
    #[error("{file}: the app cannot start:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Check { file: String, problems: Vec<Problem> },
    #[error("{file}: the app has no entry to run; set [app] entry = \"<a component that exports wasi:cli/run>\"")]
    NoEntry { file: String },
    #[error("component `{component}`: the host could not link it: {reason}")]
    Link { component: String, reason: String },
    #[error(
        "{file}: cannot make an engine for this app: {reason}; lower [app] max_instances or \
         the components' memory limits"
    )]
    EngineStart { file: String, reason: String },
    #[error(
        "{file}: the [tenant.*] tables changed; tenants' quotas are set when the server starts, \
         so restart membrane to apply them (the running version keeps serving)"
    )]
    TenantsChanged { file: String },
    #[error(transparent)]
    Run(Box<RunError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Slots(#[from] crate::slots::SlotError),
}

/// The app cannot serve yet: its key-value store does not answer.
#[derive(Debug, thiserror::Error)]
#[error("key-value store {location}: {cause}")]
pub struct NotReady {
    pub location: String,
    pub cause: StoreError,
}
