//! A sandbox: one wasmtime store holding one component instance's state, its WASI context
//! built from its grants, and the limiter, CPU meter and deadlines that enforce its limits.

use crate::audit::Audit;
use crate::budget::HostBudget;
use crate::fault::CpuTimeExceeded;
use crate::limits::{ComponentLimiter, CpuMeter};
use crate::net::NetPolicy;
use crate::outbound::Outbound;
use crate::state::ComponentState;
use crate::state::host::KeyValueHost;
use membrane_manifest::{DirMode, Grants, Limits};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A grant that cannot be honoured as written.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(
        "component `{component}`: cannot grant directory {host} (as {guest}): {source}; \
         create the directory or fix the host path"
    )]
    Dir { component: String, host: PathBuf, guest: String, source: std::io::Error },
    #[error(
        "component `{component}` has a fuel limit, but the engine it runs on does not count fuel; \
         restart membrane so the engine is built for the limit"
    )]
    Fuel { component: String },
}

/// The components a call has passed through, outermost first.
pub type CallChain = Arc<[Arc<str>]>;

/// Everything a sandbox's store holds: the reach of the component running now, and what
/// belongs to the store and is shared by every component in it.
pub struct SandboxState {
    pub(crate) reach: Reach,
    /// The components the call being served has passed through, this one last.
    pub chain: CallChain,
    pub(crate) table: ResourceTable,
    pub limiter: ComponentLimiter,
    pub cpu: Arc<CpuMeter>,
    /// The fuel each call starts with, when the component has a fuel limit.
    pub(crate) fuel: Option<u64>,
    /// Handles to other components' resources that this instance holds through links.
    pub(crate) proxies: HeldProxies,
    /// Providers that live in this store (links with isolation = "component").
    pub(crate) embedded: Vec<Embedded>,
    /// The component's pool slot this instance holds, given back when the store goes.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What one component may reach from its store: its WASI context (directories, env,
/// sockets), its HTTP hooks (the outbound allowlist), its key-value and config grants and
/// its budget of host objects. A store holds the reach of the component running now; a
/// provider living in its consumer's store keeps its own reach aside, and the two trade
/// places on every call across the link, so each component only ever runs with its own
/// grants.
pub(crate) struct Reach {
    pub(crate) wasi: WasiCtx,
    /// What the instance makes the host hold: sockets, host objects, fields and bodies.
    pub(crate) budget: HostBudget,
    http: WasiHttpCtx,
    outbound: Outbound,
    state: ComponentState,
    otel: crate::otel::OtelReach,
}

impl Reach {
    /// The reach `grants` give `component`, within `limits`.
    pub(crate) fn new(
        component: &str,
        grants: &Grants,
        limits: &Limits,
        args: &[String],
        audit: &Audit,
        state: &ComponentState,
    ) -> Result<Reach, GrantError> {
        Ok(Reach {
            wasi: wasi_ctx(component, grants, limits, args, audit, state)?,
            budget: HostBudget::new(component.into(), limits, grants, audit),
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(
                component.into(),
                &grants.outbound_http,
                audit.clone(),
                limits.timeout.map(|t| t.std()),
            ),
            state: state.clone(),
            otel: crate::otel::OtelReach::new(grants.otel),
        })
    }
}

/// A provider instance living in its consumer's store, with its reach set aside.
pub(crate) struct Embedded {
    /// The provider, as an index into the app's components.
    pub(crate) provider: usize,
    pub(crate) instance: wasmtime::component::Instance,
    pub(crate) reach: Reach,
    /// The call chain while it runs, and the consumer's it extends: made once, not per call,
    /// while the consumer is called from the same place.
    pub(crate) chain: Option<(CallChain, CallChain)>,
    /// The provider's functions called so far, found once: a lookup by export index
    /// searches the compiled functions on every call.
    pub(crate) funcs: Vec<(wasmtime::component::ComponentExportIndex, wasmtime::component::Func)>,
}

impl SandboxState {
    /// Trades the reach of the component running now for `reach`: the component whose
    /// reach it is runs next. Each reach keeps its own trace context.
    pub(crate) fn trade_reach(&mut self, reach: &mut Reach) {
        std::mem::swap(&mut self.reach, reach);
    }

    /// Trades the reach of the component running now for that of the provider embedded
    /// at `at`.
    pub(crate) fn trade_reach_with_embedded(&mut self, at: usize) {
        std::mem::swap(&mut self.reach, &mut self.embedded[at].reach);
    }

    /// Makes this store's calls part of the trace `cx` leads (the request's span, or the
    /// link call's): outbound requests and calls across links become its children. Gives
    /// back the trace it was in.
    pub fn join_trace(&mut self, cx: Option<membrane_telemetry::Context>) -> Option<membrane_telemetry::Context> {
        std::mem::replace(&mut self.reach.outbound.trace, cx)
    }

    /// The trace context this store's calls run in, if tracing is on.
    pub fn trace(&self) -> Option<&membrane_telemetry::Context> {
        self.reach.outbound.trace.as_ref()
    }

    /// The component's view of key-value state, for the wasi:keyvalue host.
    pub fn keyvalue(&mut self) -> KeyValueHost<'_> {
        KeyValueHost::new(&self.reach.state.keyvalue, &mut self.table, self.reach.outbound.trace.as_ref())
    }

    /// The component's wasi:otel tracing, under the span its calls run in now.
    pub(crate) fn otel(&mut self) -> crate::otel::OtelHost<'_> {
        crate::otel::OtelHost::new(&mut self.reach.otel, &self.reach.outbound)
    }

    /// The component's own config values, for wasi:config/store.
    pub fn config(&mut self) -> wasmtime_wasi_config::WasiConfig<'_> {
        wasmtime_wasi_config::WasiConfig::new(&self.reach.state.config)
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.reach.http, table: &mut self.table, hooks: &mut self.reach.outbound }
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.reach.wasi, table: &mut self.table }
    }
}

/// Drops the provider's resource behind a proxy handle; implemented by every link.
pub(crate) trait ReleaseProxy: Send + Sync {
    fn release(&self, rep: u32);
}

/// The proxy handles one store holds, by link. When the store goes (its instance ended,
/// trapped, timed out or was abandoned with handles still open) the providers' resources
/// behind them are dropped too: a provider never keeps what a dead consumer made.
#[derive(Default)]
pub(crate) struct HeldProxies(HashMap<(u32, u32), Weak<dyn ReleaseProxy>>);

impl HeldProxies {
    /// Records proxy `rep` of the link whose proxies have type `resource_type`.
    pub(crate) fn hold(&mut self, resource_type: u32, rep: u32, link: Weak<dyn ReleaseProxy>) {
        self.0.insert((resource_type, rep), link);
    }

    /// The proxy was dropped or moved away by the guest itself.
    pub(crate) fn forget(&mut self, resource_type: u32, rep: u32) {
        self.0.remove(&(resource_type, rep));
    }
}

impl Drop for HeldProxies {
    fn drop(&mut self) {
        for ((_, rep), link) in self.0.drain() {
            if let Some(link) = link.upgrade() {
                link.release(rep);
            }
        }
    }
}

/// Builds the store for one instance of `component`: WASI from `grants`, `limits` enforced.
#[allow(clippy::too_many_arguments)]
pub fn new_store(
    engine: &wasmtime::Engine,
    fuel_metered: bool,
    component: &str,
    grants: &Grants,
    limits: &Limits,
    args: &[String],
    audit: &Audit,
    state: &ComponentState,
) -> Result<Store<SandboxState>, GrantError> {
    let mut table = ResourceTable::new();
    table.set_max_capacity(limits.host_resources as usize);
    let reach = Reach::new(component, grants, limits, args, audit, state)?;
    let state = SandboxState {
        reach,
        chain: Arc::new([Arc::from(component)]),
        table,
        limiter: ComponentLimiter::new(limits),
        cpu: Arc::new(CpuMeter::new(limits.cpu.is_some())),
        fuel: limits.fuel,
        proxies: HeldProxies::default(),
        embedded: Vec::new(),
        slot: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Handles the guest's own resources take in the store, bounded like the host's; so
    // are the async ABI's tasks, streams and futures (WASI 0.3), in a table of their own.
    store.set_max_component_handles(limits.host_resources as usize);
    if let Some(table) = store.concurrent_resource_table() {
        table.set_max_capacity(limits.host_resources as usize);
    }
    // An engine counts fuel for every store once any component of the app has a fuel
    // limit; a store that starts with none would trap at its first instruction. (An engine
    // without fuel refuses `set_fuel`, and `App::build` refuses a fuel limit on it.)
    // `fuel_metered` says whether the engine counts fuel: asking the store each time would
    // make (and, with RUST_BACKTRACE set, unwind for) an error on every store of an engine
    // that does not.
    match limits.fuel {
        Some(fuel) => store.set_fuel(fuel).map_err(|_| GrantError::Fuel { component: component.to_string() })?,
        None if fuel_metered => {
            store.set_fuel(u64::MAX).map_err(|_| GrantError::Fuel { component: component.to_string() })?
        }
        None => {}
    }
    let cpu_limit = limits.cpu.map(|d| d.std());
    // Every tick: stop a guest over its CPU budget, else yield so the executor can run
    // other tasks and fire wall-clock timeouts even while the guest never calls the host.
    store.epoch_deadline_callback(move |store| {
        if let Some(limit) = cpu_limit
            && store.data().cpu.used() > limit
        {
            return Err(CpuTimeExceeded(limit).into());
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    Ok(store)
}

/// The WASI context for `grants`: nothing but what is granted.
fn wasi_ctx(
    component: &str,
    grants: &Grants,
    limits: &Limits,
    args: &[String],
    audit: &Audit,
    state: &ComponentState,
) -> Result<WasiCtx, GrantError> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdout().inherit_stderr().args(args);
    // The random bytes of one call are held by the host until the guest takes them.
    builder.max_random_size(limits.host_memory_bytes().min(64 << 20));
    if grants.stdin {
        builder.inherit_stdin();
    }
    for (name, value) in &grants.env {
        builder.env(name, value);
    }
    for dir in &grants.dirs {
        let perms = match dir.mode {
            DirMode::Ro => FsPerms::ReadOnly,
            DirMode::Rw => FsPerms::ReadWrite,
        };
        builder.preopened_dir(&dir.host, &dir.guest, perms).map_err(|e| GrantError::Dir {
            component: component.to_string(),
            host: dir.host.clone(),
            guest: dir.guest.clone(),
            source: std::io::Error::other(format!("{e:#}")),
        })?;
    }
    builder.allow_ip_name_lookup(grants.allow_dns);
    // Every socket is a host file descriptor, so a protocol with no grant gets none at all
    // (`access-denied`); the budget caps how many are open at once, and the policy refuses
    // (and audits) every address no rule allows.
    NetPolicy::new(component, grants, audit, state.stats.clone()).install(grants, &mut builder);
    Ok(builder.build())
}
