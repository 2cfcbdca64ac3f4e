//! membrane's own exit codes, one per kind of failure, so scripts can tell them apart.
//! A guest's own exit status passes through unchanged; membrane's codes start at 70.

use membrane_runtime::{AppError, FaultKind, LoadError, RunError};

/// Flags that contradict each other or the target, as clap reports its own usage errors.
pub const USAGE: u8 = 2;
pub const INTERNAL: u8 = 70;
pub const NOT_FOUND: u8 = 71;
pub const NOT_WASM: u8 = 72;
pub const CORE_MODULE: u8 = 73;
pub const INVALID_COMPONENT: u8 = 74;
pub const UNSATISFIED_IMPORT: u8 = 75;
pub const NOT_A_COMMAND: u8 = 76;
pub const BAD_GRANT: u8 = 77;
pub const TRAP: u8 = 80;
pub const OUT_OF_FUEL: u8 = 81;
pub const CPU_TIME: u8 = 82;
pub const TIMEOUT: u8 = 83;
pub const MEMORY_LIMIT: u8 = 84;
pub const STACK_OVERFLOW: u8 = 85;
pub const TABLE_LIMIT: u8 = 86;
pub const LINK_FAILED: u8 = 87;
pub const BAD_MANIFEST: u8 = 78;
pub const APP_CHECK: u8 = 79;
pub const ADMIN_UNREACHABLE: u8 = 88;
pub const ADMIN_REFUSED: u8 = 89;
pub const SIGNATURE: u8 = 90;
pub const REGISTRY: u8 = 91;
/// `membrane chaos`: the experiment refuted its hypothesis.
pub const HYPOTHESIS_REFUTED: u8 = 92;
/// A valid component that uses something membrane does not support yet (a WASI 0.3
/// component in an app, a component-model feature wasmtime 48 lacks).
pub const NOT_SUPPORTED: u8 = 93;

/// The table printed under `membrane run --help`.
pub const HELP: &str = "\
Exit status:
  the guest's own      when it exits (a Rust guest's std::process::exit(n), n != 0, arrives as 1)
  2   usage error (flags that do not fit together or the target)
  70  internal error   71  file not found      72  not WebAssembly
  73  core module, not a component            74  invalid component
  75  import nothing can satisfy              76  not a command (no wasi:cli/run export)
  77  a grant cannot be honoured (e.g. a --dir host path that does not exist, a config
      secret file that cannot be read, a key-value store that cannot be opened)
  80  trap (panic, unreachable, out-of-bounds, ...)   81  out of fuel
  82  CPU time limit      83  wall-clock timeout      84  memory limit
  85  stack overflow      86  table limit        87  a call through a link failed
  78  invalid membrane.toml                   79  the app fails its checks (links, imports, digests, pool slots)
  88  (status, swap, rollback, restart) the admin API cannot be reached
  89  (status, swap, rollback, restart) the admin API refused the change
  90  a signature is missing, untrusted or does not match (trusted_keys)
  91  a registry or membrane's store cannot provide an oci:// component
  92  (chaos) the experiment refuted its hypothesis
  93  the component uses what membrane does not support yet (a WASI 0.3 component in an
      app or `serve`; a component-model feature wasmtime 48 lacks)";

pub fn code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<crate::common::Usage>().is_some() {
            return USAGE;
        }
        match cause.downcast_ref::<membrane_http::ServerError>() {
            Some(membrane_http::ServerError::Concurrency { .. }) => return USAGE,
            Some(membrane_http::ServerError::NoRoutes) => return BAD_MANIFEST,
            None => {}
        }
        if cause.downcast_ref::<crate::admin_client::Unreachable>().is_some() {
            return ADMIN_UNREACHABLE;
        }
        if cause.downcast_ref::<crate::admin_client::Refused>().is_some() {
            return ADMIN_REFUSED;
        }
        if cause.downcast_ref::<membrane_manifest::ManifestError>().is_some() {
            return BAD_MANIFEST;
        }
        if let Some(app) = cause.downcast_ref::<AppError>() {
            match app {
                AppError::Manifest(_) | AppError::NoEntry { .. } => return BAD_MANIFEST,
                AppError::Check { .. }
                | AppError::Digest { .. }
                | AppError::Wit { .. }
                | AppError::Link { .. }
                | AppError::EngineStart { .. }
                | AppError::TenantsChanged { .. }
                | AppError::Slots(_) => {
                    return APP_CHECK;
                }
                AppError::Run(run) => return run_code(run),
                AppError::Store(_) | AppError::Config(_) => return BAD_GRANT,
                AppError::Signature { .. } => return SIGNATURE,
                AppError::Load { .. } => {}
            }
        }
        if let Some(load) = cause.downcast_ref::<LoadError>() {
            return match load {
                LoadError::NotFound { .. } => NOT_FOUND,
                LoadError::Unreadable { .. } => NOT_FOUND,
                LoadError::NotWasm { .. } => NOT_WASM,
                LoadError::CoreModule { .. } => CORE_MODULE,
                LoadError::Invalid { .. } => INVALID_COMPONENT,
                LoadError::WasiP3 { .. } | LoadError::Unsupported { .. } => NOT_SUPPORTED,
                LoadError::Registry(_) => REGISTRY,
            };
        }
        if cause.downcast_ref::<membrane_runtime::registry::RegistryError>().is_some() {
            return REGISTRY;
        }
        if cause.downcast_ref::<membrane_runtime::registry::SignatureError>().is_some() {
            return SIGNATURE;
        }
        if let Some(run) = cause.downcast_ref::<RunError>() {
            return run_code(run);
        }
    }
    INTERNAL
}

fn run_code(run: &RunError) -> u8 {
    match run {
        RunError::Grant(_) => BAD_GRANT,
        RunError::Unsatisfied { .. } => UNSATISFIED_IMPORT,
        RunError::NotCommand { .. } => NOT_A_COMMAND,
        RunError::Fault(fault) => fault_code(&fault.kind),
    }
}

fn fault_code(kind: &FaultKind) -> u8 {
    match kind {
        FaultKind::OutOfFuel => OUT_OF_FUEL,
        FaultKind::CpuTime(_) => CPU_TIME,
        FaultKind::Timeout(_) => TIMEOUT,
        FaultKind::MemoryLimit { .. } => MEMORY_LIMIT,
        FaultKind::TableLimit { .. } => TABLE_LIMIT,
        FaultKind::StackOverflow => STACK_OVERFLOW,
        FaultKind::Link(_) => LINK_FAILED,
        FaultKind::Unreachable | FaultKind::Trap(_) | FaultKind::Host(_) => TRAP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts tell failures apart by these codes: no two may share one, and the help
    /// lists each.
    #[test]
    fn every_exit_code_is_distinct_and_listed() {
        let codes = [
            USAGE,
            INTERNAL,
            NOT_FOUND,
            NOT_WASM,
            CORE_MODULE,
            INVALID_COMPONENT,
            UNSATISFIED_IMPORT,
            NOT_A_COMMAND,
            BAD_GRANT,
            TRAP,
            OUT_OF_FUEL,
            CPU_TIME,
            TIMEOUT,
            MEMORY_LIMIT,
            STACK_OVERFLOW,
            TABLE_LIMIT,
            LINK_FAILED,
            BAD_MANIFEST,
            APP_CHECK,
            ADMIN_UNREACHABLE,
            ADMIN_REFUSED,
            SIGNATURE,
            REGISTRY,
            HYPOTHESIS_REFUTED,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.iter().copied().collect();
        assert_eq!(distinct.len(), codes.len(), "two exit codes share a number: {codes:?}");
        for code in codes {
            assert!(HELP.contains(&format!("{code:<2}  ")), "exit code {code} is missing from the help");
        }
    }
}
