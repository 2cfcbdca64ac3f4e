//! Flags shared by every verb that runs components: grants, limits, the compile cache and
//! registries.
//! Flattened into each verb, never copied.

use anyhow::Context;
use clap::Args;
use membrane_manifest::{AddrRule, ByteSize, DirGrant, Duration, Grants, Limits};
use membrane_runtime::{Audit, CompileCache, EngineSettings, Sources};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Args, Debug)]
pub struct RunCommon {
    #[command(flatten)]
    pub grants: GrantFlags,
    #[command(flatten)]
    pub limits: LimitFlags,

    #[command(flatten)]
    pub cache: CacheFlags,

    #[command(flatten)]
    pub state: StateFlags,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// Append audit events (denials, traps) as JSON lines to FILE [default: none; events
    /// still go to the log].
    #[arg(long, value_name = "FILE", help_heading = "Audit")]
    pub audit_log: Option<PathBuf>,

    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to the collector at URL, such
    /// as http://localhost:4318 [default: $OTEL_EXPORTER_OTLP_ENDPOINT, else no tracing].
    /// OTEL_SERVICE_NAME and OTEL_TRACES_SAMPLER(_ARG) are honoured.
    #[arg(long, value_name = "URL", help_heading = "Telemetry")]
    pub otlp_endpoint: Option<String>,
}

/// Where compiled components are kept between runs.
#[derive(Args, Debug)]
#[command(next_help_heading = "Cache")]
pub struct CacheFlags {
    /// Where compiled components are cached [default: $XDG_CACHE_HOME/membrane, else
    /// ~/.cache/membrane].
    #[arg(long, value_name = "DIR", env = "MEMBRANE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile every time; read and write no cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Where an app's key-value buckets live (for apps whose components hold grants.keyvalue).
#[derive(Args, Debug)]
#[command(next_help_heading = "State")]
pub struct StateFlags {
    /// Directory for the embedded key-value store, one file per app [default:
    /// $XDG_DATA_HOME/membrane, else ~/.local/share/membrane].
    #[arg(long, value_name = "DIR", env = "MEMBRANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The key-value backend, overriding the manifest's [keyvalue] backend: `embedded` or a
    /// Redis URL (redis://[user:password@]host:port[/db]) shared by every node [default: the
    /// manifest's, else embedded]. Prefer the environment variable for a URL with a
    /// password: command lines are visible to other users; its value is never shown.
    #[arg(long, value_name = "BACKEND", env = "MEMBRANE_KEYVALUE", hide_env_values = true)]
    pub keyvalue: Option<membrane_manifest::Backend>,
}

impl StateFlags {
    pub fn options(&self) -> membrane_runtime::StateOptions {
        membrane_runtime::StateOptions { data_dir: self.data_dir.clone(), backend: self.keyvalue.clone() }
    }
}

/// Where `oci://` components come from. They are kept in the data dir (`--data-dir`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Registries")]
pub struct RegistryFlags {
    /// Contact no registry: `oci://` components come from membrane's store only, a tag as
    /// the digest it had when last pulled.
    #[arg(long)]
    pub offline: bool,

    /// Reach this registry (HOST or HOST:PORT) over plain HTTP, without TLS. Repeatable
    /// [default: HTTPS for every registry].
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
}

/// `--data-dir` for verbs that keep no state but read membrane's store.
#[derive(Args, Debug)]
#[command(next_help_heading = "Registries")]
pub struct DataDirFlag {
    /// Where membrane keeps data between runs, such as pulled components (under `oci/`)
    /// [default: $XDG_DATA_HOME/membrane, else ~/.local/share/membrane].
    #[arg(long, value_name = "DIR", env = "MEMBRANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Where `oci://` components come from, for verbs without [`StateFlags`]: the registry
/// flags with a data dir of their own.
#[derive(Args, Debug)]
pub struct SourceFlags {
    #[command(flatten)]
    pub data: DataDirFlag,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

impl SourceFlags {
    pub fn sources(&self) -> Sources {
        self.registry.sources(self.data.data_dir.clone())
    }

    pub fn offline(&self) -> bool {
        self.registry.offline
    }
}

impl RegistryFlags {
    /// Sources with pulled components kept under `data_dir` (else the default data dir).
    pub fn sources(&self, data_dir: Option<PathBuf>) -> Sources {
        let mut sources = Sources::new(data_dir, self.offline, self.insecure_registry.clone());
        sources.progress = membrane_runtime::registry::progress::Progress::for_stderr();
        sources
    }
}

/// What the guest may reach. Nothing unless granted here.
#[derive(Args, Debug)]
#[command(next_help_heading = "Grants (deny by default)")]
pub struct GrantFlags {
    /// Preopen host directory HOST as GUEST; add `:ro` for read-only (no write, truncate,
    /// create, rename, link, unlink or set-times). Repeatable [default: no directories].
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]")]
    pub dirs: Vec<DirGrant>,

    /// Give the guest environment variable NAME, with VALUE or, when `=VALUE` is left out,
    /// the host's value. Repeatable [default: an empty environment].
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<String>,

    /// Allow outbound TCP connections to an address: IP:PORT, [IPv6]:PORT, a CIDR (any
    /// port), CIDR:PORT or CIDR:FIRST-LAST. Repeatable [default: no connections].
    #[arg(long = "allow-tcp", value_name = "ADDR")]
    pub allow_tcp: Vec<AddrRule>,

    /// Allow binding and listening on a local TCP address, and accepting the connections
    /// it gets: an address as for --allow-tcp, IP:0 for an ephemeral port. Anyone who can
    /// reach the host can reach the port. Repeatable [default: no listeners].
    #[arg(long = "allow-tcp-bind", value_name = "ADDR")]
    pub allow_tcp_bind: Vec<AddrRule>,

    /// Allow sending UDP datagrams to (and connecting to) a peer address, as for
    /// --allow-tcp; replies from it are received. Repeatable [default: no UDP].
    #[arg(long = "allow-udp", value_name = "ADDR")]
    pub allow_udp: Vec<AddrRule>,

    /// Allow binding a local UDP address (IP:0 for an ephemeral port); a bound socket
    /// receives datagrams from any peer. Repeatable [default: no UDP].
    #[arg(long = "allow-udp-bind", value_name = "ADDR")]
    pub allow_udp_bind: Vec<AddrRule>,

    /// Allow outbound HTTP requests (wasi:http) to an origin: scheme://host[:port], with
    /// `*.` wildcards; loopback and private addresses only when named as IPs. Repeatable
    /// [default: none].
    #[arg(long = "allow-http", value_name = "ORIGIN")]
    pub allow_http: Vec<membrane_manifest::OutboundRule>,

    /// Allow DNS lookups through wasi:sockets/ip-name-lookup [default: refused].
    #[arg(long)]
    pub allow_dns: bool,

    /// Connect the guest's standard input to membrane's [default: empty stdin].
    #[arg(long)]
    pub stdin: bool,

    /// Allow the guest to add spans of its own to the trace it runs in (wasi:otel tracing)
    /// [default: refused].
    #[arg(long)]
    pub allow_otel: bool,
}

/// How much the guest may use before it is stopped.
#[derive(Args, Debug)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Total linear memory of the component, all its memories together.
    #[arg(long, value_name = "SIZE", default_value_t = Limits::DEFAULT_MEMORY)]
    pub max_memory: ByteSize,

    /// Elements in any one table.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_TABLE_ELEMENTS)]
    pub max_table_elements: u64,

    /// Core instances (and memories and tables) the component may create.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_INSTANCES)]
    pub max_instances: u32,

    /// CPU time the guest may use, e.g. 500ms [default: no CPU limit; --timeout still holds].
    #[arg(long, value_name = "DURATION")]
    pub cpu_time: Option<Duration>,

    /// Instruction budget (wasmtime fuel); deterministic, unlike --cpu-time [default: none].
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,

    /// Wall-clock limit, including time blocked in host calls; `none` for no limit.
    #[arg(long, value_name = "DURATION", default_value_t = Timeout(Some(Limits::DEFAULT_TIMEOUT)))]
    pub timeout: Timeout,

    /// Native stack the guest's wasm may use.
    #[arg(long, value_name = "SIZE", default_value_t = Limits::DEFAULT_WASM_STACK)]
    pub max_wasm_stack: ByteSize,

    /// Bytes the host may hold on an instance's behalf: wasi:http fields and unsent body
    /// buffers; over it the guest traps [default: as much as --max-memory].
    #[arg(long, value_name = "SIZE")]
    pub max_host_memory: Option<ByteSize>,

    /// Host objects (fields, streams, pollables, sockets, …) an instance may hold at once;
    /// over it the guest traps.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_HOST_RESOURCES)]
    pub max_host_resources: u32,

    /// TCP and UDP sockets an instance may hold open at once (accepted connections too,
    /// and at most this many pending on a listener); over it, creating or accepting one
    /// fails with `new-socket-limit`. Without a grant for a protocol (--allow-tcp,
    /// --allow-tcp-bind; --allow-udp, --allow-udp-bind) no socket of it is created at all.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_SOCKETS)]
    pub max_sockets: u32,
}

/// A duration, or `none`.
#[derive(Debug, Clone, Copy)]
pub struct Timeout(pub Option<Duration>);

impl FromStr for Timeout {
    type Err = membrane_manifest::UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" | "0" => Ok(Timeout(None)),
            s => s.parse().map(|d| Timeout(Some(d))),
        }
    }
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => d.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Flags that do not fit together or do not fit the target; exits like a clap usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

impl GrantFlags {
    /// Whether any grant was given on the command line.
    pub fn any(&self) -> bool {
        let GrantFlags {
            dirs,
            env,
            allow_tcp,
            allow_tcp_bind,
            allow_udp,
            allow_udp_bind,
            allow_http,
            allow_dns,
            stdin,
            allow_otel,
        } = self;
        let sockets = [allow_tcp, allow_tcp_bind, allow_udp, allow_udp_bind];
        !dirs.is_empty()
            || !env.is_empty()
            || sockets.iter().any(|rules| !rules.is_empty())
            || !allow_http.is_empty()
            || *allow_dns
            || *stdin
            || *allow_otel
    }

    pub fn to_grants(&self) -> anyhow::Result<Grants> {
        let mut env = std::collections::BTreeMap::new();
        for item in &self.env {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = std::env::var(item).with_context(|| {
                        format!("--env {item}: the host has no variable {item}; give a value with --env {item}=VALUE")
                    })?;
                    (item.clone(), value)
                }
            };
            anyhow::ensure!(!name.is_empty(), "--env {item}: the variable name is empty");
            env.insert(name, value);
        }
        Ok(Grants {
            dirs: self.dirs.clone(),
            env,
            allow_tcp: self.allow_tcp.clone(),
            allow_tcp_bind: self.allow_tcp_bind.clone(),
            allow_udp: self.allow_udp.clone(),
            allow_udp_bind: self.allow_udp_bind.clone(),
            allow_dns: self.allow_dns,
            stdin: self.stdin,
            outbound_http: self.allow_http.clone(),
            keyvalue: Vec::new(),
            otel: self.allow_otel,
        })
    }
}

impl LimitFlags {
    pub fn to_limits(&self) -> Limits {
        Limits {
            memory: self.max_memory,
            table_elements: self.max_table_elements,
            instances: self.max_instances,
            cpu: self.cpu_time,
            fuel: self.fuel,
            timeout: self.timeout.0,
            wasm_stack: self.max_wasm_stack,
            host_memory: self.max_host_memory,
            host_resources: self.max_host_resources,
            sockets: self.max_sockets,
        }
    }
}

impl CacheFlags {
    pub fn cache(&self) -> CompileCache {
        if self.no_cache {
            return CompileCache::disabled();
        }
        match self.cache_dir.clone().or_else(CompileCache::default_dir) {
            Some(dir) => CompileCache::at(dir),
            None => CompileCache::disabled(),
        }
    }
}

impl RunCommon {
    /// Tracing for this process, when an OTLP endpoint is given; keep it until the end,
    /// when it sends what is left.
    /// A collector address or OTLP variable membrane cannot use is a usage error.
    pub fn telemetry(&self) -> anyhow::Result<Option<membrane_telemetry::Telemetry>> {
        use membrane_telemetry::TelemetryError;
        match membrane_telemetry::Telemetry::install(self.otlp_endpoint.as_deref()) {
            Ok(telemetry) => Ok(telemetry),
            Err(error @ (TelemetryError::Endpoint { .. } | TelemetryError::Variable { .. })) => {
                Err(Usage(error.to_string()).into())
            }
            Err(error) => Err(error.into()),
        }
    }

    pub fn cache(&self) -> CompileCache {
        self.cache.cache()
    }

    pub fn engine_settings(&self, limits: &Limits, component_model_async: bool) -> EngineSettings {
        EngineSettings {
            fuel: limits.fuel.is_some(),
            max_wasm_stack: limits.wasm_stack.bytes() as usize,
            pooling: None,
            component_model_async,
        }
    }

    /// The audit sink: `--audit-log`, else `fallback` (an app's `[app] audit`), else the
    /// log only.
    pub fn audit(&self, fallback: Option<&std::path::Path>) -> anyhow::Result<Audit> {
        match self.audit_log.as_deref().or(fallback) {
            Some(path) => Audit::to_file(path)
                .with_context(|| format!("audit log {}: cannot open it for appending", path.display())),
            None => Ok(Audit::default()),
        }
    }
}
