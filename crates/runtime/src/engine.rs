//! The wasmtime engine membrane runs everything on, and the epoch ticker that lets the
//! host interrupt, meter and time out guest code.

use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. Every deadline and CPU check is a multiple of it,
/// so it bounds how far a guest can overrun a limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each freed memory and table slot reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 1 << 20;

/// Engine-wide settings. Two engines with equal settings compile identically, which is why
/// these (and not per-component limits) are part of the compile cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineSettings {
    /// Count fuel in compiled code (needed only when some component has a fuel limit).
    pub fuel: bool,
    /// Native stack wasm may use, in bytes.
    pub max_wasm_stack: usize,
    /// Preallocate slots for this many instances (wasmtime's pooling allocator with
    /// copy-on-write memory images), so a fresh instance or a call's fiber stack costs
    /// microseconds; `None` allocates on demand, which suits a single short run.
    pub pooling: Option<Pooling>,
    /// The component-model async ABI and wasmtime's concurrency support, which WASI 0.3
    /// components need. Off unless one is loaded: it slows every WASI 0.2 call.
    pub component_model_async: bool,
}

/// Sizes of the pooling allocator's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pooling {
    /// Component instances alive at once, across the whole engine.
    pub instances: u32,
    /// The largest linear memory any one instance may have, in bytes.
    pub max_memory: usize,
    /// The most elements any one table may have.
    pub table_elements: usize,
}

impl Pooling {
    // A Rust component is a handful of core instances (program, adapter, shims) with one
    // or two memories; the totals give each instance slot room for that, and the
    // per-component maxima leave room for larger toolchains' output. One component may
    // still take more than its part, which is why `crate::slots` divides the totals
    // among an app's components.
    /// Core instances, across the whole engine.
    pub fn core_instances(&self) -> u32 {
        self.instances.saturating_mul(8)
    }

    /// Linear memories, across the whole engine.
    pub fn memories(&self) -> u32 {
        self.instances.saturating_mul(2)
    }

    /// Tables, across the whole engine.
    pub fn tables(&self) -> u32 {
        self.instances.saturating_mul(4)
    }
}

/// The most core instances, memories and tables one component instance may have.
/// Instance slots an app's engine preallocates (virtual memory only until used) unless
/// its manifest sets `[app] max_instances`.
pub const APP_INSTANCE_SLOTS: u32 = 1000;

pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 16;
pub const MAX_TABLES_PER_COMPONENT: u32 = 32;

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { fuel: false, max_wasm_stack: 512 << 10, pooling: None, component_model_async: false }
    }
}

/// What an engine lacks that a version of an app needs, each in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join(", "))]
pub struct EngineLacks(pub Vec<String>);

impl EngineSettings {
    /// What an app needs: fuel counting if any component has a fuel limit, a stack as large
    /// as the largest limit (the stack is engine-wide in wasmtime), and pooled slots for
    /// `[app] max_instances` instances of the largest memory and table, and the
    /// component-model async ABI only when `wasi_p3` (some component is a WASI 0.3 one):
    /// a WASI 0.2-only app keeps the faster engine.
    pub fn for_app(spec: &membrane_manifest::AppSpec, wasi_p3: bool) -> EngineSettings {
        let components = spec.components.values();
        EngineSettings {
            fuel: components.clone().any(|c| c.limits.fuel.is_some()),
            max_wasm_stack: components
                .clone()
                .map(|c| c.limits.wasm_stack.bytes() as usize)
                .max()
                .unwrap_or(EngineSettings::default().max_wasm_stack),
            pooling: Some(Pooling {
                instances: spec.app.max_instances.unwrap_or(APP_INSTANCE_SLOTS),
                max_memory: components.clone().map(|c| c.limits.memory.bytes() as usize).max().unwrap_or(0),
                table_elements: components.map(|c| c.limits.table_elements as usize).max().unwrap_or(0),
            }),
            component_model_async: wasi_p3,
        }
    }

    /// Whether an engine built with these settings can run what `needed` asks for; if not,
    /// what is missing.
    pub fn covers(&self, needed: &EngineSettings) -> Result<(), EngineLacks> {
        let mut missing = Vec::new();
        if needed.fuel && !self.fuel {
            missing.push("fuel counting (a component now has a fuel limit)".to_string());
        }
        if needed.component_model_async && !self.component_model_async {
            missing.push("the component-model async ABI (a component is a WASI 0.3 component)".to_string());
        }
        if needed.max_wasm_stack > self.max_wasm_stack {
            missing.push(format!(
                "a wasm stack of {} (the engine has {})",
                membrane_manifest::ByteSize(needed.max_wasm_stack as u64),
                membrane_manifest::ByteSize(self.max_wasm_stack as u64)
            ));
        }
        match (&self.pooling, &needed.pooling) {
            (Some(have), Some(need)) => {
                if need.instances > have.instances {
                    missing.push(format!("{} instance slots (the engine has {})", need.instances, have.instances));
                }
                if need.max_memory > have.max_memory {
                    missing.push(format!(
                        "memory slots of {} (the engine's hold {})",
                        membrane_manifest::ByteSize(need.max_memory as u64),
                        membrane_manifest::ByteSize(have.max_memory as u64)
                    ));
                }
                if need.table_elements > have.table_elements {
                    missing.push(format!(
                        "tables of {} elements (the engine's hold {})",
                        need.table_elements, have.table_elements
                    ));
                }
            }
            (None, Some(_)) => missing.push("pooled instance slots".to_string()),
            _ => {}
        }
        if missing.is_empty() { Ok(()) } else { Err(EngineLacks(missing)) }
    }
}

/// A wasmtime engine with epoch interruption driven by a background thread.
#[derive(Clone)]
pub struct MembraneEngine {
    engine: Engine,
    settings: EngineSettings,
    _ticker: Arc<Ticker>,
}

impl MembraneEngine {
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // WASI 0.2 components call and are called synchronously; without the
            // component-model-async machinery each call takes wasmtime's direct fiber
            // path. Only an engine for a WASI 0.3 component turns it on.
            .concurrency_support(settings.component_model_async)
            .wasm_component_model_async(settings.component_model_async)
            .consume_fuel(settings.fuel)
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable)
            // The async stack must hold the wasm stack plus room for host frames.
            .max_wasm_stack(settings.max_wasm_stack)
            .async_stack_size(settings.max_wasm_stack + (1 << 20));
        if let Some(pooling) = settings.pooling {
            let n = pooling.instances;
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(n)
                .total_core_instances(pooling.core_instances())
                .total_memories(pooling.memories())
                .total_tables(pooling.tables())
                .total_stacks(n)
                .total_gc_heaps(1)
                .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
                .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
                .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
                .max_memory_size(pooling.max_memory)
                .table_elements(pooling.table_elements)
                // A call's fiber stack is reused at once; returning its pages to the OS
                // after every call would cost a system call and page faults each time.
                .async_stack_keep_resident(settings.max_wasm_stack + (1 << 20))
                // A freed slot's dirty pages are reset in place (memset, only the pages
                // the kernel reports written when PAGEMAP_SCAN is there) instead of being
                // returned with madvise and faulted in again by the next instance: the
                // largest single cost of a fresh instance per request.
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT)
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool)).memory_init_cow(true);
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let ticker = Ticker::start(&engine);
        Ok(MembraneEngine { engine, settings, _ticker: ticker })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the last engine handle is gone.
struct Ticker;

impl Ticker {
    fn start(engine: &Engine) -> Arc<Ticker> {
        let ticker = Arc::new(Ticker);
        let alive: Weak<Ticker> = Arc::downgrade(&ticker);
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("membrane-epoch".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        ticker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_engine_for_wasi_p3_has_component_model_async() {
        let p2 = EngineSettings::default();
        let p3 = EngineSettings { component_model_async: true, ..EngineSettings::default() };
        assert!(!p2.component_model_async);
        assert!(p3.covers(&p2).is_ok());
        let lacks = p2.covers(&p3).unwrap_err();
        assert!(lacks.to_string().contains("component-model async"), "{lacks}");
        // A WASI 0.3 component compiles on the engine built for it, and on no other.
        let stream = wat::parse_str("(component (type (stream u8)))").unwrap();
        assert!(wasmtime::component::Component::new(MembraneEngine::new(p3).unwrap().engine(), &stream).is_ok());
        assert!(wasmtime::component::Component::new(MembraneEngine::new(p2).unwrap().engine(), &stream).is_err());
    }
}
