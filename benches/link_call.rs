//! One call across a membrane (guest -> host link -> guest, small arguments), next to the
//! same work as a direct in-process Rust call (the floor) and as a call from the host into
//! a guest. Run with `cargo bench --bench link_call`; results go in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use membrane_manifest::AppSpec;
use membrane_runtime::app::{self, App};
use membrane_runtime::{Audit, CompileCache, MembraneEngine};
use std::hint::black_box;
use std::time::Instant;
use wasmtime::component::Val;

const COUNTER: &str = "membrane:test/counter@0.1.0";
const DRIVER: &str = "membrane:test/driver@0.1.0";

fn load_app(dir: &std::path::Path) -> App {
    let manifest = format!(
        r#"[app]
name = "bench"

[component.driver]
source = {:?}
instances = "singleton"

[component.provider]
source = {:?}
instances = "singleton"

[[link]]
from = "driver"
import = "{COUNTER}"
to = "provider"
"#,
        membrane_test_guests::BENCH_DRIVER,
        membrane_test_guests::PROVIDER
    );
    let path = dir.join("membrane.toml");
    std::fs::write(&path, manifest).unwrap();
    let spec = AppSpec::load(&path).unwrap();
    let engine = MembraneEngine::new(app::engine_settings(&spec)).unwrap();
    App::load(spec, &engine, &CompileCache::at(dir.join("cache")), Audit::default()).unwrap()
}

/// The provider's `increment`, natively: the work a call does, without any membrane.
#[inline(never)]
fn increment(count: &mut u64) -> u64 {
    *count += 1;
    *count
}

fn calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = load_app(dir.path());
    // Start both singletons before measuring.
    runtime.block_on(app.call("driver", DRIVER, "calls", &[Val::U32(1)])).unwrap();

    let mut group = c.benchmark_group("call");
    group.bench_function("direct in-process Rust call", |b| {
        let mut count = 0u64;
        b.iter(|| increment(black_box(&mut count)))
    });
    group.bench_function("host into a guest", |b| {
        b.iter(|| runtime.block_on(app.call("provider", COUNTER, "increment", &[])).unwrap())
    });
    group.bench_function("guest to guest across a link", |b| {
        // One host call drives `iters` link calls from inside the driver guest.
        b.iter_custom(|iters| {
            let start = Instant::now();
            runtime.block_on(app.call("driver", DRIVER, "calls", &[Val::U32(iters as u32)])).unwrap();
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
