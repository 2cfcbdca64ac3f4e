//! A trap is data, not a crash: every way a guest can fail becomes a [`Fault`] naming the
//! component, what stopped it and where it was.

use crate::limits::LimitHit;
use std::fmt;
use std::time::Duration;
use wasmtime::{Trap, WasmBacktrace};

/// What stopped a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Its fuel budget ran out.
    OutOfFuel,
    /// It used more CPU time than its limit.
    CpuTime(Duration),
    /// It ran longer than its wall-clock limit (time blocked in host calls included).
    Timeout(Duration),
    /// It tried to hold more linear memory than its limit.
    MemoryLimit { limit: u64 },
    /// It asked for more table elements than its limit.
    TableLimit { limit: u64 },
    /// It exhausted its wasm stack.
    StackOverflow,
    /// It executed `unreachable`: a Rust panic or abort, or a C `abort()`.
    Unreachable,
    /// Any other wasm trap (out-of-bounds access, division by zero, …).
    Trap(String),
    /// A call it made through a link failed, and the link's policy passed that on.
    Link(String),
    /// The host refused or failed a call it made.
    Host(String),
}

impl FaultKind {
    /// A short stable name, for logs, metrics and the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::OutOfFuel => "out_of_fuel",
            FaultKind::CpuTime(_) => "cpu_time",
            FaultKind::Timeout(_) => "timeout",
            FaultKind::MemoryLimit { .. } => "memory_limit",
            FaultKind::TableLimit { .. } => "table_limit",
            FaultKind::StackOverflow => "stack_overflow",
            FaultKind::Unreachable => "unreachable",
            FaultKind::Trap(_) => "trap",
            FaultKind::Link(_) => "link_failed",
            FaultKind::Host(_) => "host_error",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::OutOfFuel => f.write_str("out of fuel: the component used its whole fuel budget"),
            FaultKind::CpuTime(limit) => {
                write!(f, "CPU time limit reached: the component used more than {limit:?} of CPU")
            }
            FaultKind::Timeout(limit) => {
                write!(f, "timed out: the component ran longer than its {limit:?} wall-clock limit")
            }
            FaultKind::MemoryLimit { limit } => write!(
                f,
                "memory limit reached: the component tried to grow its linear memory past {}",
                membrane_manifest::ByteSize(*limit)
            ),
            FaultKind::TableLimit { limit } => {
                write!(f, "table limit reached: the component tried to grow a table past {limit} elements")
            }
            FaultKind::StackOverflow => f.write_str("stack overflow: the component exhausted its wasm stack"),
            FaultKind::Unreachable => f.write_str("wasm `unreachable` executed: the guest panicked or aborted"),
            FaultKind::Trap(message) => write!(f, "trap: {message}"),
            FaultKind::Link(message) => f.write_str(message),
            FaultKind::Host(message) => write!(f, "host error: {message}"),
        }
    }
}

/// A guest failure: which component, what stopped it, and the guest backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub component: String,
    pub kind: FaultKind,
    /// Guest frames, innermost first, as `module!function` where names are known.
    pub backtrace: Vec<String>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "component `{}` stopped: {}", self.component, self.kind)?;
        if !self.backtrace.is_empty() {
            f.write_str("\nguest backtrace:")?;
            for (i, frame) in self.backtrace.iter().enumerate() {
                write!(f, "\n  {i:>2}: {frame}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Fault {}

/// A call the guest made through a link failed and the link's policy passed that on; the
/// text names both sides and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkFailed(pub String);

/// Raised from the epoch callback when a guest's CPU meter passes its limit.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit of {0:?} reached")]
pub struct CpuTimeExceeded(pub Duration);

impl Fault {
    /// Classifies an error that came out of guest code. `hit` is the limit the store's
    /// limiter refused last, if any: a trap right after a refused `memory.grow` is the
    /// memory limit at work, whatever instruction the guest then died on.
    pub fn classify(component: &str, error: &wasmtime::Error, hit: Option<LimitHit>) -> Fault {
        let backtrace = error
            .downcast_ref::<WasmBacktrace>()
            .map(|bt| {
                bt.frames()
                    .iter()
                    .map(|frame| {
                        // `{:#}` leaves out the hash suffix; names that are not Rust
                        // symbols pass through unchanged.
                        let func = frame
                            .func_name()
                            .map_or_else(|| "<unnamed>".to_string(), |n| format!("{:#}", rustc_demangle::demangle(n)));
                        match frame.symbols().first().and_then(|s| Some((s.file()?, s.line()?))) {
                            Some((file, line)) => format!("{func} ({file}:{line})"),
                            None => func.to_string(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = if let Some(link) = error.downcast_ref::<LinkFailed>() {
            FaultKind::Link(link.to_string())
        } else if let Some(exceeded) = error.downcast_ref::<CpuTimeExceeded>() {
            FaultKind::CpuTime(exceeded.0)
        } else if let Some(trap) = error.downcast_ref::<Trap>() {
            match (trap, hit) {
                (Trap::OutOfFuel, _) => FaultKind::OutOfFuel,
                (Trap::StackOverflow, _) => FaultKind::StackOverflow,
                (_, Some(LimitHit::Memory { limit, .. })) => FaultKind::MemoryLimit { limit },
                (_, Some(LimitHit::Table { limit, .. })) => FaultKind::TableLimit { limit },
                (Trap::UnreachableCodeReached, None) => FaultKind::Unreachable,
                (other, None) => FaultKind::Trap(other.to_string()),
            }
        } else {
            match hit {
                Some(LimitHit::Memory { limit, .. }) => FaultKind::MemoryLimit { limit },
                Some(LimitHit::Table { limit, .. }) => FaultKind::TableLimit { limit },
                // The outer layers are wasmtime's backtrace context; the cause is innermost.
                None => FaultKind::Host(explain(error).unwrap_or_else(|| error.root_cause().to_string())),
            }
        };
        Fault { component: component.to_string(), kind, backtrace }
    }
}

/// What a host error that stopped a guest means when one of these limits is its cause:
/// wasmtime's own words name neither the limit nor the fix.
fn explain(error: &wasmtime::Error) -> Option<String> {
    let full = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        ) || cause.to_string().contains("store handle limit exceeded")
    });
    full.then(|| {
        "host resource limit reached: the component holds as many host objects (fields, streams, \
         pollables, handles, …) as its limits.host_resources allows; drop those it no longer \
         needs, or raise limits.host_resources (--max-host-resources)"
            .to_string()
    })
}
