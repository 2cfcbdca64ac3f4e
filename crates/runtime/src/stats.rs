//! Counters for everything that crosses a membrane, kept in atomics so that counting
//! never takes a lock on the call path. Read as serializable snapshots.

use crate::latency::{Latency, LatencyWindow};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LinkStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
    pub fallbacks: AtomicU64,
    pub rejected: AtomicU64,
    latency: Latency,
}

impl Default for LinkStats {
    fn default() -> Self {
        LinkStats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            latency: Latency::default(),
        }
    }
}

/// A point-in-time copy of a link's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkSnapshot {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub retries: u64,
    pub fallbacks: u64,
    /// Calls refused without reaching the provider (open circuit, reentrancy, failed
    /// component).
    pub rejected: u64,
    /// Upper bounds of the bucket holding the median and the 99th percentile call.
    pub p50_ns: u64,
    pub p99_ns: u64,
}

impl LinkStats {
    /// Counts a call that started `at` and took `took`.
    pub fn record_latency(&self, at: Instant, took: Duration) {
        self.latency.record(at, took);
    }

    /// The latency of the calls of the last five minutes, by window, oldest first.
    pub fn recent_latency(&self) -> Vec<LatencyWindow> {
        self.latency.recent(Instant::now())
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let (p50_ns, p99_ns) = self.latency.overall();
        LinkSnapshot {
            calls: self.calls.load(Relaxed),
            errors: self.errors.load(Relaxed),
            traps: self.traps.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            retries: self.retries.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            p50_ns,
            p99_ns,
        }
    }
}

#[derive(Debug, Default)]
pub struct ComponentStats {
    /// Instances created, first starts and restarts together.
    pub instantiations: AtomicU64,
    pub restarts: AtomicU64,
    pub traps: AtomicU64,
    /// Stores alive now, each holding one instance (idle in a pool, held by a singleton,
    /// serving a call or a request).
    pub live: AtomicU64,
    /// Linear memory held by all live instances, in bytes.
    pub memory_bytes: AtomicU64,
    /// Traps by kind (`FaultKind::name`); taken only when a guest faults.
    by_kind: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Granted wasi:keyvalue calls (refused ones are audited and counted as denials).
    pub keyvalue_calls: AtomicU64,
    /// Socket addresses used and refused, by use.
    pub sockets: SocketStats,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ComponentSnapshot {
    pub instantiations: u64,
    pub restarts: u64,
    pub traps: u64,
    pub live: u64,
    pub memory_bytes: u64,
    pub traps_by_kind: std::collections::BTreeMap<&'static str, u64>,
    pub keyvalue_calls: u64,
    pub sockets: SocketSnapshot,
}

impl ComponentStats {
    pub fn trapped(&self, kind: &'static str) {
        self.traps.fetch_add(1, Relaxed);
        *self.by_kind.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    pub fn snapshot(&self) -> ComponentSnapshot {
        ComponentSnapshot {
            instantiations: self.instantiations.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
            traps: self.traps.load(Relaxed),
            live: self.live.load(Relaxed),
            memory_bytes: self.memory_bytes.load(Relaxed),
            traps_by_kind: self.by_kind.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            keyvalue_calls: self.keyvalue_calls.load(Relaxed),
            sockets: self.sockets.snapshot(),
        }
    }
}

/// What a guest did with a socket address, as counted.
#[derive(Debug, Clone, Copy)]
pub enum SocketUse {
    TcpBind,
    TcpListen,
    TcpAccept,
    TcpConnect,
    UdpBind,
    UdpSend,
    UdpReceive,
}

impl SocketUse {
    const ALL: [SocketUse; 7] = [
        SocketUse::TcpBind,
        SocketUse::TcpListen,
        SocketUse::TcpAccept,
        SocketUse::TcpConnect,
        SocketUse::UdpBind,
        SocketUse::UdpSend,
        SocketUse::UdpReceive,
    ];

    pub fn of(usage: wasmtime_wasi::sockets::SocketAddrUse) -> SocketUse {
        use wasmtime_wasi::sockets::SocketAddrUse as U;
        match usage {
            U::TcpBind => SocketUse::TcpBind,
            U::TcpListen => SocketUse::TcpListen,
            U::TcpAccept => SocketUse::TcpAccept,
            U::TcpConnect => SocketUse::TcpConnect,
            U::UdpBind => SocketUse::UdpBind,
            U::UdpSend => SocketUse::UdpSend,
            U::UdpReceive => SocketUse::UdpReceive,
        }
    }

    /// The label in metrics and stats.
    pub fn name(self) -> &'static str {
        match self {
            SocketUse::TcpBind => "tcp_bind",
            SocketUse::TcpListen => "tcp_listen",
            SocketUse::TcpAccept => "tcp_accept",
            SocketUse::TcpConnect => "tcp_connect",
            SocketUse::UdpBind => "udp_bind",
            SocketUse::UdpSend => "udp_send",
            SocketUse::UdpReceive => "udp_receive",
        }
    }
}

/// Socket address uses of one component, granted and denied. Implicit wildcard binds
/// before a connect or send are not counted; every datagram sent or received is.
#[derive(Debug, Default)]
pub struct SocketStats {
    granted: [AtomicU64; 7],
    denied: [AtomicU64; 7],
}

/// Counts by use name (`tcp_bind`, `udp_send`, …); every use is present.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SocketSnapshot {
    pub granted: std::collections::BTreeMap<&'static str, u64>,
    pub denied: std::collections::BTreeMap<&'static str, u64>,
}

impl SocketStats {
    pub fn granted(&self, usage: SocketUse) {
        self.granted[usage as usize].fetch_add(1, Relaxed);
    }

    pub fn denied(&self, usage: SocketUse) {
        self.denied[usage as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> SocketSnapshot {
        let read = |counts: &[AtomicU64; 7]| {
            SocketUse::ALL.iter().map(|u| (u.name(), counts[*u as usize].load(Relaxed))).collect()
        };
        SocketSnapshot { granted: read(&self.granted), denied: read(&self.denied) }
    }
}
