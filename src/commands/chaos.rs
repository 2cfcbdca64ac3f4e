//! `membrane chaos`: a chaos experiment on an app. Faults are injected at links (traps,
//! latency) and components (denied grants, restarts) while the command drives traffic
//! through the app's routes or its entry; the report gives the hypothesis, the injection,
//! what was observed and the verdict. Faults exist only here: no manifest can ask for one.

use crate::common::CacheFlags;
use anyhow::Context;
use clap::Parser;
use membrane_http::{IngressLimits, Server};
use membrane_manifest::{AppSpec, Experiment, Injection, deny_grants};
use membrane_runtime::App;
use membrane_runtime::Audit;
use membrane_runtime::CompileCache;
use membrane_runtime::Deployment;
use membrane_runtime::{Injected, LinkFault};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run a chaos experiment: inject the faults of EXPERIMENT.toml into the app while
/// traffic runs, and report whether the hypothesis held (exit status 0) or not (92).
#[derive(Parser, Debug)]
pub struct ChaosCommand {
    /// The app's membrane.toml.
    #[arg(value_name = "APP.toml")]
    pub app: PathBuf,

    /// The experiment: hypothesis, traffic, [[inject]] faults and [expect]ations.
    #[arg(value_name = "EXPERIMENT.toml")]
    pub experiment: PathBuf,

    #[command(flatten)]
    pub cache: CacheFlags,
}

/// A link fault: traps with a probability, latency on every call; counts what it did.
struct LinkChaos {
    trap: f64,
    latency: Option<Duration>,
    rng: Mutex<fastrand::Rng>,
    traps: AtomicU64,
    calls: AtomicU64,
}

impl LinkFault for LinkChaos {
    fn next_call(&self) -> Injected {
        self.calls.fetch_add(1, Relaxed);
        let roll = self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64();
        if roll < self.trap {
            self.traps.fetch_add(1, Relaxed);
            return Injected::Trap(format!("injected by a chaos experiment (probability {})", self.trap));
        }
        self.latency.map_or(Injected::Pass, Injected::Delay)
    }
}

/// What the traffic saw.
#[derive(Default)]
struct Observed {
    /// Outcome ("200", "503", "exit 0", "error: ...") to how many times.
    outcomes: BTreeMap<String, u32>,
    successes: u32,
    latencies: Vec<Duration>,
}

impl ChaosCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        let mut spec = AppSpec::load(&self.app)?;
        let experiment = Experiment::load(&self.experiment, &spec)?;
        for injection in &experiment.inject {
            if let Some(component) = &injection.component {
                let grants = &mut spec.components.get_mut(component).expect("checked component").grants;
                deny_grants(grants, &injection.deny);
            }
        }
        let app = App::load(spec, &self.cache.cache(), Audit::default())?;
        let mut link_faults = Vec::new();
        for (i, injection) in experiment.inject.iter().enumerate() {
            let Some((from, to)) = injection.link_ends() else { continue };
            let fault = Arc::new(LinkChaos {
                trap: injection.trap.unwrap_or(0.0),
                latency: injection.latency.map(|l| l.std()),
                rng: Mutex::new(fastrand::Rng::with_seed(experiment.seed.wrapping_add(i as u64))),
                traps: AtomicU64::new(0),
                calls: AtomicU64::new(0),
            });
            anyhow::ensure!(
                app.inject_link_fault(from, to, fault.clone()) > 0,
                "{}: inject[{i}]: the link {from} -> {to} took no fault",
                self.experiment.display()
            );
            link_faults.push((injection, fault));
        }

        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
        let (observed, restarts) = runtime.block_on(drive(app, &experiment))?;
        Ok(report(&experiment, &link_faults, &restarts, &observed))
    }
}

/// What the traffic goes through: the app's routes on a server of its own, or its entry.
#[derive(Clone)]
enum Target {
    Routes(Arc<Server>),
    Entry(Arc<App>),
}

impl Target {
    fn app(&self) -> Arc<App> {
        match self {
            Target::Routes(server) => server.deployment().current(),
            Target::Entry(app) => app.clone(),
        }
    }
}

/// Runs the traffic with the restarts going on; returns what it saw and the restarts done.
async fn drive(app: App, experiment: &Experiment) -> anyhow::Result<(Observed, Vec<(String, u32)>)> {
    let target = match &experiment.traffic.args {
        Some(_) => Target::Entry(Arc::new(app)),
        None => {
            // The experiment never swaps, so its deployment needs no compile cache.
            let deployment = Arc::new(Deployment::new(app, CompileCache::disabled()));
            Target::Routes(Arc::new(Server::new(deployment, IngressLimits::default())?))
        }
    };
    let done = Arc::new(tokio::sync::Notify::new());
    let mut restarts = Vec::new();
    for injection in &experiment.inject {
        let (Some(component), Some(every)) = (injection.component.clone(), injection.restart_every) else { continue };
        let count = Arc::new(AtomicU32::new(0));
        restarts.push((component.clone(), count.clone()));
        let (target, done) = (target.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = done.notified() => break,
                    _ = tokio::time::sleep(every.std()) => {
                        target.app().restart(&component).await;
                        count.fetch_add(1, Relaxed);
                    }
                }
            }
        });
    }
    let observed = match (&target, &experiment.traffic.args) {
        (Target::Entry(app), Some(args)) => run_entry(app.clone(), experiment, args).await,
        (Target::Routes(server), _) => send_requests(server.clone(), experiment).await?,
        (Target::Entry(_), None) => unreachable!("an entry target has args"),
    };
    done.notify_waiters();
    Ok((observed, restarts.into_iter().map(|(c, n)| (c, n.load(Relaxed))).collect()))
}

/// `requests` GETs of the paths in turn, `concurrency` at a time, through the app's
/// routes on a loopback listener of its own.
async fn send_requests(server: Arc<Server>, experiment: &Experiment) -> anyhow::Result<Observed> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let observed = fan_out(experiment, move |n| {
        let paths = &experiment.traffic.paths;
        let uri: hyper::Uri = format!("http://{addr}{}", paths[n % paths.len()]).parse().expect("checked paths");
        let client = client.clone();
        async move {
            match client.get(uri).await {
                Ok(response) => {
                    let status = response.status();
                    // The body is part of the answer: read it before the clock stops.
                    let body = http_body_util::BodyExt::collect(response.into_body()).await;
                    match body {
                        Ok(_) => (status.as_u16().to_string(), status.is_success()),
                        Err(e) => (format!("body error: {e}"), false),
                    }
                }
                Err(e) => (format!("error: {e}"), false),
            }
        }
    })
    .await;
    let _ = stop.send(());
    let _ = serving.await;
    Ok(observed)
}

/// `requests` runs of the app's entry with `args`, `concurrency` at a time.
async fn run_entry(app: Arc<App>, experiment: &Experiment, args: &[String]) -> Observed {
    let mut argv = vec![app.spec.app.entry.clone().unwrap_or_default()];
    argv.extend(args.iter().cloned());
    fan_out(experiment, move |_| {
        let (app, argv) = (app.clone(), argv.clone());
        async move {
            match app.run_entry(&argv).await {
                Ok(code) => (format!("exit {code}"), code == 0),
                Err(e) => (format!("error: {e}"), false),
            }
        }
    })
    .await
}

/// Runs `one(n)` for n in 0..requests, `concurrency` at a time, timing each.
async fn fan_out<F, Fut>(experiment: &Experiment, one: F) -> Observed
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (String, bool)>,
{
    use std::sync::atomic::AtomicUsize;
    let next = AtomicUsize::new(0);
    let total = experiment.traffic.requests as usize;
    let observed = Mutex::new(Observed::default());
    let worker = || async {
        loop {
            let n = next.fetch_add(1, Relaxed);
            if n >= total {
                break;
            }
            let started = Instant::now();
            let (outcome, success) = one(n).await;
            let took = started.elapsed();
            let mut observed = observed.lock().unwrap_or_else(|p| p.into_inner());
            *observed.outcomes.entry(outcome).or_default() += 1;
            observed.successes += success as u32;
            observed.latencies.push(took);
        }
    };
    let workers: Vec<_> = (0..experiment.traffic.concurrency).map(|_| worker()).collect();
    join_all(workers).await;
    observed.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Polls every future to completion on this task (they share borrowed state, so they
/// cannot be spawned). Hand-written: the few lines do not warrant a futures dependency.
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(future) = slot {
                if future.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Prints the report; returns the exit status: 0 when the hypothesis holds.
fn report(
    experiment: &Experiment,
    link_faults: &[(&Injection, Arc<LinkChaos>)],
    restarts: &[(String, u32)],
    observed: &Observed,
) -> u8 {
    let traffic = &experiment.traffic;
    println!("hypothesis: {}", experiment.hypothesis);
    println!("injected:");
    if experiment.inject.is_empty() {
        println!("  nothing (a baseline run)");
    }
    for injection in &experiment.inject {
        if let (Some((from, to)), Some((_, fault))) =
            (injection.link_ends(), link_faults.iter().find(|(i, _)| std::ptr::eq(*i, injection)))
        {
            let mut what = Vec::new();
            if let Some(p) = injection.trap {
                what.push(format!(
                    "traps with probability {p} ({} of {} calls)",
                    fault.traps.load(Relaxed),
                    fault.calls.load(Relaxed)
                ));
            }
            if let Some(latency) = injection.latency {
                what.push(format!("{latency} latency on every call"));
            }
            println!("  link {from} -> {to}: {}", what.join(", "));
        }
        if let Some(component) = &injection.component {
            if !injection.deny.is_empty() {
                println!("  component {component}: grants denied: {}", injection.deny.join(", "));
            }
            if let Some(every) = injection.restart_every {
                let done = restarts.iter().find(|(c, _)| c == component).map_or(0, |(_, n)| *n);
                println!("  component {component}: restarted every {every} ({done} restarts)");
            }
        }
    }
    match &traffic.args {
        Some(args) => println!(
            "traffic: {} runs of the entry with args {args:?}, {} at a time",
            traffic.requests, traffic.concurrency
        ),
        None => println!(
            "traffic: {} GET requests to {}, {} at a time",
            traffic.requests,
            traffic.paths.join(", "),
            traffic.concurrency
        ),
    }
    let mut sorted = observed.latencies.clone();
    sorted.sort();
    let total = sorted.len().max(1) as f64;
    let success = observed.successes as f64 / total;
    let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
    println!("observed:");
    for (outcome, n) in &observed.outcomes {
        println!("  {outcome}: {n}");
    }
    println!("  success: {:.1}%", success * 100.0);
    println!("  latency: p50 {p50:.2?}, p99 {p99:.2?}, max {:.2?}", sorted.last().copied().unwrap_or_default());
    let mut failed = Vec::new();
    let mut held = Vec::new();
    let wanted = experiment.expect.success;
    let line = format!(
        "success {:.1}% {} {:.1}%",
        success * 100.0,
        if success >= wanted { ">=" } else { "<" },
        wanted * 100.0
    );
    if success >= wanted {
        held.push(line)
    } else {
        failed.push(line)
    }
    if let Some(limit) = experiment.expect.p99 {
        let ok = p99 <= limit.std();
        let line = format!("p99 {p99:.2?} {} {limit}", if ok { "<=" } else { ">" });
        if ok { held.push(line) } else { failed.push(line) }
    }
    if failed.is_empty() {
        println!("verdict: the hypothesis holds ({})", held.join(", "));
        0
    } else {
        println!("verdict: the hypothesis is refuted ({})", failed.join(", "));
        crate::exit::HYPOTHESIS_REFUTED
    }
}
