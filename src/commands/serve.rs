//! `membrane serve`: wasi:http components over HTTP, a fresh isolated instance per request.

use crate::common::RunCommon;
use anyhow::Context;
use clap::{Args, Parser};
use membrane_admin::{AdminHosts, AdminState, token};
use membrane_http::{IngressLimits, Server};
use membrane_manifest::{AppSection, AppSpec, ByteSize, ComponentSpec, Duration, InstanceMode, RouteSpec};
use membrane_runtime::ComponentFile;
use membrane_runtime::Deployment;
use membrane_runtime::{App, Build};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serve a wasi:http/incoming-handler component, or the routes of an app (a
/// membrane.toml), over HTTP/1.1 and HTTP/2 (h2c). Every request gets a fresh instance in
/// a store of its own; a trap or a limit fails that request alone.
#[derive(Parser, Debug)]
pub struct ServeCommand {
    /// The component to serve (a file or an oci:// reference), or an app's membrane.toml
    /// with [[route]]s.
    #[arg(value_name = "COMPONENT|APP.toml")]
    pub target: PathBuf,

    /// Address to listen on; port 0 picks a free port. The bound address is printed as
    /// `serving http://ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: no metrics listener; the
    /// admin listener serves /metrics too].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// The admin API and dashboard's address, never the public one; `off` for none. Port 0
    /// picks a free port. The bound address is printed as `admin http://ADDR`.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9900")]
    pub admin_listen: AdminListen,

    /// A name the admin listener also answers to, for an admin API reached through a name
    /// (a proxy, the node's DNS name); repeat for more [default: only the listener's own
    /// address and localhost, so that no web page can read the API by rebinding a name].
    #[arg(long = "admin-host", value_name = "NAME")]
    pub admin_hosts: Vec<String>,

    /// A file whose first line is the admin token that swap, rollback and restart need.
    /// Without it, $MEMBRANE_ADMIN_TOKEN; without that, a random token is written to a
    /// file only you can read, and its path printed.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Watch the manifest (or the component) and the component files: a change that checks
    /// is swapped in; one that does not is logged and the running version keeps serving.
    #[arg(long)]
    pub watch: bool,

    #[command(flatten)]
    pub ingress: IngressFlags,

    /// For a single component: its grants, limits and the cache. For an app, grants and
    /// limits come from the manifest.
    #[command(flatten)]
    pub common: RunCommon,
}

/// What a client may make the server hold.
#[derive(Args, Debug)]
#[command(next_help_heading = "Ingress limits")]
pub struct IngressFlags {
    /// Time a client has to send a request's headers (slowloris defence).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_timeout: Duration,
    /// Bytes of request headers; larger gets 431.
    #[arg(long, value_name = "SIZE", default_value = "64KiB")]
    pub max_header_bytes: ByteSize,
    /// Bytes of the request target (path and query); longer gets 414.
    #[arg(long, value_name = "SIZE", default_value = "8KiB")]
    pub max_url_bytes: ByteSize,
    /// Bytes of request body, enforced while streaming; more gets 413.
    #[arg(long, value_name = "SIZE", default_value = "10MiB")]
    pub max_body_bytes: ByteSize,
    /// Time until the response's headers; longer gets 504.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub request_timeout: Duration,
    /// Requests in flight at once; more get 503 with Retry-After at once. Keep it below the
    /// engine's 1,000 instance slots, less what linked per-call components take.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_concurrent: usize,
    /// Requests one instance may handle before it is dropped; above 1 this trades the
    /// isolation between requests for speed, as `wasmtime serve`'s option does. Never
    /// across tenants; a WASI 0.3 instance takes its requests one after another unless
    /// --instance-concurrency says otherwise.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max_instance_reuse: usize,
    /// Requests one WASI 0.3 handler instance serves at once, of the --max-instance-reuse
    /// it serves in all (which must be at least N). Above 1 the requests share the
    /// instance's memory and state, and a trap fails every request in it. Never across
    /// tenants; WASI 0.2 handlers take one request at a time. Default 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub instance_concurrency: usize,
    /// Fresh, never-used instances kept ready per component (and tenant) that serves,
    /// made in the background so a request need not instantiate; each still serves one
    /// request only. Default 0 (instantiate on the request path): for the interpreted
    /// handlers measured in BENCHMARKS.md the instantiation is not what a request waits on.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub spare_instances: usize,
    /// On SIGINT or SIGTERM, how long to let requests in flight finish.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub drain_timeout: Duration,
}

/// `--admin-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct AdminListen(pub Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(AdminListen(None));
        }
        s.parse().map(|a| AdminListen(Some(a))).map_err(|e| format!("{e}; give ADDR:PORT, e.g. 127.0.0.1:9900, or off"))
    }
}

impl IngressFlags {
    fn limits(&self) -> IngressLimits {
        IngressLimits {
            header_timeout: self.header_timeout.std(),
            max_header_bytes: self.max_header_bytes.bytes() as usize,
            max_url_bytes: self.max_url_bytes.bytes() as usize,
            max_body_bytes: self.max_body_bytes.bytes(),
            request_timeout: self.request_timeout.std(),
            max_concurrent: self.max_concurrent.max(1),
            drain_timeout: self.drain_timeout.std(),
            max_instance_reuse: self.max_instance_reuse.max(1),
            instance_concurrency: self.instance_concurrency.max(1),
            spare_instances: self.spare_instances,
        }
    }
}

impl ServeCommand {
    pub fn execute(self) -> anyhow::Result<u8> {
        // Everything is loaded and checked before a socket is bound.
        let admin_hosts = self.admin_hosts()?;
        let _telemetry = self.common.telemetry()?;
        let (deployment, is_app) = self.load()?;
        let server = Arc::new(Server::new(deployment.clone(), self.ingress.limits())?);
        let token = self.admin_token()?;

        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
        runtime.block_on(async move {
            let listeners = self.bind().await?;
            report_keyvalue(&deployment).await;
            let bound = listeners.public.local_addr()?;
            println!("serving http://{bound}");
            if let Some(metrics) = listeners.metrics {
                println!("metrics http://{}/metrics", metrics.local_addr()?);
                tokio::spawn(server.clone().serve_metrics(metrics));
            }
            if let Some(admin) = listeners.admin {
                let mut state = AdminState::new(deployment.clone(), admin_token_or_new(token, &admin)?);
                state.metrics = Some(server.metrics().clone());
                state.hosts = admin_hosts;
                println!("admin http://{}", admin.local_addr()?);
                tokio::spawn(async move {
                    if let Err(error) = membrane_admin::serve(admin, state).await {
                        tracing::error!(target: "membrane::serve", %error, "the admin listener failed");
                    }
                });
            }
            let _watcher = match self.watch {
                true => Some(crate::watch::start(deployment.clone(), self.target.clone(), is_app)?),
                false => None,
            };
            use std::io::Write;
            std::io::stdout().flush()?;
            server.serve(listeners.public, shutdown_signal()).await?;
            anyhow::Ok(())
        })?;
        Ok(0)
    }

    /// The names the admin listener answers under, once its address is known not to be the
    /// public one.
    fn admin_hosts(&self) -> anyhow::Result<AdminHosts> {
        if let Some(admin) = self.admin_listen.0
            && admin == self.listen
            && admin.port() != 0
        {
            anyhow::bail!(
                "--admin-listen {admin} is the public --listen address; the admin API needs a listener of its own"
            );
        }
        AdminHosts::new(&self.admin_hosts).map_err(|e| {
            anyhow::anyhow!(
                "--admin-host: {e}; give a DNS name such as admin.example.com (the listener's own address needs none)"
            )
        })
    }

    /// The app (a manifest, or one component as an app of one), loaded and checked, as a
    /// deployment; and whether it came from a manifest.
    fn load(&self) -> anyhow::Result<(Arc<Deployment>, bool)> {
        let is_app = !membrane_manifest::is_oci(&self.target) && self.target.extension().is_some_and(|e| e == "toml");
        let spec = if is_app {
            if self.common.grants.any() {
                return Err(crate::common::Usage(format!(
                    "{}: grants for the components of an app are set in the manifest; remove the grant flags",
                    self.target.display()
                ))
                .into());
            }
            AppSpec::load(&self.target)?
        } else {
            self.single_component_app()?
        };
        let audit = self.common.audit(spec.app.audit.as_deref())?;
        let cache = self.common.cache();
        let sources = self.common.registry.sources(self.common.state.data_dir.clone());
        let build = Build { state: self.common.state.options(), sources: sources.clone(), ..Default::default() };
        let app = App::build(spec, &cache, audit, build)?;
        Ok((Arc::new(Deployment::new(app, cache).with_sources(sources)), is_app))
    }

    /// Binds the public, metrics and admin listeners, naming the flag of any that fails.
    async fn bind(&self) -> anyhow::Result<Listeners> {
        let public = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("--listen {}: cannot bind it", self.listen))?;
        let metrics = match self.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr).await.with_context(|| format!("--metrics-listen {addr}: cannot bind it"))?,
            ),
            None => None,
        };
        let admin = match self.admin_listen.0 {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("--admin-listen {addr}: cannot bind it; pick another address (port 0 picks a free one) or pass --admin-listen off")
            })?),
            None => None,
        };
        Ok(Listeners { public, metrics, admin })
    }

    /// The admin token from the flag or the environment; `None` to generate one.
    fn admin_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.admin_token_file {
            let token = token::read(path).with_context(|| {
                format!(
                    "--admin-token-file {}: cannot read a token from it; put the token on its first line",
                    path.display()
                )
            })?;
            return Ok(Some(token));
        }
        Ok(std::env::var(token::TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_string()))
    }

    /// A one-component app: the file, served at `/`, with the flags' grants and limits.
    fn single_component_app(&self) -> anyhow::Result<AppSpec> {
        // Read it now so a missing file or a core module is reported as such.
        let file =
            ComponentFile::open(&self.target, &self.common.registry.sources(self.common.state.data_dir.clone()))?;
        let name: String =
            file.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        let component = ComponentSpec {
            source: self.target.clone(),
            digest: None,
            instances: InstanceMode::PerCall,
            grants: self.common.grants.to_grants()?,
            limits: self.common.limits.to_limits(),
            restart: Default::default(),
            config: BTreeMap::new(),
            trusted_keys: Vec::new(),
        };
        Ok(AppSpec {
            file: self.target.clone(),
            app: AppSection {
                name: name.clone(),
                entry: None,
                audit: None,
                exports: BTreeMap::new(),
                trusted_keys: Vec::new(),
                max_instances: None,
            },
            components: BTreeMap::from([(name.clone(), component)]),
            links: Vec::new(),
            routes: vec![RouteSpec { host: None, path: "/".into(), component: name }],
            tenants: BTreeMap::new(),
            keyvalue: Default::default(),
        })
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

struct Listeners {
    public: TcpListener,
    metrics: Option<TcpListener>,
    admin: Option<TcpListener>,
}

/// A shared store may come up after the node (as in Kubernetes); the node serves anyway
/// and says so, and its readiness reports the store until it answers.
async fn report_keyvalue(deployment: &Deployment) {
    let app = deployment.current();
    if let Some(store) = app.keyvalue() {
        match app.ready().await {
            Ok(()) => tracing::info!(store = %store.location, "key-value store ready"),
            Err(error) => eprintln!("warning: {error}; requests that use key-value state fail until it answers"),
        }
    }
}

/// The admin token given, or a new one written where `membrane swap` and friends look for
/// the admin listener's port.
fn admin_token_or_new(token: Option<String>, admin: &TcpListener) -> anyhow::Result<String> {
    if let Some(token) = token {
        return Ok(token);
    }
    let token = token::generate();
    let path = token::default_path(admin.local_addr()?.port());
    token::write(&path, &token).with_context(|| format!("writing the admin token to {}", path.display()))?;
    println!("admin token in {}", path.display());
    Ok(token)
}
