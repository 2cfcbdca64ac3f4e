//! A call across a membrane: consumer -> host link -> provider, each component in its own
//! store (and, as `one store`, the provider in the consumer's store: isolation = "component"), for small arguments, a 1 KiB string, `list<u8>` of 1 and 64 KiB (one way and
//! there and back), 64 KiB of `list<u32>` and of `list<record>`, and (group `size`)
//! `list<u8>` from 1 KiB to 16 MiB across the link alone. Next to it, the same
//! logic as (a) a direct in-process Rust call (the floor), (b) the two components fused
//! statically with wac-graph and run as one instance in one store, and (c) two native
//! microservices talking HTTP/1.1 over loopback (hyper). Run with
//! `benches/run.sh link_call`; results go in BENCHMARKS.md.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use membrane_bench::{load_app, new_store};
use membrane_runtime::App;
use membrane_runtime::MembraneEngine;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};
use wasmtime::Store;
use wasmtime::component::{Component, Instance, TypedFunc, Val};

const COUNTER: &str = "membrane:test/counter@0.1.0";
const PAYLOAD: &str = "membrane:test/payload@0.1.0";
const DRIVER: &str = "membrane:test/driver@0.1.0";
const PAYLOAD_DRIVER: &str = "membrane:test/payload-driver@0.1.0";
const STRING_LEN: u32 = 1024;
const BYTES_LEN: u32 = 64 * 1024;
/// A `row` record is 16 bytes in the canonical ABI (a `u32`, padding, an `f64`).
const ROW_SIZE: u32 = 16;

/// The consumer linked to the provider: each a singleton in its own store
/// (`isolation = "store"`), or (`"component"`) the provider in the consumer's store.
fn linked_app(dir: &std::path::Path, isolation: &str) -> App {
    let provider_instances = if isolation == "store" { "singleton" } else { "per-call" };
    load_app(
        dir,
        &format!(
            r#"[app]
name = "bench"

[component.consumer]
source = {:?}
instances = "singleton"
limits = {{ memory = "512MiB" }}

[component.provider]
source = {:?}
instances = "{provider_instances}"
limits = {{ memory = "512MiB" }}

[[link]]
from = "consumer"
import = "{COUNTER}"
to = "provider"
isolation = "{isolation}"

[[link]]
from = "consumer"
import = "{PAYLOAD}"
to = "provider"
isolation = "{isolation}"
"#,
            membrane_test_guests::BENCH_CONSUMER,
            membrane_test_guests::BENCH_PROVIDER
        ),
    )
}

/// The consumer with its imports wired straight to the provider's exports, as one
/// component (wac-graph), so every call stays inside one instance.
fn fused_component() -> Vec<u8> {
    let mut graph = CompositionGraph::new();
    let consumer =
        Package::from_file("bench:consumer", None, membrane_test_guests::BENCH_CONSUMER, graph.types_mut()).unwrap();
    let provider =
        Package::from_file("bench:provider", None, membrane_test_guests::BENCH_PROVIDER, graph.types_mut()).unwrap();
    let consumer = graph.register_package(consumer).unwrap();
    let provider = graph.register_package(provider).unwrap();
    let provider = graph.instantiate(provider);
    let consumer = graph.instantiate(consumer);
    for interface in [COUNTER, PAYLOAD] {
        let export = graph.alias_instance_export(provider, interface).unwrap();
        graph.set_instantiation_argument(consumer, interface, export).unwrap();
    }
    for interface in [DRIVER, PAYLOAD_DRIVER] {
        let export = graph.alias_instance_export(consumer, interface).unwrap();
        graph.export(export, interface).unwrap();
    }
    graph.encode(EncodeOptions::default()).unwrap()
}

struct Fused {
    store: Store<membrane_runtime::SandboxState>,
    instance: Instance,
}

impl Fused {
    fn new(runtime: &Runtime, engine: &MembraneEngine) -> Fused {
        let component = Component::new(engine.engine(), fused_component()).unwrap();
        let linker = membrane_runtime::wasi_linker(engine.engine());
        let mut store = new_store(engine);
        let instance = runtime.block_on(linker.instantiate_async(&mut store, &component)).unwrap();
        Fused { store, instance }
    }

    fn func<P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower, R>(
        &mut self,
        interface: &str,
        name: &str,
    ) -> TypedFunc<P, R>
    where
        R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
    {
        let iface = self.instance.get_export_index(&mut self.store, None, interface).unwrap();
        let func = self.instance.get_export_index(&mut self.store, Some(&iface), name).unwrap();
        self.instance.get_typed_func(&mut self.store, func).unwrap()
    }

    fn call<P, R>(&mut self, runtime: &Runtime, func: &TypedFunc<P, R>, args: P) -> R
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync + 'static,
        R: wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync + 'static,
    {
        runtime.block_on(func.call_async(&mut self.store, args)).unwrap()
    }
}

/// The provider as a native HTTP/1.1 microservice in its own process, and a kept-alive
/// hyper connection to it.
struct Microservice {
    child: Child,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    port: u16,
}

impl Microservice {
    fn start(runtime: &Runtime) -> Microservice {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bench-microservice"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let sender = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            sender
        });
        Microservice { child, sender, port }
    }

    async fn call(&mut self, path: &str, body: Bytes) -> u64 {
        let request = hyper::Request::post(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .body(Full::new(body))
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        match path {
            "/same" => body.len() as u64,
            _ => std::str::from_utf8(&body).unwrap().parse().unwrap(),
        }
    }
}

impl Drop for Microservice {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[inline(never)]
fn increment(count: &mut u64) -> u64 {
    *count += 1;
    *count
}

#[inline(never)]
fn take_string(s: &str) -> u32 {
    s.len() as u32
}

#[inline(never)]
fn take_bytes(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |sum, b| sum.wrapping_add(*b as u32))
}

#[inline(never)]
fn same_bytes(data: Vec<u8>) -> Vec<u8> {
    data
}

#[inline(never)]
fn take_words(data: &[u32]) -> u32 {
    data.iter().fold(0u32, |sum, w| sum.wrapping_add(*w))
}

struct Row {
    id: u32,
    #[allow(dead_code, reason = "carried, as the component's record is")]
    weight: f64,
}

#[inline(never)]
fn take_rows(rows: &[Row]) -> u32 {
    rows.iter().fold(0u32, |sum, r| sum.wrapping_add(r.id))
}

/// Times `iters` calls made by one host call into the guest, which loops inside.
fn timed<F: FnMut(u32)>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    f(iters as u32);
    start.elapsed()
}

fn calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = linked_app(dir.path(), "store");
    let call =
        |iface: &str, func: &str, args: &[Val]| runtime.block_on(app.call("consumer", iface, func, args)).unwrap();
    let shared_dir = tempfile::tempdir().unwrap();
    let shared = linked_app(shared_dir.path(), "component");
    let in_store =
        |iface: &str, func: &str, args: &[Val]| runtime.block_on(shared.call("consumer", iface, func, args)).unwrap();
    // Start the singletons (and the provider in the consumer's store) before measuring.
    call(DRIVER, "calls", &[Val::U32(1)]);
    in_store(DRIVER, "calls", &[Val::U32(1)]);
    let mut fused = Fused::new(&runtime, app.engine());
    let fused_calls = fused.func::<(u32,), (u64,)>(DRIVER, "calls");
    let fused_strings = fused.func::<(u32, u32), (u32,)>(PAYLOAD_DRIVER, "string-calls");
    let mut service = Microservice::start(&runtime);
    let string = "x".repeat(STRING_LEN as usize);
    let bytes: Vec<u8> = (0..BYTES_LEN).map(|i| i as u8).collect();

    let mut group = c.benchmark_group("call");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    group.bench_function("small: direct Rust call", |b| {
        let mut count = 0u64;
        b.iter(|| increment(black_box(&mut count)))
    });
    group.bench_function("small: membrane link", |b| {
        b.iter_custom(|n| timed(n, |n| drop(call(DRIVER, "calls", &[Val::U32(n)]))))
    });
    group.bench_function("small: membrane link, one store", |b| {
        b.iter_custom(|n| timed(n, |n| drop(in_store(DRIVER, "calls", &[Val::U32(n)]))))
    });
    group.bench_function("small: fused (wac), one instance", |b| {
        b.iter_custom(|n| {
            timed(n, |n| {
                black_box(fused.call(&runtime, &fused_calls, (n,)));
            })
        })
    });
    group.bench_function("small: HTTP/1.1 microservice", |b| {
        b.iter(|| runtime.block_on(service.call("/increment", Bytes::new())))
    });

    group.bench_function("1 KiB string: direct Rust call", |b| b.iter(|| take_string(black_box(&string))));
    group.bench_function("1 KiB string: membrane link", |b| {
        b.iter_custom(|n| {
            timed(n, |n| drop(call(PAYLOAD_DRIVER, "string-calls", &[Val::U32(n), Val::U32(STRING_LEN)])))
        })
    });
    group.bench_function("1 KiB string: membrane link, one store", |b| {
        b.iter_custom(|n| {
            timed(n, |n| drop(in_store(PAYLOAD_DRIVER, "string-calls", &[Val::U32(n), Val::U32(STRING_LEN)])))
        })
    });
    group.bench_function("1 KiB string: fused (wac), one instance", |b| {
        b.iter_custom(|n| {
            timed(n, |n| {
                black_box(fused.call(&runtime, &fused_strings, (n, STRING_LEN)));
            })
        })
    });
    group.bench_function("1 KiB string: HTTP/1.1 microservice", |b| {
        b.iter(|| runtime.block_on(service.call("/string", Bytes::from(string.clone()))))
    });

    let payloads: [(&str, &str, u32, &str, Bytes); 5] = [
        ("1 KiB bytes", "bytes-calls", 1024, "/bytes", Bytes::from(bytes[..1024].to_vec())),
        ("64 KiB bytes", "bytes-calls", BYTES_LEN, "/bytes", Bytes::from(bytes.clone())),
        ("64 KiB bytes there and back", "same-calls", BYTES_LEN, "/same", Bytes::from(bytes.clone())),
        ("64 KiB list<u32>", "words-calls", BYTES_LEN / 4, "/words", Bytes::from(bytes.clone())),
        ("64 KiB list<record>", "rows-calls", BYTES_LEN / ROW_SIZE, "/bytes", Bytes::from(bytes.clone())),
    ];
    let words: Vec<u32> = (0..BYTES_LEN / 4).collect();
    let rows: Vec<Row> = (0..BYTES_LEN / ROW_SIZE).map(|id| Row { id, weight: id as f64 / 2.0 }).collect();
    for (label, driver, len, path, body) in payloads {
        group.bench_function(format!("{label}: direct Rust call"), |b| match driver {
            "same-calls" => b.iter(|| same_bytes(black_box(bytes.clone())).len()),
            "words-calls" => b.iter(|| take_words(black_box(&words))),
            "rows-calls" => b.iter(|| take_rows(black_box(&rows))),
            _ => b.iter(|| take_bytes(black_box(&bytes[..len as usize]))),
        });
        group.bench_function(format!("{label}: membrane link"), |b| {
            b.iter_custom(|n| timed(n, |n| drop(call(PAYLOAD_DRIVER, driver, &[Val::U32(n), Val::U32(len)]))))
        });
        group.bench_function(format!("{label}: membrane link, one store"), |b| {
            b.iter_custom(|n| timed(n, |n| drop(in_store(PAYLOAD_DRIVER, driver, &[Val::U32(n), Val::U32(len)]))))
        });
        let fused_driver = fused.func::<(u32, u32), (u32,)>(PAYLOAD_DRIVER, driver);
        group.bench_function(format!("{label}: fused (wac), one instance"), |b| {
            b.iter_custom(|n| {
                timed(n, |n| {
                    black_box(fused.call(&runtime, &fused_driver, (n, len)));
                })
            })
        });
        group.bench_function(format!("{label}: HTTP/1.1 microservice"), |b| {
            b.iter(|| runtime.block_on(service.call(path, body.clone())))
        });
    }
    group.finish();

    // Cost against size: the link alone, one way.
    let mut group = c.benchmark_group("size");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(10);
    // LINK_MAX_KIB caps the sizes, for a build whose link would take seconds per call.
    let max_kib: u32 = std::env::var("LINK_MAX_KIB").ok().and_then(|v| v.parse().ok()).unwrap_or(u32::MAX);
    // Lists of u8 and u32 (typed paths) to 16 MiB; records (the dynamic path, one `Val` a
    // field) to 1 MiB, beyond which a call takes tens of milliseconds.
    let lists: [(&str, &str, u32, u32); 3] = [
        ("list<u8>", "bytes-calls", 1, 16384),
        ("list<u32>", "words-calls", 4, 16384),
        ("list<record>", "rows-calls", ROW_SIZE, 1024),
    ];
    for (ty, driver, element, up_to) in lists {
        for kib in [1u32, 16, 256, 1024, 4096, 16384].into_iter().filter(|kib| *kib <= max_kib.min(up_to)) {
            let len = kib * 1024 / element;
            group.bench_function(format!("{kib} KiB {ty}: membrane link"), |b| {
                b.iter_custom(|n| timed(n, |n| drop(call(PAYLOAD_DRIVER, driver, &[Val::U32(n), Val::U32(len)]))))
            });
            group.bench_function(format!("{kib} KiB {ty}: membrane link, one store"), |b| {
                b.iter_custom(|n| timed(n, |n| drop(in_store(PAYLOAD_DRIVER, driver, &[Val::U32(n), Val::U32(len)]))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
