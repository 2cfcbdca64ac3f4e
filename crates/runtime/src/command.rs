//! Running a `wasi:cli/run` component once, start to finish, behind its membrane.

use crate::audit::Audit;
use crate::capability;
use crate::engine::MembraneEngine;
use crate::fault::Fault;
use crate::pool::Pool;
use crate::sandbox::{GrantError, SandboxState};
use membrane_manifest::{Grants, InstanceMode, Limits, RestartPolicy};
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

/// Why a command did not run to an exit status of its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("{}", unsatisfied_message(component, imports))]
    Unsatisfied { component: String, imports: Vec<(String, String)> },
    #[error(
        "component `{component}` does not export wasi:cli/run, so it is not a command; \
         it exports: {}{hint}",
        if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") },
        hint = if exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler")) {
            "; it is an HTTP handler: serve it with `membrane serve`"
        } else {
            ""
        }
    )]
    NotCommand { component: String, exports: Vec<String> },
    #[error(transparent)]
    Fault(#[from] Fault),
}

fn unsatisfied_message(component: &str, imports: &[(String, String)]) -> String {
    let mut text = format!("component `{component}` cannot start: ");
    for (i, (import, reason)) in imports.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        text.push_str(&format!("it imports {import}, but {reason}"));
    }
    text
}

/// The imports of `component` that nothing in membrane can satisfy, with the reason.
pub fn unsatisfied_imports(engine: &wasmtime::Engine, component: &Component) -> Vec<(String, String)> {
    component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| match capability::of_import(name) {
            capability::Capability::Unsatisfied { reason } => Some((name.to_string(), reason)),
            _ => None,
        })
        .collect()
}

/// A linker with every standard WASI 0.2 interface and wasi:http's client side, holding
/// nothing until granted.
pub fn wasi_linker(engine: &wasmtime::Engine) -> Linker<SandboxState> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links once into a new linker");
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("wasi:http links once into a new linker");
    crate::state::host::add_to_linker(&mut linker, SandboxState::keyvalue, SandboxState::config)
        .expect("wasi:keyvalue and wasi:config link once into a new linker");
    crate::otel::add_to_linker(&mut linker, SandboxState::otel).expect("wasi:otel links once into a new linker");
    crate::budgeted_wasi::add_to_linker(&mut linker).expect("the budgeted WASI functions replace wasmtime's once");
    linker
}

/// One `membrane run` of a single command component.
pub struct Command<'a> {
    pub engine: &'a MembraneEngine,
    pub name: &'a str,
    pub component: &'a Component,
    pub grants: &'a Grants,
    pub limits: &'a Limits,
    /// The guest's argv, program name first.
    pub args: &'a [String],
    pub audit: &'a Audit,
}

impl Command<'_> {
    /// Runs the command to completion; see [`execute`] for the status.
    pub async fn run(self) -> Result<i32, RunError> {
        let engine = self.engine.engine();
        let missing = unsatisfied_imports(engine, self.component);
        if !missing.is_empty() {
            return Err(RunError::Unsatisfied { component: self.name.to_string(), imports: missing });
        }
        let mut linker = wasi_linker(engine);
        if self.engine.settings().component_model_async {
            crate::p3::add_to_linker(&mut linker).expect("WASI 0.3 links once into a new linker");
        }
        let pre = linker.instantiate_pre(self.component).map_err(|e| RunError::Unsatisfied {
            component: self.name.to_string(),
            imports: vec![("an interface".into(), format!("the host's linker refused it: {e:#}"))],
        })?;
        // One component is an app of one: the same instances, the same way in.
        let state = crate::state::ComponentState::none(self.name, self.audit);
        let instances = Pool::new(
            self.name.into(),
            InstanceMode::PerCall,
            self.grants.clone(),
            self.limits.clone(),
            RestartPolicy::default(),
            engine.clone(),
            pre,
            self.audit.clone(),
            state,
            Arc::default(),
            None,
        );
        // A grant that cannot be honoured is the user's to fix, reported as such.
        let store = instances.open_store(self.args, self.limits)?;
        execute(&instances, store).await
    }
}

/// Instantiates `instances`' component in `store` and calls `wasi:cli/run` (0.3 when the
/// component exports it and the engine runs WASI 0.3, else 0.2), within its wall-clock
/// limit. Returns 0 for success, the guest's own code when it called `exit`, 1 when `run`
/// returned an error.
pub async fn execute(instances: &Pool, mut store: Store<SandboxState>) -> Result<i32, RunError> {
    // Only an engine with the component-model async ABI compiles a component that
    // exports wasi:cli/run@0.3.0, so finding the export is enough.
    if let Ok(command) = wasmtime_wasi::p3::bindings::CommandPre::new(instances.pre().clone()) {
        return execute_p3(instances, store, command).await;
    }
    let name = instances.name();
    let component = instances.pre().component().clone();
    let command = CommandPre::new(instances.pre().clone()).map_err(|_| RunError::NotCommand {
        component: name.to_string(),
        exports: component.component_type().exports(instances.pre().engine()).map(|(n, _)| n.to_string()).collect(),
    })?;
    let limit = instances.limits.timeout.map(|t| t.std());
    let status = instances
        .enter(&mut store, limit, async |store| {
            let instance = command.instantiate_async(&mut *store).await?;
            exit_status(instance.wasi_cli_run().call_run(&mut *store).await)
        })
        .await?;
    Ok(status)
}

/// Instantiates the WASI 0.3 command and calls `wasi:cli/run@0.3.0` in a concurrent
/// scope, through [`Pool::enter`] like a 0.2 command: the same CPU, fuel, memory and
/// wall-clock limits, fault reports, audit and exit statuses.
async fn execute_p3(
    pool: &Pool,
    mut store: Store<SandboxState>,
    command: wasmtime_wasi::p3::bindings::CommandPre<SandboxState>,
) -> Result<i32, RunError> {
    let limit = pool.limits.timeout.map(|t| t.std());
    let status = pool
        .enter(&mut store, limit, async |store| {
            let instance = command.instantiate_async(&mut *store).await?;
            let run = store.run_concurrent(async |accessor| instance.wasi_cli_run().call_run(accessor).await).await;
            exit_status(run.and_then(|result| result))
        })
        .await?;
    Ok(status)
}

/// The status of a `wasi:cli/run` call (of either WASI version): 0 for success, 1 when it
/// returned an error, the guest's own code when it called `exit`; a trap stays an error.
fn exit_status(run: wasmtime::Result<Result<(), ()>>) -> wasmtime::Result<i32> {
    match run {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(error),
        },
    }
}
