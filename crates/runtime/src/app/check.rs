//! Everything that can be known about an app before it runs: each link type-checked
//! against both components' WIT, every import satisfied, the entry runnable, cycles found.
//! `membrane check` prints this; loading an app refuses to start on any error in it.

use crate::capability;
use crate::link::typed::Crossing;
use crate::wit_compat::{self, ComponentWit};
use membrane_manifest::{AppSpec, InstanceMode, Isolation, OnTrap};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// What loading found about one component, for checking.
pub struct Checked<'a> {
    pub wit: &'a ComponentWit,
    /// The component's imports, exactly as named in its binary.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, naming the manifest key it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {}: {}", self.key, self.message)
    }
}

/// A link as it will be built: the names under which each side really has it, and the
/// path each of its functions takes.
#[derive(Debug, Clone, Default)]
pub struct LinkPlan {
    pub import: String,
    pub export: String,
    pub fallback_export: Option<String>,
    /// Each function of the interface and how it crosses (empty for a link in error).
    pub functions: Vec<(String, Crossing)>,
}

/// The result of checking: one plan per link (in manifest order) and the findings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub links: Vec<LinkPlan>,
    pub problems: Vec<Problem>,
    pub cycles: Vec<Vec<String>>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }

    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// The exports a routed component must have one of: WASI 0.2's handler or WASI 0.3's.
pub const HTTP_HANDLERS: [&str; 2] = ["wasi:http/incoming-handler@0.2.0", "wasi:http/handler@0.3.0"];

pub fn check(spec: &AppSpec, components: &BTreeMap<String, Checked<'_>>) -> Report {
    let mut report = Report::default();
    report.links =
        spec.links.iter().enumerate().map(|(i, link)| check_link(spec, components, i, link, &mut report)).collect();
    check_imports(spec, components, &mut report);
    check_entry_and_routes(spec, components, &mut report);
    check_grants_and_config(spec, &mut report);
    report.problems.extend(unused_socket_grants(spec, components));
    check_cycles(spec, &mut report);
    report
}

impl Report {
    pub(super) fn error(&mut self, key: String, message: String) {
        self.problems.push(Problem { severity: Severity::Error, key, message });
    }
}

/// Link `i`: the consumer imports the interface, the provider (and any fallback) exports
/// one that serves it, and resources stay in the one instance that made them.
fn check_link(
    spec: &AppSpec,
    components: &BTreeMap<String, Checked<'_>>,
    i: usize,
    link: &membrane_manifest::LinkSpec,
    report: &mut Report,
) -> LinkPlan {
    let key = |field: &str| format!("link[{i}].{field}");
    let consumer = &components[&link.from];
    let provider = &components[&link.to];
    let mut plan = LinkPlan::default();
    let Some(wanted) = consumer.wit.import(&link.import) else {
        report.error(
            key("import"),
            format!(
                "component `{}` does not import {}; its imports that need a link are: {}",
                link.from,
                link.import,
                list(consumer.imports.iter().filter(|i| !capability::of_import(i).is_satisfied()))
            ),
        );
        return plan;
    };
    plan.import = consumer.wit.name_of(wanted);
    match provider.wit.export(&link.import) {
        None => report.error(
            key("to"),
            format!(
                "component `{}` does not export {}; it exports: {}",
                link.to,
                link.import,
                list(provider.exports.iter())
            ),
        ),
        Some(offered) => {
            plan.export = provider.wit.name_of(offered);
            if let Err(m) = wit_compat::check(wanted, offered) {
                report.error(key("to"), mismatch_message(&link.from, &link.to, &plan.import, &m));
            }
            if wit_compat::has_resources(offered) && spec.components[&link.to].instances != InstanceMode::Singleton {
                report.error(
                    format!("component.{}.instances", link.to),
                    format!(
                        "{} has resource types, and a resource lives in the instance that made it; \
                         set instances = \"singleton\" for `{}`",
                        plan.export, link.to
                    ),
                );
            }
        }
    }
    // A hop hands a request and its streaming body on: it cannot be sent again, or to
    // another handler, once the body has started to flow.
    if crate::link::http_hop::is_http_hop(&link.import) && (link.on_trap != OnTrap::Propagate || link.circuit.is_some())
    {
        report.error(
            key("on_trap"),
            format!(
                "the link from `{}` to `{}` is a middleware's hop to the next HTTP handler; on_trap \
                 and circuit do not apply to a hop (a streamed request cannot be sent again); remove them",
                link.from, link.to
            ),
        );
    }
    if let OnTrap::Fallback(fallback) = &link.on_trap {
        let backup = &components[fallback];
        match backup.wit.export(&link.import) {
            None => report.error(
                key("on_trap"),
                format!(
                    "the fallback `{fallback}` does not export {}; it exports: {}",
                    link.import,
                    list(backup.exports.iter())
                ),
            ),
            Some(offered) => {
                plan.fallback_export = Some(backup.wit.name_of(offered));
                if let Err(m) = wit_compat::check(wanted, offered) {
                    report.error(key("on_trap"), mismatch_message(&link.from, fallback, &plan.import, &m));
                }
                if wit_compat::has_resources(offered) {
                    report.error(
                        key("on_trap"),
                        format!(
                            "{} has resource types; a fallback cannot take over resources another instance made",
                            plan.import
                        ),
                    );
                }
            }
        }
    }
    plan
}

/// Every import is satisfied by WASI, a host interface or a link; else the fix names the
/// components that export it.
fn check_imports(spec: &AppSpec, components: &BTreeMap<String, Checked<'_>>, report: &mut Report) {
    for (name, component) in components {
        for import in &component.imports {
            let linked = spec.links.iter().any(|l| &l.from == name && wit_compat::same_interface(&l.import, import));
            let capability::Capability::Unsatisfied { reason } = capability::of_import(import) else { continue };
            if linked {
                continue;
            }
            let providers: Vec<&String> = components
                .iter()
                .filter(|(other, c)| *other != name && c.exports.iter().any(|e| wit_compat::same_interface(e, import)))
                .map(|(other, _)| other)
                .collect();
            let fix = match providers.first() {
                Some(p) => format!(
                    "add [[link]] from = \"{name}\", import = \"{import}\", to = \"{p}\" ({} exports it)",
                    list(providers.iter())
                ),
                None => format!("{reason}; no component of this app exports it"),
            };
            report.error(
                format!("component.{name}"),
                format!("`{name}` imports {import}, which nothing supplies; {fix}"),
            );
        }
    }
}

/// The entry can be run and each routed component can serve HTTP (the manifest checked
/// that they name declared components).
fn check_entry_and_routes(spec: &AppSpec, components: &BTreeMap<String, Checked<'_>>, report: &mut Report) {
    if let Some(entry) = &spec.app.entry
        && !components[entry]
            .exports
            .iter()
            .any(|e| ["wasi:cli/run@0.2.0", "wasi:cli/run@0.3.0"].iter().any(|run| wit_compat::same_interface(e, run)))
    {
        report.error(
            "app.entry".into(),
            format!(
                "the entry `{entry}` does not export wasi:cli/run, so it cannot be run; it exports: {}",
                list(components[entry].exports.iter())
            ),
        );
    }
    for (i, route) in spec.routes.iter().enumerate() {
        let component = &components[&route.component];
        if !component.exports.iter().any(|e| HTTP_HANDLERS.iter().any(|h| wit_compat::same_interface(e, h))) {
            report.error(
                format!("route[{i}].component"),
                format!(
                    "component `{}` cannot serve HTTP: it exports neither wasi:http/incoming-handler (WASI 0.2) \
                     nor wasi:http/handler (WASI 0.3); it exports: {}",
                    route.component,
                    list(component.exports.iter())
                ),
            );
        }
    }
}

/// Granted directories exist, and config sources resolve (they are read at start; say
/// now which ones would stop it).
fn check_grants_and_config(spec: &AppSpec, report: &mut Report) {
    for (name, component) in &spec.components {
        for (j, dir) in component.grants.dirs.iter().enumerate() {
            if !dir.host.is_dir() {
                report.error(
                    format!("component.{name}.grants.dirs[{j}].host"),
                    format!("{} is not a directory; create it or fix the path", dir.host.display()),
                );
            }
        }
        if let Err(error) = crate::state::ComponentConfig::resolve(name, &component.config) {
            report.error(format!("component.{name}.config"), error.to_string());
        }
    }
}

/// Link cycles are warnings: per-call components make a fresh instance each time round;
/// a held instance on the cycle makes a call around it reentrant, which fails.
fn check_cycles(spec: &AppSpec, report: &mut Report) {
    report.cycles = cycles(spec);
    // Providers in a store are made once per store, so a call around a cycle of such
    // links would enter an instance busy with the call that led there.
    let in_one_store = cycles_of(spec, |l| l.isolation == Isolation::Component);
    for cycle in &in_one_store {
        let mut path = cycle.clone();
        path.push(cycle[0].clone());
        report.error(
            "link".into(),
            format!(
                "link cycle {} has isolation = \"component\" all the way round: its components would share \
                 one store, where a call around the cycle re-enters an instance busy with the call that led \
                 there; give one of its links isolation = \"store\"",
                path.join(" -> ")
            ),
        );
    }
    for cycle in report.cycles.iter().filter(|c| !in_one_store.contains(c)) {
        let held: Vec<&String> = cycle
            .iter()
            .filter(|c| spec.components[*c].instances != InstanceMode::PerCall || spec.app.entry.as_ref() == Some(*c))
            .collect();
        let mut path = cycle.clone();
        path.push(cycle[0].clone());
        let message = if held.is_empty() {
            format!(
                "link cycle {}: every component on it is per-call, so each call around it gets a fresh instance (at most 32 deep)",
                path.join(" -> ")
            )
        } else {
            format!(
                "link cycle {}: a call around it re-enters {}, which is busy serving the call, so it fails as a reentrant call; make them per-call or break the cycle",
                path.join(" -> "),
                list(held.iter())
            )
        };
        report.problems.push(Problem { severity: Severity::Warning, key: "link".into(), message });
    }
}

/// A socket grant for a protocol the component does not import is a mistake (a grant on
/// the wrong component, or a component built without that protocol): a warning, with the fix.
fn unused_socket_grants(spec: &AppSpec, components: &BTreeMap<String, Checked<'_>>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, component) in &spec.components {
        let Some(checked) = components.get(name) else { continue };
        let imports = |interfaces: &[&str]| {
            checked.imports.iter().any(|import| {
                let path = import.split('@').next().unwrap_or(import);
                interfaces.iter().any(|i| path == format!("wasi:sockets/{i}"))
            })
        };
        let grants = &component.grants;
        let protocols = [
            ("allow_tcp", !grants.allow_tcp.is_empty(), imports(&["tcp", "tcp-create-socket"]), "tcp"),
            ("allow_tcp_bind", !grants.allow_tcp_bind.is_empty(), imports(&["tcp", "tcp-create-socket"]), "tcp"),
            ("allow_udp", !grants.allow_udp.is_empty(), imports(&["udp", "udp-create-socket"]), "udp"),
            ("allow_udp_bind", !grants.allow_udp_bind.is_empty(), imports(&["udp", "udp-create-socket"]), "udp"),
            ("allow_dns", grants.allow_dns, imports(&["ip-name-lookup"]), "ip-name-lookup"),
        ];
        for (key, granted, imported, interface) in protocols {
            if granted && !imported {
                problems.push(Problem {
                    severity: Severity::Warning,
                    key: format!("component.{name}.grants.{key}"),
                    message: format!(
                        "`{name}` does not import wasi:sockets/{interface}, so it cannot use this grant; \
                         remove it, or grant it to the component that needs it"
                    ),
                });
            }
        }
    }
    problems
}

fn mismatch_message(consumer: &str, provider: &str, import: &str, m: &wit_compat::Mismatch) -> String {
    match &m.provider {
        None => format!(
            "`{provider}` cannot serve {import} to `{consumer}`: it has no function `{}`\n    `{consumer}` imports: {}",
            m.function, m.consumer
        ),
        Some(offered) => format!(
            "`{provider}` cannot serve {import} to `{consumer}`: function `{}` differs\n    `{consumer}` imports: {}\n    `{provider}` exports: {offered}",
            m.function, m.consumer
        ),
    }
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    if items.is_empty() { "nothing".into() } else { items.join(", ") }
}

/// Every elementary cycle of the link graph, each once, starting at its smallest name.
pub fn cycles(spec: &AppSpec) -> Vec<Vec<String>> {
    cycles_of(spec, |_| true)
}

/// Every elementary cycle through the links `through` keeps.
fn cycles_of(spec: &AppSpec, through: impl Fn(&membrane_manifest::LinkSpec) -> bool) -> Vec<Vec<String>> {
    let edges = |from: &str| -> Vec<String> {
        let mut to: Vec<String> =
            spec.links.iter().filter(|l| l.from == from && through(l)).map(|l| l.to.clone()).collect();
        to.sort();
        to.dedup();
        to
    };
    let mut found = Vec::new();
    for start in spec.components.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, path)) = stack.pop() {
            for next in edges(&node) {
                if &next == start {
                    found.push(path.clone());
                } else if next > *start && !path.contains(&next) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next, longer));
                }
            }
        }
    }
    found.sort();
    found
}

/// The app as text: components with their membranes, the links out of each and, from
/// `report`, the path each linked function takes.
pub fn graph_text(spec: &AppSpec, report: &Report) -> String {
    let mut out = format!("app {}\n", spec.app.name);
    for (name, component) in &spec.components {
        let entry = if spec.app.entry.as_deref() == Some(name) { ", entry" } else { "" };
        out.push_str(&format!("  {name} ({}{entry})\n", component.instances));
        for link in spec.links.iter().filter(|l| &l.from == name) {
            let mut policy = vec![link.on_trap.to_string()];
            if let Some(t) = link.timeout {
                policy.push(format!("timeout {t}"));
            }
            if let Some(c) = link.circuit {
                policy.push(format!("circuit {} failures / {}", c.failures, c.cooldown));
            }
            policy.push(format!("isolation {}", link.isolation));
            out.push_str(&format!("    {} -> {} [{}]\n", link.import, link.to, policy.join(", ")));
            let i = spec.links.iter().position(|l| std::ptr::eq(l, link)).expect("a link of the spec");
            for (function, crossing) in report.links.get(i).map(|p| p.functions.as_slice()).unwrap_or_default() {
                out.push_str(&format!("      {function}: {crossing}\n"));
            }
        }
    }
    out
}

/// The app in Graphviz dot.
pub fn graph_dot(spec: &AppSpec) -> String {
    let mut out = format!("digraph {:?} {{\n  rankdir=LR;\n  node [shape=box];\n", spec.app.name);
    for (name, component) in &spec.components {
        let shape = if spec.app.entry.as_deref() == Some(name) { ", style=bold" } else { "" };
        out.push_str(&format!("  {name:?} [label=\"{name}\\n{}\"{shape}];\n", component.instances));
    }
    for link in &spec.links {
        out.push_str(&format!(
            "  {:?} -> {:?} [label={:?}];\n",
            link.from,
            link.to,
            format!("{}\n{}, isolation {}", link.import, link.on_trap, link.isolation)
        ));
        if let OnTrap::Fallback(f) = &link.on_trap {
            out.push_str(&format!("  {:?} -> {f:?} [style=dashed, label=\"fallback\"];\n", link.from));
        }
    }
    out.push_str("}\n");
    out
}
