//! The hostile corpus: guests that attack the host on purpose. Each case asserts the
//! contained outcome of its attack, and that a neighbour in the same host process still
//! answers correctly afterwards.

#[path = "../common/log_sink.rs"]
mod log_sink;
#[path = "../common/raw_http.rs"]
mod raw_http;
#[allow(dead_code)]
#[path = "../all/util.rs"]
mod util;

mod served;

// CPU, stack and memory attacks on a served component, a neighbour answering beside it.
mod cpu_memory;
// Host resources: resource and timer floods, huge random reads, header floods, stdout
// floods, abandoned requests, memory left for the next instance or tenant.
mod host_resources;
// What a guest makes the host hold on its behalf: sockets (fds), fields (host memory),
// and the text of host errors it reads.
mod host_budget;
// Engine-level attacks written in WAT: memory and table bombs, huge declared minimums,
// a maximum-size memory.fill against a short deadline, nested instances.
mod engine;
// Between components: hostile providers (bad realloc, invalid results), traps mid-call.
mod links;
// Outbound HTTP: restricted addresses in many spellings, timeouts of zero and forever,
// forbidden headers.
mod outbound;
// Filesystem: symlink loops and chains; what grants.rs does not already cover.
mod filesystem;
// Ingress: many slow clients at once, twice the concurrency limit, tenant hosts in other
// spellings, conflicting framing on bare-LF lines.
mod ingress;
// Requests that end early inside a link: disconnects mid-call, handles never dropped.
mod abandoned;
// Pool slots: a handler of many memories under load beside a neighbour.
mod slots;

/// Fails when the host itself panicked. A guest's own panic (`thread '<unnamed>'`, printed
/// on the guest's stderr) is the guest's business.
#[track_caller]
pub fn assert_no_host_panic(stderr: &str) {
    let host_panics: Vec<&str> =
        stderr.lines().filter(|l| l.contains("panicked at") && !l.starts_with("thread '<unnamed>'")).collect();
    assert!(host_panics.is_empty(), "the host panicked:\n{stderr}");
}
