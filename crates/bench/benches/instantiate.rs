//! A fresh instance from an `InstancePre`, as `membrane serve` makes one per request: on
//! membrane's app engine (wasmtime's pooling allocator with copy-on-write memory images)
//! next to the same engine with wasmtime's default on-demand allocator; for a small
//! component (`hello`) and a 1.5 MB one (`bench-big`: regex, serde_json, sha2); with the
//! machine otherwise idle and with a thread keeping another core busy. Each iteration makes
//! the store (WASI context, limits) and the instance and drops both. Run with
//! `benches/run.sh instantiate`.

use criterion::{Criterion, criterion_group, criterion_main};
use membrane_bench::{app_engine_settings, new_store};
use membrane_runtime::SandboxState;
use membrane_runtime::{EngineSettings, MembraneEngine};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use wasmtime::component::{Component, InstancePre};

fn pre(engine: &MembraneEngine, path: &str) -> InstancePre<SandboxState> {
    let component = Component::from_file(engine.engine(), path).unwrap();
    membrane_runtime::wasi_linker(engine.engine()).instantiate_pre(&component).unwrap()
}

/// Keeps one core busy until dropped.
struct Busy(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut x = 0u64;
            while !flag.load(Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        Busy(stop, Some(handle))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
        self.1.take().unwrap().join().unwrap();
    }
}

fn instantiate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pooling = MembraneEngine::new(app_engine_settings()).unwrap();
    let on_demand = MembraneEngine::new(EngineSettings { pooling: None, ..app_engine_settings() }).unwrap();
    let mut group = c.benchmark_group("instantiate");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (size, path) in [("small", membrane_test_guests::HELLO), ("1.5 MB", membrane_test_guests::BENCH_BIG)] {
        for busy in [false, true] {
            for (allocator, engine) in
                [("membrane (pooling + CoW)", &pooling), ("wasmtime default (on-demand)", &on_demand)]
            {
                let pre = pre(engine, path);
                let load = if busy { ", other core busy" } else { "" };
                let _busy = busy.then(Busy::start);
                group.bench_function(format!("{size}{load}: {allocator}"), |b| {
                    b.iter(|| {
                        let mut store = new_store(engine);
                        runtime.block_on(pre.instantiate_async(&mut store)).unwrap();
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
