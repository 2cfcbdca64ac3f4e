//! Memory of many live idle instances in one membrane process, next to as many idle native
//! processes.
//!
//!   bench-density membrane N    # N instances of the `bench-provider` guest, each in its own
//!                               # store, each having answered one call
//!   bench-density native N      # N `bench-idle` processes
//!
//! Prints one tab-separated line: what, N, total bytes, bytes per instance (RSS; for native
//! processes also PSS, which shares the pages of the common executable and libraries out
//! fairly), and how many were actually started.

use membrane_bench::{app_engine_settings, memory_of, new_store};
use membrane_runtime::MembraneEngine;
use membrane_runtime::Pooling;
use std::io::Read;
use std::process::{Command, Stdio};
use wasmtime::component::Component;

fn membrane(n: u32) -> anyhow::Result<()> {
    let mut settings = app_engine_settings();
    let pooling = settings.pooling.expect("apps use the pooling allocator");
    settings.pooling = Some(Pooling { instances: n, ..pooling });
    let engine = MembraneEngine::new(settings)?;
    let component = Component::from_file(engine.engine(), membrane_test_guests::BENCH_PROVIDER)?;
    let pre = membrane_runtime::wasi_linker(engine.engine()).instantiate_pre(&component)?;
    let counter =
        component.get_export_index(None, "membrane:test/counter@0.1.0").expect("bench-provider exports counter");
    let increment = component.get_export_index(Some(&counter), "increment").expect("counter has increment");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Each instance answers one call, so its stack and heap pages are in use as they would
    // be in an instance that has served and now waits.
    let start = || -> anyhow::Result<_> {
        let mut store = new_store(&engine);
        let instance = runtime.block_on(pre.instantiate_async(&mut store))?;
        let func = instance.get_typed_func::<(), (u64,)>(&mut store, increment)?;
        let (count,) = runtime.block_on(func.call_async(&mut store, ()))?;
        anyhow::ensure!(count == 1, "a fresh instance counted {count}");
        Ok((store, instance))
    };
    // One instance first, so the baseline holds everything shared (code, image, runtime).
    let mut live = Vec::with_capacity(n as usize);
    live.push(start()?);
    let (base, _) = memory_of(None);
    for _ in 1..n {
        live.push(start()?);
    }
    let (rss, _) = memory_of(None);
    let per = (rss - base) / u64::from(n - 1).max(1);
    println!("membrane\t{n}\t{}\t{per}\t-\t{n}", base + per * u64::from(n - 1));
    drop(live);
    Ok(())
}

fn native(n: u32) -> anyhow::Result<()> {
    let idle = std::env::current_exe()?.with_file_name("bench-idle");
    let mut children = Vec::new();
    for _ in 0..n {
        match Command::new(&idle).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                eprintln!("stopped at {} processes: {e}", children.len());
                break;
            }
        }
    }
    for child in &mut children {
        child.stdout.as_mut().unwrap().read_exact(&mut [0u8; 1])?;
    }
    let started = children.len() as u64;
    let (rss, pss) = children.iter().map(|c| memory_of(Some(c.id()))).fold((0, 0), |(r, p), (cr, cp)| (r + cr, p + cp));
    for mut child in children {
        drop(child.stdin.take());
        child.wait()?;
    }
    let (per_rss, per_pss) = (rss / started.max(1), pss / started.max(1));
    // Fewer than asked (a process limit): extrapolated from the ones started.
    println!("native\t{n}\t{}\t{per_rss}\t{per_pss}\t{started}", per_rss * u64::from(n));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench-density membrane|native N";
    let n: u32 = args.get(2).and_then(|n| n.parse().ok()).filter(|n| *n > 1).ok_or_else(|| anyhow::anyhow!(usage))?;
    match args.get(1).map(String::as_str) {
        Some("membrane") => membrane(n),
        Some("native") => native(n),
        _ => anyhow::bail!(usage),
    }
}
