//! A sandbox: one wasmtime store holding one component instance's state, its WASI context
//! built from its grants, and the limiter, CPU meter and deadlines that enforce its limits.

use crate::audit::Audit;
use crate::fault::CpuTimeExceeded;
use crate::limits::{ComponentLimiter, CpuMeter};
use crate::outbound::Outbound;
use crate::pool::CallChain;
use crate::state::ComponentState;
use crate::state::host::KeyValueHost;
use membrane_manifest::{AddrRule, DirMode, Grants, Limits};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
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
}

/// Everything a sandbox's store holds.
pub struct SandboxState {
    pub component: Arc<str>,
    /// The components the call being served has passed through, this one last.
    pub chain: CallChain,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: ComponentLimiter,
    pub cpu: Arc<CpuMeter>,
    http: WasiHttpCtx,
    outbound: Outbound,
    state: ComponentState,
    /// The component's pool slot this instance holds, given back when the store goes.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl SandboxState {
    /// The component's view of key-value state, for the wasi:keyvalue host.
    pub fn keyvalue(&mut self) -> KeyValueHost<'_> {
        KeyValueHost::new(&self.state.keyvalue, &mut self.table)
    }

    /// The component's own config values, for wasi:config/store.
    pub fn config(&mut self) -> wasmtime_wasi_config::WasiConfig<'_> {
        wasmtime_wasi_config::WasiConfig::new(&self.state.config)
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Builds the store for one instance of `component`: WASI from `grants`, `limits` enforced.
pub fn new_store(
    engine: &wasmtime::Engine,
    component: &str,
    grants: &Grants,
    limits: &Limits,
    args: &[String],
    audit: &Audit,
    state: &ComponentState,
) -> Result<Store<SandboxState>, GrantError> {
    let state = SandboxState {
        component: component.into(),
        chain: Arc::new([Arc::from(component)]),
        wasi: wasi_ctx(component, grants, args, audit)?,
        table: ResourceTable::new(),
        limiter: ComponentLimiter::new(limits),
        cpu: Arc::new(CpuMeter::new(limits.cpu.is_some())),
        http: WasiHttpCtx::new(),
        outbound: Outbound::new(
            component.into(),
            &grants.outbound_http,
            audit.clone(),
            limits.timeout.map(|t| t.std()),
        ),
        state: state.clone(),
        slot: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel).expect("the engine counts fuel when a fuel limit is set");
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
fn wasi_ctx(component: &str, grants: &Grants, args: &[String], audit: &Audit) -> Result<WasiCtx, GrantError> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdout().inherit_stderr().args(args);
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
    builder.allow_udp(false);
    // TCP is switched on so that every attempt reaches the address check below, which
    // refuses (and audits) whatever no rule allows.
    builder.allow_tcp(true);
    let rules: Arc<[AddrRule]> = grants.allow_tcp.clone().into();
    let audit = audit.clone();
    let name: Arc<str> = component.into();
    builder.socket_addr_check(move |addr, usage| {
        let allowed = match usage {
            SocketAddrUse::TcpConnect => rules.iter().any(|r| r.allows(addr)),
            // The OS binds a connecting socket to a wildcard address first; wasmtime asks
            // about that implicit bind too. Explicit binds, listens and accepts stay denied.
            SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
            _ => false,
        };
        // Outbound connections are a sensitive use of a grant: audited either way.
        if !allowed {
            audit.record(&name, "denied", &format!("{usage:?} {addr}"), "no grants.allow_tcp rule matches");
        } else if matches!(usage, SocketAddrUse::TcpConnect) {
            audit.record(&name, "granted", &format!("{usage:?} {addr}"), "allowed by grants.allow_tcp");
        }
        Box::pin(std::future::ready(allowed))
    });
    Ok(builder.build())
}
