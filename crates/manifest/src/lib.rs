//! What an app asks for, as data: the `membrane.toml` manifest, sizes and durations, the
//! grants a component holds and the limits it runs under. Parsing and validation only; no
//! wasmtime, no I/O beyond reading the manifest file.

/// Types written as one string in TOML and flags (`"64MiB"`, `"retry:3"`) deserialize and
/// serialize through their `FromStr` and `Display`.
macro_rules! serde_via_str {
    ($($ty:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

mod app;
mod experiment;
mod grants;
mod host;
mod limits;
mod nested;
mod outbound;
mod state;
mod units;
mod values;

pub use app::{
    AppSection, AppSpec, CircuitSpec, ComponentSpec, Digest, InstanceMode, Isolation, LinkSpec, MAX_INSTANCE_SLOTS,
    ManifestError, OnTrap, RestartPolicy, RouteSpec, TenantSpec, TrustedKey, is_oci,
};
pub use experiment::{DENIABLE, Expect, Experiment, Injection, Traffic, deny_grants};
pub use grants::{AddrRule, DirGrant, DirMode, GrantError, Grants, Ports};
pub use host::{InvalidHost, normalize_authority, normalize_host};
pub use limits::Limits;
pub use outbound::{HostPattern, OutboundRule, OutboundRuleError, canonical, is_restricted};
pub use state::{Access, Backend, BackendError, BucketGrant, ConfigValue, KeyValueSpec, valid_bucket_name};
pub use units::{ByteSize, Duration, UnitError};
pub use values::InvalidValue;
