//! The limits a component runs under, with safe defaults.

use crate::units::{ByteSize, Duration};
use serde::{Deserialize, Serialize};

/// Limits on one component instance. `None` means "no limit of this kind" for the optional
/// ones; the others always hold and default to values safe for untrusted code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Total linear memory of all the component's core memories.
    pub memory: ByteSize,
    /// Elements of any one table.
    pub table_elements: u64,
    /// Core instances, memories and tables the component may create.
    pub instances: u32,
    /// CPU time the component may use (checked at epoch ticks).
    pub cpu: Option<Duration>,
    /// Deterministic instruction budget (wasmtime fuel).
    pub fuel: Option<u64>,
    /// Wall-clock time, including time blocked in host calls.
    pub timeout: Option<Duration>,
    /// Native stack the guest's wasm may use.
    pub wasm_stack: ByteSize,
    /// Bytes the host may hold on the instance's behalf (wasi:http fields and the buffers
    /// of bodies it has not sent); `None` means as much as `memory`.
    pub host_memory: Option<ByteSize>,
    /// Host objects (resources: fields, streams, pollables, sockets, …) the instance may
    /// hold at once.
    pub host_resources: u32,
    /// TCP and UDP sockets the instance may hold open at once, accepted connections
    /// included; also the most connections a listener keeps pending (its backlog).
    pub sockets: u32,
}

impl Limits {
    pub const DEFAULT_MEMORY: ByteSize = ByteSize::mib(256);
    pub const DEFAULT_TABLE_ELEMENTS: u64 = 100_000;
    pub const DEFAULT_INSTANCES: u32 = 1_000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_WASM_STACK: ByteSize = ByteSize::kib(512);
    pub const DEFAULT_HOST_RESOURCES: u32 = 10_000;
    pub const DEFAULT_SOCKETS: u32 = 64;

    /// The host memory budget in bytes: `host_memory`, else as much as `memory`, so a guest
    /// can make the host hold no more than it may hold itself.
    pub fn host_memory_bytes(&self) -> u64 {
        self.host_memory.unwrap_or(self.memory).bytes()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: Self::DEFAULT_MEMORY,
            table_elements: Self::DEFAULT_TABLE_ELEMENTS,
            instances: Self::DEFAULT_INSTANCES,
            cpu: None,
            fuel: None,
            timeout: Some(Self::DEFAULT_TIMEOUT),
            wasm_stack: Self::DEFAULT_WASM_STACK,
            host_memory: None,
            host_resources: Self::DEFAULT_HOST_RESOURCES,
            sockets: Self::DEFAULT_SOCKETS,
        }
    }
}
