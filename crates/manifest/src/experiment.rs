//! A chaos experiment (`membrane chaos APP.toml EXPERIMENT.toml`): a hypothesis about an
//! app, the faults to inject while traffic runs, and what must hold for the hypothesis to
//! stand. Faults exist only in an experiment file; a membrane.toml cannot hold one.
//!
//! ```toml
//! hypothesis = "the site answers 200 while the fancy renderer traps 30% of the time"
//!
//! [traffic]
//! requests = 300
//! concurrency = 4
//! paths = ["/?doc=hello"]        # GET through the app's routes; or `args` for its entry
//!
//! [[inject]]
//! link = "web -> fancy"          # consumer -> provider
//! trap = 0.3                     # probability an injected trap replaces the call
//! latency = "20ms"               # added to every call
//!
//! [[inject]]
//! component = "fancy"
//! deny = ["outbound_http"]       # grants taken away
//! restart_every = "500ms"        # the component restarted while traffic runs
//!
//! [expect]
//! success = 0.99                 # share of 2xx answers (or exit status 0)
//! p99 = "500ms"
//! ```

use crate::app::{ManifestError, syntax_error};
use crate::units::Duration;
use crate::{AppSpec, Grants};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A validated experiment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub hypothesis: String,
    pub traffic: Traffic,
    #[serde(default)]
    pub inject: Vec<Injection>,
    #[serde(default)]
    pub expect: Expect,
    /// Seed of the random choices (which calls trap), so a run can be repeated.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    #[serde(default = "default_requests")]
    pub requests: u32,
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Paths to GET through the app's routes, in turn.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Arguments for the app's entry component, run once per request.
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

/// Faults at one link (`link = "consumer -> provider"`) or one component.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    /// Probability (0 to 1) that a call through the link is replaced by a trap.
    #[serde(default)]
    pub trap: Option<f64>,
    /// Time added to every call through the link.
    #[serde(default)]
    pub latency: Option<Duration>,
    /// Grants taken from the component: any of [`DENIABLE`].
    #[serde(default)]
    pub deny: Vec<String>,
    /// Restart the component this often while traffic runs.
    #[serde(default)]
    pub restart_every: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The share of requests that must succeed (2xx, or exit status 0), 0 to 1.
    #[serde(default = "default_success")]
    pub success: f64,
    /// The 99th percentile latency must not exceed this.
    #[serde(default)]
    pub p99: Option<Duration>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect { success: default_success(), p99: None }
    }
}

fn default_seed() -> u64 {
    1
}
fn default_requests() -> u32 {
    200
}
fn default_concurrency() -> u32 {
    4
}
fn default_success() -> f64 {
    1.0
}

/// The grants `deny` may name.
pub const DENIABLE: [&str; 10] = [
    "dirs",
    "env",
    "allow_tcp",
    "allow_tcp_bind",
    "allow_udp",
    "allow_udp_bind",
    "allow_dns",
    "stdin",
    "outbound_http",
    "otel",
];

/// Takes the grants named in `deny` away from `grants`.
pub fn deny_grants(grants: &mut Grants, deny: &[String]) {
    for name in deny {
        match name.as_str() {
            "dirs" => grants.dirs.clear(),
            "env" => grants.env.clear(),
            "allow_tcp" => grants.allow_tcp.clear(),
            "allow_tcp_bind" => grants.allow_tcp_bind.clear(),
            "allow_udp" => grants.allow_udp.clear(),
            "allow_udp_bind" => grants.allow_udp_bind.clear(),
            "allow_dns" => grants.allow_dns = false,
            "stdin" => grants.stdin = false,
            "outbound_http" => grants.outbound_http.clear(),
            "otel" => grants.otel = false,
            _ => {}
        }
    }
}

impl Experiment {
    /// Reads `file` and checks it against `app`: every link and component it names exists.
    pub fn load(file: &Path, app: &AppSpec) -> Result<Experiment, ManifestError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ManifestError::Unreadable { file: file.to_owned(), reason: e.to_string() })?;
        Self::parse(file, &text, app)
    }

    pub fn parse(file: &Path, text: &str, app: &AppSpec) -> Result<Experiment, ManifestError> {
        let experiment: Experiment = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
        experiment.validate(file, app)?;
        Ok(experiment)
    }

    fn validate(&self, file: &Path, app: &AppSpec) -> Result<(), ManifestError> {
        let invalid = |key, message, fix| invalid(file, key, message, fix);
        if self.hypothesis.trim().is_empty() {
            return Err(invalid(
                "hypothesis".into(),
                "the hypothesis is empty".into(),
                "say what should hold, e.g. hypothesis = \"the site answers 200 while the renderer traps\"".into(),
            ));
        }
        self.validate_traffic(file, app)?;
        if !(0.0..=1.0).contains(&self.expect.success) {
            return Err(invalid(
                "expect.success".into(),
                format!("{} is not a share between 0 and 1", self.expect.success),
                "write e.g. success = 0.99 for 99%".into(),
            ));
        }
        for (i, injection) in self.inject.iter().enumerate() {
            injection.validate(i, file, app)?;
        }
        Ok(())
    }

    /// Traffic either sends requests through the app's routes or runs its entry, and
    /// sends at least one.
    fn validate_traffic(&self, file: &Path, app: &AppSpec) -> Result<(), ManifestError> {
        let invalid = |key, message, fix| invalid(file, key, message, fix);
        let traffic = &self.traffic;
        match (&traffic.args, traffic.paths.is_empty()) {
            (Some(_), false) | (None, true) => {
                return Err(invalid(
                    "traffic".into(),
                    "traffic needs either `paths` (requests through the app's routes) or `args` (runs of its entry)"
                        .into(),
                    "add paths = [\"/\"] or args = [] to [traffic]".into(),
                ));
            }
            (None, false) if app.routes.is_empty() => {
                return Err(invalid(
                    "traffic.paths".into(),
                    format!("the app {} has no [[route]] to send requests to", app.file.display()),
                    "add a [[route]] to the app, or drive its entry with traffic.args".into(),
                ));
            }
            (Some(_), true) if app.app.entry.is_none() => {
                return Err(invalid(
                    "traffic.args".into(),
                    format!("the app {} has no entry to run", app.file.display()),
                    "set [app] entry in the app, or send requests with traffic.paths".into(),
                ));
            }
            _ => {}
        }
        if let Some(path) = traffic.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid(
                "traffic.paths".into(),
                format!("{path:?} is not a path"),
                "write paths from the root, e.g. \"/hello?x=1\"".into(),
            ));
        }
        if traffic.requests == 0 || traffic.concurrency == 0 {
            return Err(invalid(
                "traffic".into(),
                "requests and concurrency must be at least 1".into(),
                "e.g. requests = 200, concurrency = 4".into(),
            ));
        }
        Ok(())
    }
}

impl Injection {
    /// `(consumer, provider)` of `link = "consumer -> provider"`.
    pub fn link_ends(&self) -> Option<(&str, &str)> {
        let (from, to) = self.link.as_deref()?.split_once("->")?;
        Some((from.trim(), to.trim()))
    }

    /// An injection acts on one place: a link of the app (traps, latency) or one of its
    /// components (denied grants, restarts).
    fn validate(&self, i: usize, file: &Path, app: &AppSpec) -> Result<(), ManifestError> {
        let at = At { file, index: i };
        match (&self.link, &self.component) {
            (Some(_), None) => self.validate_at_link(&at, app)?,
            (None, Some(component)) => self.validate_at_component(component, &at, app)?,
            _ => {
                return Err(invalid(
                    file,
                    format!("inject[{i}]"),
                    "an injection names one place: a link or a component".into(),
                    "write link = \"consumer -> provider\" or component = \"name\"".into(),
                ));
            }
        }
        if let Some(p) = self.trap
            && !(0.0..=1.0).contains(&p)
        {
            return Err(at.invalid(
                "trap",
                format!("{p} is not a probability"),
                "write a number from 0 to 1, e.g. trap = 0.2".into(),
            ));
        }
        Ok(())
    }

    fn validate_at_link(&self, at: &At<'_>, app: &AppSpec) -> Result<(), ManifestError> {
        let Some((from, to)) = self.link_ends() else {
            return Err(at.invalid(
                "link",
                format!("{:?} does not name a link", self.link.as_deref().unwrap_or_default()),
                "write link = \"consumer -> provider\"".into(),
            ));
        };
        if !app.links.iter().any(|l| l.from == from && l.to == to) {
            let links: Vec<String> = app.links.iter().map(|l| format!("{} -> {}", l.from, l.to)).collect();
            return Err(at.invalid(
                "link",
                format!("the app has no link {from} -> {to}"),
                format!("use one of its links: {}", if links.is_empty() { "none".into() } else { links.join(", ") }),
            ));
        }
        if self.trap.is_none() && self.latency.is_none() {
            return Err(at.invalid(
                "link",
                "nothing to inject at the link".into(),
                "add trap = 0.2 (a probability) and/or latency = \"50ms\"".into(),
            ));
        }
        if !self.deny.is_empty() || self.restart_every.is_some() {
            return Err(at.invalid(
                "link",
                "deny and restart_every act on a component, not a link".into(),
                "move them to an [[inject]] with component = \"...\"".into(),
            ));
        }
        Ok(())
    }

    fn validate_at_component(&self, component: &str, at: &At<'_>, app: &AppSpec) -> Result<(), ManifestError> {
        let known = || app.components.keys().cloned().collect::<Vec<_>>().join(", ");
        if !app.components.contains_key(component) {
            return Err(at.invalid(
                "component",
                format!("no component named {component:?}"),
                format!("use one of the app's components: {}", known()),
            ));
        }
        if let Some(name) = self.deny.iter().find(|d| !DENIABLE.contains(&d.as_str())) {
            return Err(at.invalid(
                "deny",
                format!("{name:?} is not a grant"),
                format!("deny some of: {}", DENIABLE.join(", ")),
            ));
        }
        if self.trap.is_some() || self.latency.is_some() {
            return Err(at.invalid(
                "component",
                "trap and latency act on a link".into(),
                "move them to an [[inject]] with link = \"consumer -> provider\"".into(),
            ));
        }
        if self.deny.is_empty() && self.restart_every.is_none() {
            return Err(at.invalid(
                "component",
                "nothing to inject at the component".into(),
                "add deny = [\"outbound_http\"] and/or restart_every = \"1s\"".into(),
            ));
        }
        Ok(())
    }
}

fn invalid(file: &Path, key: String, message: String, fix: String) -> ManifestError {
    ManifestError::Invalid { file: PathBuf::from(file), key, message, fix }
}

/// Where in an experiment a finding is: its file and the index of the injection.
struct At<'a> {
    file: &'a Path,
    index: usize,
}

impl At<'_> {
    fn invalid(&self, key: &str, message: String, fix: String) -> ManifestError {
        invalid(self.file, format!("inject[{}].{key}", self.index), message, fix)
    }
}
