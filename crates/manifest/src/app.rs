//! `membrane.toml`: an app as a graph of components, links between them and routes to
//! them. Parsed and validated here; every error names the file, the key and the fix.

use crate::grants::Grants;
use crate::limits::Limits;
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A validated app. Relative paths are already resolved against the manifest's folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSpec {
    /// The manifest this came from.
    pub file: PathBuf,
    pub app: AppSection,
    pub components: BTreeMap<String, ComponentSpec>,
    pub links: Vec<LinkSpec>,
    pub routes: Vec<RouteSpec>,
    pub tenants: BTreeMap<String, TenantSpec>,
    /// Where the app's key-value buckets live.
    pub keyvalue: crate::KeyValueSpec,
}

/// A tenant: the requests whose `Host` is one of `hosts`, with quotas of their own so
/// that one tenant's load never starves another's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub hosts: Vec<String>,
    /// Requests in flight at once; more get 503 with `Retry-After`.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Sustained requests per second (a token bucket); more get 429.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Requests allowed in a burst above the rate [default: the rate].
    #[serde(default)]
    pub burst: Option<u32>,
    /// CPU time per request, capping the component's own limit.
    #[serde(default)]
    pub cpu: Option<Duration>,
    /// Linear memory per request, capping the component's own limit.
    #[serde(default)]
    pub memory: Option<crate::units::ByteSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub name: String,
    /// The component `membrane run app.toml` runs; it exports `wasi:cli/run`.
    #[serde(default)]
    pub entry: Option<String>,
    /// Audit log file (JSON lines), relative to the manifest.
    #[serde(default)]
    pub audit: Option<PathBuf>,
    /// For an app used as a component of another: the interfaces it exports, each as
    /// `"interface" = "component"`.
    #[serde(default)]
    pub exports: BTreeMap<String, String>,
    /// Public keys (`ed25519:<base64>`) one of which must have signed every component.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKey>,
    /// Component instances alive at once across the app, preallocated as slots of the
    /// engine's pool [default: 1000]. Each slot reserves address space (not memory) for
    /// its linear memories, so at most [`MAX_INSTANCE_SLOTS`].
    #[serde(default)]
    pub max_instances: Option<u32>,
}

/// The most instance slots an app may ask for: each reserves 8 GiB of address space
/// (two 4 GiB memory reservations, which let compiled code skip bounds checks), and a
/// process has 128 TiB.
pub const MAX_INSTANCE_SLOTS: u32 = 12_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// A component file, another `membrane.toml` (a nested app), or a registry reference
    /// `oci://REGISTRY/REPOSITORY:TAG` / `…@sha256:<hex>`.
    pub source: PathBuf,
    /// `sha256:<hex>`: refuse to start when the source's digest differs.
    #[serde(default)]
    pub digest: Option<Digest>,
    #[serde(default)]
    pub instances: InstanceMode,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// What the component reads through wasi:config/store; it sees only these keys.
    #[serde(default)]
    pub config: BTreeMap<String, crate::ConfigValue>,
    /// Public keys (`ed25519:<base64>`): the component starts only with a signature by one
    /// of them (`FILE.sig` beside a file, or the one published with an `oci://` source).
    /// The app's `trusted_keys` are added to these.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKey>,
}

/// How a component is instantiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InstanceMode {
    /// A fresh instance for every call; no state survives a call.
    #[default]
    PerCall,
    /// One long-lived instance; calls are serialized and state is kept.
    Singleton,
    /// Up to N instances, reused across calls.
    Pool(u32),
}

/// How a trapped singleton is restarted: at most `max_restarts` in any `window`, after
/// which the component is marked failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window: Duration,
    /// The first restart waits this long; each further one in the window waits twice as long.
    pub backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { max_restarts: 5, window: Duration::from_secs(60), backoff: Duration::from_millis(10) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The consuming component.
    pub from: String,
    /// The WIT interface, with its version: `example:markdown/render@0.1.0`.
    pub import: String,
    /// The providing component.
    pub to: String,
    #[serde(default)]
    pub on_trap: OnTrap,
    /// Per-call deadline.
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub circuit: Option<CircuitSpec>,
    /// How far apart the two components are kept [default: `store`].
    #[serde(default)]
    pub isolation: Isolation,
    /// The bytes that streams across the link (WASI 0.3) may have in flight at once, all
    /// together [default: 16 MiB].
    #[serde(default)]
    pub stream_budget: Option<crate::units::ByteSize>,
}

/// How far apart a link keeps its consumer and provider. Both levels keep the component
/// model's boundary (own linear memories, tables and globals; values copied) and each
/// component's own grants; they differ in what the two share besides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Each in its own store: separate limits and fault domains, and the link's
    /// supervision (retry, fallback, timeout, circuit) between them.
    #[default]
    Store,
    /// The provider lives in its consumer's store, one instance per consumer instance:
    /// shared limits and shared fate (a provider trap fails the consumer's call and ends
    /// both), for a call that costs a fraction of crossing stores.
    Component,
}

/// What a consumer sees when its provider traps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnTrap {
    /// The consumer's call fails with an error naming the provider and the trap.
    #[default]
    Propagate,
    /// Try again up to N more times on fresh instances.
    Retry(u32),
    /// Call the same function on another component that exports the same interface.
    Fallback(String),
}

/// A circuit breaker: open after `failures` consecutive failures, fail fast while open,
/// let one probe through after `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    pub failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default)]
    pub host: Option<String>,
    pub path: String,
    pub component: String,
}

/// A `sha256:<64 hex digits>` pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An ed25519 public key as `membrane keygen` prints it: `ed25519:<base64 of 32 bytes>`.
/// Only its form is checked here; the signature check is the runtime's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey(pub String);

/// A manifest that cannot be used, with where and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: cannot read it: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{file}: {key}: {message}; {fix}")]
    Invalid { file: PathBuf, key: String, message: String, fix: String },
}

impl AppSpec {
    /// Reads and validates `file`, folding nested apps into it.
    pub fn load(file: &Path) -> Result<AppSpec, ManifestError> {
        Self::load_at_depth(file, 0)
    }

    pub(crate) fn load_at_depth(file: &Path, depth: usize) -> Result<AppSpec, ManifestError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ManifestError::Unreadable { file: file.to_owned(), reason: e.to_string() })?;
        Self::parse(file, &text)?.expand_nested(depth)
    }

    /// Parses and validates `text`, read from `file` (used to resolve relative paths).
    pub fn parse(file: &Path, text: &str) -> Result<AppSpec, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut spec = AppSpec {
            file: file.to_owned(),
            app: raw.app,
            components: raw.component,
            links: raw.link,
            routes: raw.route,
            tenants: raw.tenant,
            keyvalue: raw.keyvalue,
        };
        for component in spec.components.values_mut() {
            if !is_oci(&component.source) {
                component.source = resolve(base, &component.source);
            }
            for key in &spec.app.trusted_keys {
                if !component.trusted_keys.contains(key) {
                    component.trusted_keys.push(key.clone());
                }
            }
            for dir in &mut component.grants.dirs {
                dir.host = resolve(base, &dir.host);
            }
            for value in component.config.values_mut() {
                if let crate::ConfigValue::SecretFile { secret_file } = value {
                    *secret_file = resolve(base, secret_file);
                }
            }
        }
        if let Some(audit) = &mut spec.app.audit {
            *audit = resolve(base, audit);
        }
        spec.validate()?;
        Ok(spec)
    }

    pub(crate) fn invalid(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ManifestError {
        ManifestError::Invalid { file: self.file.clone(), key: key.into(), message: message.into(), fix: fix.into() }
    }

    /// A configured host in the form requests are matched on (see [`crate::normalize_host`]).
    fn check_host(&self, key: &str, host: &str) -> Result<String, ManifestError> {
        crate::normalize_host(host).map_err(|e| {
            self.invalid(key, e.to_string(), "write a DNS name or an IP literal, e.g. \"acme.example.com\"")
        })
    }

    fn known_components(&self) -> String {
        let names: Vec<&str> = self.components.keys().map(String::as_str).collect();
        if names.is_empty() { "none are declared".into() } else { format!("declared: {}", names.join(", ")) }
    }

    fn check_component(&self, key: &str, name: &str) -> Result<(), ManifestError> {
        if self.components.contains_key(name) {
            return Ok(());
        }
        Err(self.invalid(
            key,
            format!("no component named {name:?}"),
            format!("declare [component.{name}] or use one of the components ({})", self.known_components()),
        ))
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.app.name.trim().is_empty() {
            return Err(self.invalid("app.name", "the app name is empty", "give the app a name"));
        }
        for name in self.components.keys() {
            if !valid_name(name) {
                return Err(self.invalid(
                    format!("component.{name}"),
                    "a component name must be lowercase letters, digits and dashes, starting with a letter",
                    "rename the component, e.g. [component.renderer]",
                ));
            }
        }
        if let Some(n) = self.app.max_instances
            && !(1..=MAX_INSTANCE_SLOTS).contains(&n)
        {
            return Err(self.invalid(
                "app.max_instances",
                format!(
                    "{n} instance slots is outside 1..={MAX_INSTANCE_SLOTS} (each reserves 8 GiB of address space)"
                ),
                "leave it out for 1000, or give a count in range",
            ));
        }
        for (name, component) in &self.components {
            if let InstanceMode::Pool(0) = component.instances {
                return Err(self.invalid(
                    format!("component.{name}.instances"),
                    "a pool needs at least one instance",
                    "write instances = \"pool:4\" (or \"per-call\" / \"singleton\")",
                ));
            }
            self.validate_state(name, component)?;
            if component.restart.max_restarts > 0 && component.restart.window.std().is_zero() {
                return Err(self.invalid(
                    format!("component.{name}.restart.window"),
                    "the restart window is zero",
                    "give a window such as \"60s\"",
                ));
            }
        }
        self.validate_keyvalue()?;
        if let Some(entry) = &self.app.entry {
            self.check_component("app.entry", entry)?;
        }
        for (interface, component) in &self.app.exports {
            self.check_component(&format!("app.exports.\"{interface}\""), component)?;
        }
        self.validate_links()?;
        self.validate_tenants()?;
        self.validate_routes()
    }

    /// Each link joins two declared components by a WIT interface name, once per import,
    /// with a third component as its fallback.
    fn validate_links(&self) -> Result<(), ManifestError> {
        for (i, link) in self.links.iter().enumerate() {
            let key = |field: &str| format!("link[{i}].{field}");
            self.check_component(&key("from"), &link.from)?;
            self.check_component(&key("to"), &link.to)?;
            if link.from == link.to {
                return Err(self.invalid(
                    key("to"),
                    "a component cannot be linked to itself",
                    "link to another component",
                ));
            }
            if !link.import.contains(':') || !link.import.contains('/') {
                return Err(self.invalid(
                    key("import"),
                    format!("{:?} is not a WIT interface name", link.import),
                    "write it as namespace:package/interface@version, e.g. example:markdown/render@0.1.0",
                ));
            }
            if let OnTrap::Fallback(fallback) = &link.on_trap {
                self.check_component(&key("on_trap"), fallback)?;
                if fallback == &link.to || fallback == &link.from {
                    return Err(self.invalid(
                        key("on_trap"),
                        format!("the fallback {fallback:?} must be a third component"),
                        "name a component other than the link's `from` and `to`",
                    ));
                }
            }
            if let Some(circuit) = &link.circuit
                && circuit.failures == 0
            {
                return Err(self.invalid(key("circuit.failures"), "must be at least 1", "write failures = 5"));
            }
            if link.isolation == Isolation::Component {
                self.validate_component_isolation(i, link)?;
            }
            // A chunk of a stream is up to 64 KiB; the semaphore behind the budget counts
            // in u32 steps.
            if let Some(budget) = link.stream_budget
                && !(64 << 10..=1 << 31).contains(&budget.bytes())
            {
                return Err(self.invalid(
                    key("stream_budget"),
                    format!("{} bytes is outside 64 KiB (one chunk of a stream) to 2 GiB", budget.bytes()),
                    "write stream_budget = \"16MiB\"",
                ));
            }
            if let Some(j) = self.links[..i].iter().position(|l| l.from == link.from && l.import == link.import) {
                return Err(self.invalid(
                    key("import"),
                    format!("{} of component {:?} is already linked by link[{j}]", link.import, link.from),
                    "keep one [[link]] per import of a component",
                ));
            }
        }
        Ok(())
    }

    /// A provider that lives in its consumer's store shares its fate: nothing can retry,
    /// time out or fall back between the two, and it must be an instance per consumer
    /// instance, not one shared by all of them.
    fn validate_component_isolation(&self, i: usize, link: &LinkSpec) -> Result<(), ManifestError> {
        let key = |field: &str| format!("link[{i}].{field}");
        let shared_fate = |field: &str, what: &str| {
            self.invalid(
                key(field),
                format!("{what} needs the provider in a store of its own, but the link has isolation = \"component\""),
                format!("remove `{field}`, or write isolation = \"store\""),
            )
        };
        if link.on_trap != OnTrap::Propagate {
            return Err(shared_fate("on_trap", "a retry or fallback"));
        }
        if link.timeout.is_some() {
            return Err(shared_fate("timeout", "a per-call timeout"));
        }
        if link.circuit.is_some() {
            return Err(shared_fate("circuit", "a circuit breaker"));
        }
        let mode = self.components[&link.to].instances;
        if mode != InstanceMode::PerCall {
            return Err(self.invalid(
                key("isolation"),
                format!(
                    "provider {:?} is instances = \"{mode}\", but isolation = \"component\" gives every \
                     consumer instance a provider instance of its own",
                    link.to
                ),
                format!("make [component.{}] instances = \"per-call\", or write isolation = \"store\"", link.to),
            ));
        }
        Ok(())
    }

    /// Each tenant has hosts of its own and quotas that admit something.
    fn validate_tenants(&self) -> Result<(), ManifestError> {
        let mut seen_hosts: BTreeMap<String, &str> = BTreeMap::new();
        for (name, tenant) in &self.tenants {
            if tenant.hosts.is_empty() {
                return Err(self.invalid(
                    format!("tenant.{name}.hosts"),
                    "a tenant needs at least one host",
                    "write hosts = [\"acme.example.com\"]",
                ));
            }
            for host in &tenant.hosts {
                let host = self.check_host(&format!("tenant.{name}.hosts"), host)?;
                if let Some(other) = seen_hosts.insert(host.clone(), name) {
                    return Err(self.invalid(
                        format!("tenant.{name}.hosts"),
                        format!("{host} already belongs to tenant {other:?}"),
                        "give each host to one tenant",
                    ));
                }
            }
            if tenant.requests_per_second == Some(0) || tenant.max_concurrent == Some(0) {
                return Err(self.invalid(
                    format!("tenant.{name}"),
                    "a quota of 0 would refuse every request",
                    "leave the quota out for no limit, or give at least 1",
                ));
            }
        }
        Ok(())
    }

    /// Each route leads to a declared component, under a host and a path prefix.
    fn validate_routes(&self) -> Result<(), ManifestError> {
        for (i, route) in self.routes.iter().enumerate() {
            self.check_component(&format!("route[{i}].component"), &route.component)?;
            if let Some(host) = &route.host {
                self.check_host(&format!("route[{i}].host"), host)?;
            }
            if !route.path.starts_with('/') {
                return Err(self.invalid(
                    format!("route[{i}].path"),
                    format!("{:?} does not start with /", route.path),
                    "write a path prefix such as \"/\" or \"/api\"",
                ));
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether a `source` names a registry (`oci://…`) rather than a file.
pub fn is_oci(source: &Path) -> bool {
    source.to_str().is_some_and(|s| s.starts_with("oci://"))
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

/// A TOML error with its line and column, and serde's message (which names the key, and
/// for an unknown key, the keys that are allowed).
pub(crate) fn syntax_error(file: &Path, text: &str, error: &toml::de::Error) -> ManifestError {
    let (line, column) = error
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        })
        .unwrap_or((1, 1));
    let mut message = error.message().trim().to_string();
    if message == "missing field `app`" {
        message.push_str("; a membrane.toml starts with an [app] table, e.g. [app] name = \"notes\"");
    }
    ManifestError::Syntax { file: file.to_owned(), line, column, message }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: AppSection,
    #[serde(default)]
    component: BTreeMap<String, ComponentSpec>,
    #[serde(default)]
    link: Vec<LinkSpec>,
    #[serde(default)]
    route: Vec<RouteSpec>,
    #[serde(default)]
    tenant: BTreeMap<String, TenantSpec>,
    #[serde(default)]
    keyvalue: crate::KeyValueSpec,
}
