//! Integration tests: the real `membrane` binary against real guest components built from
//! `guests/`.

#[path = "../common/log_sink.rs"]
mod log_sink;
#[path = "../common/raw_http.rs"]
mod raw_http;
mod util;

// `membrane run`: each grant works when given and is denied when not.
mod grants;
// Sockets: TCP listeners and UDP under their grants, denials audited, counters served.
mod net;
// `membrane run`: each limit stops its guest with the right error and exit code.
mod limits;
// Bad inputs: each gets its message and its exit code.
mod errors;
// `membrane inspect`: imports, exports, capabilities, size and digest.
mod inspect;
// The compile cache: hits, misses, corruption.
mod cache;
// Apps of linked components: isolation, instance modes, policies, resources, checks.
mod compose;
// Typed paths across links: values of every shape, traps, and the path each function takes.
mod crossing;
// Links with isolation = "component": values, traps, grants and limits with the provider
// in its consumer's store.
mod isolation;
// `membrane serve`: routing, isolation per request, outbound grants, ingress limits, faults.
mod serve;
// Python (componentize-py) and JavaScript (componentize-js) handlers: fresh per request,
// isolated, hot-swapped and held to their memory limits like Rust ones.
mod interpreted;
// OpenTelemetry: spans to a real OTLP receiver, context in and out; a dead, slow or
// stuck collector, sampling and exporter settings.
mod trace;
mod trace_export;
// Spans from inside components (wasi:otel): under the host's span, never another trace's.
mod trace_guest;
// State: wasi:keyvalue grants and namespaces on embedded and Redis stores, durability,
// config and secrets, several nodes behind nginx.
mod external;
mod state;
// deploy/: the Kubernetes manifests and Dockerfile match the binary.
mod deploy;
// Operations: hot swap under load, --watch, status, and the dashboard in a browser.
mod ops;
// `membrane chaos`: faults injected while traffic runs, and the verdict.
mod chaos;
// Components from OCI registries: push, pull, the store, pins, interop with oras.
mod oci_server;
mod registry;
// Signatures: keygen, sign, trusted_keys, from files and registries.
mod signatures;
// WASI preview 1 command modules, adapted and run behind the same membrane.
mod preview1;
// WASI 0.3 commands under `membrane run`: the same grants, limits and exit statuses as
// WASI 0.2; what wasmtime 48 does not implement of WASI 0.3 is refused by name.
mod p3;
// Async functions, streams and futures across links between stores, and mixed WASI 0.2
// and 0.3 apps.
mod p3_links;
// WASI 0.3 HTTP handlers under `membrane serve`: a fresh instance per request, bodies
// streaming both ways, traps, tenants, the outbound allowlist, swaps, check and inspect,
// and middleware chains.
mod p3_serve;
// WASI 0.3 handler instances reused one request after another, and shared by several at
// once: never across tenants, and a trap or a stuck guest fails only what shares it.
mod p3_reuse;
