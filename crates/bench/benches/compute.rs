//! Compute kernels (`crates/bench-kernels`) compiled natively and to a component
//! (`guests/bench-kernels`) run under membrane: sha256 of 16 MiB, a JSON document of 10,000
//! records parsed and serialized, an e-mail regex over 4 MiB of log text. The component is
//! a singleton of an app, called as the host calls any export; its inputs are made once, as
//! the native side's are. Run with `benches/run.sh compute`.
//!
//! Two variants separate missing CPU extensions from code quality: with
//! `BENCH_KERNELS_SIMD128` naming the same guest built with `-C target-feature=+simd128`, its
//! rows join the run ("membrane, simd128"); built with the `soft-kernels` feature, the
//! native rows use sha2's portable code instead of the CPU's SHA extensions ("native,
//! sha2 soft").

use criterion::{Criterion, criterion_group, criterion_main};
use membrane_bench::load_app;
use membrane_bench_kernels as kernels;
use std::hint::black_box;
use std::time::Duration;
use wasmtime::component::Val;

const KERNELS: &str = "membrane:test/kernels@0.1.0";
const SHA_LEN: u32 = 16 << 20;
const JSON_RECORDS: u32 = 10_000;
const TEXT_LEN: u32 = 4 << 20;

fn compute(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = load_app(
        dir.path(),
        &format!(
            "[app]\nname = \"bench\"\n\n[component.kernels]\nsource = {:?}\ninstances = \"singleton\"\n",
            membrane_test_guests::BENCH_KERNELS
        ),
    );
    let call = |func: &str, arg: u32| runtime.block_on(app.call("kernels", KERNELS, func, &[Val::U32(arg)])).unwrap();
    let bytes = kernels::bytes(SHA_LEN as usize);
    let doc = kernels::json_document(JSON_RECORDS as usize);
    let text = kernels::text(TEXT_LEN as usize);
    let re = kernels::email_regex();
    // The component answers what the native code answers (and makes its inputs now).
    assert_eq!(call("sha256", SHA_LEN), vec![Val::String(kernels::sha256(&bytes))]);
    assert_eq!(call("json", JSON_RECORDS), vec![Val::U32(kernels::json_roundtrip(&doc) as u32)]);
    assert_eq!(call("regex", TEXT_LEN), vec![Val::U32(kernels::regex_count(&re, &text) as u32)]);

    let runtime = &runtime;
    let simd = std::env::var("BENCH_KERNELS_SIMD128").ok().map(|path| {
        let app = load_app(
            dir.path(),
            &format!("[app]\nname = \"simd\"\n\n[component.kernels]\nsource = {path:?}\ninstances = \"singleton\"\n"),
        );
        let call =
            move |func: &str, arg: u32| runtime.block_on(app.call("kernels", KERNELS, func, &[Val::U32(arg)])).unwrap();
        assert_eq!(call("sha256", SHA_LEN), vec![Val::String(kernels::sha256(&bytes))]);
        call
    });
    let native = if cfg!(feature = "soft-kernels") { "native, sha2 soft" } else { "native" };

    let mut group = c.benchmark_group("compute");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let kernels: [(&str, &str, u32); 3] = [
        ("sha256 16 MiB", "sha256", SHA_LEN),
        ("JSON 10k records", "json", JSON_RECORDS),
        ("regex 4 MiB", "regex", TEXT_LEN),
    ];
    for (name, func, arg) in kernels {
        group.bench_function(format!("{name}: {native}"), |b| match func {
            "sha256" => b.iter(|| kernels::sha256(black_box(&bytes))),
            "json" => b.iter(|| kernels::json_roundtrip(black_box(&doc))),
            _ => b.iter(|| kernels::regex_count(&re, black_box(&text))),
        });
        group.bench_function(format!("{name}: membrane"), |b| b.iter(|| call(func, arg)));
        if let Some(simd) = &simd {
            group.bench_function(format!("{name}: membrane, simd128"), |b| b.iter(|| simd(func, arg)));
        }
    }
    group.finish();
}

criterion_group!(benches, compute);
criterion_main!(benches);
