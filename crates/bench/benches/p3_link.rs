//! What a WASI 0.3 app pays across a link, next to a WASI 0.2 app in the same run: a small
//! synchronous call and a small `async func` call from a WASI 0.3 consumer to a WASI 0.3
//! provider (each in its own store; the provider a singleton, and per-call so that every
//! call makes a fresh instance), and 64 KiB through a `stream<u8>` transform and back, next
//! to the WASI 0.2 benchmark app's small call and 64 KiB `list<u8>` there and back. The
//! consumer loops inside the guest, so one host call times many calls. Run with
//! `benches/run.sh p3_link`; results go in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use membrane_bench::load_app;
use membrane_runtime::App;
use std::time::{Duration, Instant};
use wasmtime::component::Val;

const DRIVER: &str = "membrane:test/driver@0.1.0";
const PAYLOAD_DRIVER: &str = "membrane:test/payload-driver@0.1.0";
const STREAM_DRIVER: &str = "membrane:p3-probe/stream-driver";
const KIB_64: u32 = 64 * 1024;

/// A consumer (a singleton) linked to a provider whose instances are `instances`, each in
/// its own store, for each interface of `imports`.
fn linked_app(dir: &std::path::Path, consumer: &str, provider: &str, instances: &str, imports: &[&str]) -> App {
    let mut manifest = format!(
        "[app]\nname = \"bench\"\n\n[component.consumer]\nsource = {consumer:?}\ninstances = \"singleton\"\n\n\
         [component.provider]\nsource = {provider:?}\ninstances = \"{instances}\"\n"
    );
    for import in imports {
        manifest.push_str(&format!("\n[[link]]\nfrom = \"consumer\"\nimport = \"{import}\"\nto = \"provider\"\n"));
    }
    load_app(dir, &manifest)
}

/// The WASI 0.2 benchmark app: consumer and provider singletons.
fn p2_app(dir: &std::path::Path) -> App {
    let imports = ["membrane:test/counter@0.1.0", "membrane:test/payload@0.1.0"];
    linked_app(dir, membrane_test_guests::BENCH_CONSUMER, membrane_test_guests::BENCH_PROVIDER, "singleton", &imports)
}

/// The WASI 0.3 streams consumer linked to the transform provider, whose instances are
/// `provider` ("singleton" or "per-call").
fn p3_app(dir: &std::path::Path, provider: &str) -> App {
    let imports = ["membrane:p3-probe/transform", "membrane:p3-probe/words"];
    linked_app(dir, membrane_test_guests::P3_STREAMS, membrane_test_guests::P3_TRANSFORM, provider, &imports)
}

/// Times `iters` calls made by one host call into the guest, which loops inside.
fn timed<F: FnMut(u32)>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    f(iters as u32);
    start.elapsed()
}

fn calls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let p2 = p2_app(dirs[0].path());
    let p3 = p3_app(dirs[1].path(), "singleton");
    let p3_fresh = p3_app(dirs[2].path(), "per-call");
    let call = |app: &App, iface: &str, func: &str, args: &[Val]| {
        drop(runtime.block_on(app.call("consumer", iface, func, args)).unwrap());
    };
    // Start the singletons before measuring.
    call(&p2, DRIVER, "calls", &[Val::U32(1)]);
    call(&p3, STREAM_DRIVER, "sync-calls", &[Val::U32(1)]);
    call(&p3, STREAM_DRIVER, "async-calls", &[Val::U32(1)]);
    call(&p3_fresh, STREAM_DRIVER, "async-calls", &[Val::U32(1)]);

    let mut group = c.benchmark_group("p3");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.bench_function("small: WASI 0.2 app, sync call", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p2, DRIVER, "calls", &[Val::U32(n)])))
    });
    group.bench_function("small: WASI 0.3 app, sync call", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p3, STREAM_DRIVER, "sync-calls", &[Val::U32(n)])))
    });
    group.bench_function("small: WASI 0.3 app, async call", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p3, STREAM_DRIVER, "async-calls", &[Val::U32(n)])))
    });
    group.bench_function("small: WASI 0.3 app, async call, fresh provider instance", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p3_fresh, STREAM_DRIVER, "async-calls", &[Val::U32(n)])))
    });
    group.bench_function("64 KiB there and back: WASI 0.2 app, list<u8>", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p2, PAYLOAD_DRIVER, "same-calls", &[Val::U32(n), Val::U32(KIB_64)])))
    });
    group.bench_function("64 KiB there and back: WASI 0.3 app, stream<u8> through a transform", |b| {
        b.iter_custom(|n| timed(n, |n| call(&p3, STREAM_DRIVER, "stream-calls", &[Val::U32(n), Val::U32(KIB_64)])))
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
