//! Which capability stands behind each import a component can have. One table, used by
//! `inspect` (to tell a user what a component could reach) and by the check that refuses,
//! before anything runs, an import nothing can satisfy.

use serde::Serialize;

/// What membrane does for one imported interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Capability {
    /// Always linked and harmless: clocks, randomness, streams, stdout and stderr, exit.
    Always { what: &'static str },
    /// Always linked, but holds nothing until granted.
    Grant {
        what: &'static str,
        /// The `membrane run` flag that grants it.
        flag: &'static str,
        /// The manifest key that grants it.
        key: &'static str,
    },
    /// Linked and always refused: membrane has no grant for it yet.
    Refused { what: &'static str },
    /// Nothing in membrane supplies it: it needs a link to another component.
    Unsatisfied { reason: String },
}

impl Capability {
    pub fn is_satisfied(&self) -> bool {
        !matches!(self, Capability::Unsatisfied { .. })
    }

    /// The text `inspect` shows beside the import.
    pub fn describe(&self) -> String {
        match self {
            Capability::Always { what } => format!("always available ({what})"),
            Capability::Grant { what, flag, key } => format!("{flag} / {key} ({what})"),
            Capability::Refused { what } => format!("always refused ({what})"),
            Capability::Unsatisfied { reason } => format!("unsatisfied: {reason}"),
        }
    }
}

/// The capability behind `import`, an interface name such as
/// `wasi:filesystem/preopens@0.2.3`.
pub fn of_import(import: &str) -> Capability {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    let Some((package, interface)) = path.split_once('/') else {
        return Capability::Unsatisfied {
            reason: "a bare function or instance import; only interfaces are linked".into(),
        };
    };
    if package.starts_with("wasi:") && version.starts_with("0.3.") {
        if let Some(reason) = unsupported_p3(package, interface, version) {
            return Capability::Unsatisfied { reason };
        }
    } else if package.starts_with("wasi:") && !version.starts_with("0.2.") {
        return Capability::Unsatisfied {
            reason: format!(
                "membrane links WASI 0.2 (0.2.0 to 0.2.x) and WASI 0.3.0; \
                 this component wants version {}",
                if version.is_empty() { "(none)" } else { version }
            ),
        };
    }
    // Draft interfaces are linked at one version only: drafts change incompatibly.
    for (draft, linked) in
        [("wasi:keyvalue", "0.2.0-draft"), ("wasi:config", "0.2.0-rc.1"), ("wasi:otel", "0.2.0-rc.2")]
    {
        if package == draft && version != linked {
            return Capability::Unsatisfied {
                reason: format!(
                    "membrane links {draft} at version {linked} only; this component wants {}; \
                     rebuild it against {draft}@{linked}",
                    if version.is_empty() { "(none)" } else { version }
                ),
            };
        }
    }
    use Capability::{Always, Grant};
    match (package, interface) {
        ("wasi:io", _) => Always { what: "streams and polling" },
        ("wasi:clocks", _) => Always { what: "clocks" },
        ("wasi:random", _) => Always { what: "random numbers" },
        ("wasi:cli", "exit") => Always { what: "exit with a status" },
        ("wasi:cli", "stdout" | "stderr") => Always { what: "standard output and error" },
        ("wasi:cli", i) if i.starts_with("terminal-") => Always { what: "terminal detection" },
        ("wasi:cli", "stdin") => Grant { what: "standard input", flag: "--stdin", key: "grants.stdin" },
        ("wasi:cli", "environment") => {
            Grant { what: "environment variables and arguments", flag: "--env", key: "grants.env" }
        }
        ("wasi:filesystem", _) => Grant { what: "files in preopened directories", flag: "--dir", key: "grants.dirs" },
        ("wasi:sockets", "ip-name-lookup") => {
            Grant { what: "DNS lookups", flag: "--allow-dns", key: "grants.allow_dns" }
        }
        ("wasi:cli", "types") => Always { what: "standard stream error codes" },
        ("wasi:sockets", "network" | "instance-network") => {
            Always { what: "the network handle; each socket still needs its grant" }
        }
        ("wasi:sockets", "tcp" | "tcp-create-socket") => Grant {
            what: "TCP: outbound connections; binding, listening and accepting",
            flag: "--allow-tcp; --allow-tcp-bind",
            key: "grants.allow_tcp; grants.allow_tcp_bind",
        },
        // WASI 0.3 has one interface for TCP and UDP sockets, behind the same grants.
        ("wasi:sockets", "types") => Grant {
            what: "TCP and UDP sockets (WASI 0.3)",
            flag: "--allow-tcp; --allow-tcp-bind; --allow-udp; --allow-udp-bind",
            key: "grants.allow_tcp; grants.allow_tcp_bind; grants.allow_udp; grants.allow_udp_bind",
        },
        ("wasi:sockets", "udp" | "udp-create-socket") => Grant {
            what: "UDP: datagrams to peers; binding a local address",
            flag: "--allow-udp; --allow-udp-bind",
            key: "grants.allow_udp; grants.allow_udp_bind",
        },
        ("wasi:http", "types") => Always { what: "HTTP types" },
        ("wasi:keyvalue", "store" | "atomics" | "batch") | ("membrane:state", "cas") => {
            Grant { what: "key-value buckets", flag: "(manifest only)", key: "grants.keyvalue" }
        }
        ("wasi:otel", "tracing" | "types") => {
            Grant { what: "spans of its own in the host's trace", flag: "--allow-otel", key: "grants.otel" }
        }
        ("wasi:otel", _) => Capability::Unsatisfied {
            reason: "membrane links wasi:otel's tracing only; its metrics and logs are not linked".into(),
        },
        ("wasi:config", "store") => {
            Grant { what: "configuration values", flag: "(manifest only)", key: "component.<name>.config" }
        }
        // WASI 0.2's outgoing-handler and WASI 0.3's client: one allowlist for both.
        ("wasi:http", "outgoing-handler" | "client") => {
            Grant { what: "outbound HTTP requests", flag: "--allow-http", key: "grants.outbound_http" }
        }
        _ => Capability::Unsatisfied {
            reason: "no WASI interface or membrane host interface supplies it; \
                     link it to a component that exports it with a [[link]] in membrane.toml"
                .into(),
        },
    }
}

/// Why membrane cannot link WASI 0.3 interface `package/interface@version`, when it cannot:
/// the interfaces wasmtime-wasi 48 implements are linked for `membrane run`; the rest are
/// named here with what to do instead.
fn unsupported_p3(package: &str, interface: &str, version: &str) -> Option<String> {
    let name = format!("{package}/{interface}@{version}");
    if version.contains('-') {
        return Some(format!(
            "{name} is a pre-release of WASI 0.3; membrane links the WASI 0.3.0 release; \
             rebuild the component against WASI 0.3.0"
        ));
    }
    match (package, interface) {
        ("wasi:cli" | "wasi:filesystem" | "wasi:random", _)
        | ("wasi:clocks", "types" | "monotonic-clock" | "system-clock")
        | ("wasi:sockets", "types" | "ip-name-lookup")
        | ("wasi:http", "types" | "client") => None,
        ("wasi:clocks", "timezone") => Some(format!(
            "{name} is an unstable WASI 0.3 interface (feature `clocks-timezone`) that wasmtime 48 \
             does not implement; build the component without it"
        )),
        ("wasi:http", "handler") => Some(format!(
            "{name} is imported by HTTP middleware: the next handler in the chain; link it to a \
             component that exports it with a [[link]] in membrane.toml"
        )),
        _ => Some(format!("{name} is not a WASI 0.3 interface that membrane links")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_imports_map_to_their_grants() {
        assert_eq!(
            of_import("wasi:filesystem/preopens@0.2.3"),
            Capability::Grant { what: "files in preopened directories", flag: "--dir", key: "grants.dirs" }
        );
        assert!(matches!(of_import("wasi:cli/environment@0.2.0"), Capability::Grant { flag: "--env", .. }));
        assert!(matches!(
            of_import("wasi:sockets/tcp@0.2.0"),
            Capability::Grant { flag: "--allow-tcp; --allow-tcp-bind", .. }
        ));
        assert!(matches!(
            of_import("wasi:sockets/udp-create-socket@0.2.3"),
            Capability::Grant { key: "grants.allow_udp; grants.allow_udp_bind", .. }
        ));
        assert!(matches!(
            of_import("wasi:sockets/ip-name-lookup@0.2.0"),
            Capability::Grant { flag: "--allow-dns", .. }
        ));
        assert!(matches!(of_import("wasi:clocks/monotonic-clock@0.2.6"), Capability::Always { .. }));
        assert!(matches!(
            of_import("wasi:keyvalue/store@0.2.0-draft"),
            Capability::Grant { key: "grants.keyvalue", .. }
        ));
        assert!(matches!(of_import("membrane:state/cas@0.1.0"), Capability::Grant { key: "grants.keyvalue", .. }));
        assert!(matches!(of_import("wasi:config/store@0.2.0-rc.1"), Capability::Grant { .. }));
        assert!(matches!(of_import("wasi:otel/tracing@0.2.0-rc.2"), Capability::Grant { flag: "--allow-otel", .. }));
        assert!(!of_import("wasi:otel/tracing@0.2.0-rc.1").is_satisfied());
        assert!(!of_import("wasi:otel/metrics@0.2.0-rc.2").is_satisfied());
    }

    #[test]
    fn wasi_p3_imports_map_to_the_same_grants() {
        assert!(matches!(of_import("wasi:filesystem/preopens@0.3.0"), Capability::Grant { flag: "--dir", .. }));
        assert!(matches!(of_import("wasi:cli/environment@0.3.0"), Capability::Grant { flag: "--env", .. }));
        assert!(matches!(of_import("wasi:cli/stdin@0.3.0"), Capability::Grant { flag: "--stdin", .. }));
        assert!(matches!(
            of_import("wasi:sockets/types@0.3.0"),
            Capability::Grant { flag: "--allow-tcp; --allow-tcp-bind; --allow-udp; --allow-udp-bind", .. }
        ));
        assert!(matches!(
            of_import("wasi:sockets/ip-name-lookup@0.3.0"),
            Capability::Grant { flag: "--allow-dns", .. }
        ));
        assert!(matches!(of_import("wasi:clocks/system-clock@0.3.0"), Capability::Always { .. }));
        assert!(matches!(of_import("wasi:cli/types@0.3.0"), Capability::Always { .. }));
        assert!(matches!(of_import("wasi:http/client@0.3.0"), Capability::Grant { flag: "--allow-http", .. }));
        assert!(matches!(of_import("wasi:http/types@0.3.0"), Capability::Always { .. }));
    }

    #[test]
    fn unknown_and_future_interfaces_are_unsatisfied() {
        assert!(!of_import("example:markdown/render@0.1.0").is_satisfied());
        assert!(!of_import("wasi:cli/environment@0.4.0").is_satisfied());
        assert!(!of_import("wasi:cli/environment@0.3.0-rc-2025-09-16").is_satisfied());
        assert!(!of_import("wasi:clocks/timezone@0.3.0").is_satisfied());
        assert!(!of_import("wasi:http/handler@0.3.0").is_satisfied());
        assert!(!of_import("wasi:keyvalue/store@0.2.0-draft2").is_satisfied());
        assert!(!of_import("wasi:config/store@0.2.0-draft").is_satisfied());
        assert!(!of_import("my-func").is_satisfied());
    }
}
