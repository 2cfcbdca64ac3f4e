//! Socket grants in one place: which local address a guest may bind and listen on, which
//! peer it may connect or send to, and whose datagrams reach it. Every use is counted, every
//! granted bind, listen, accepted connection, outbound connection and new UDP peer is
//! audited, and every denial is audited with the grant that would allow it.

use crate::audit::Audit;
use crate::stats::{ComponentStats, SocketUse};
use membrane_manifest::{AddrRule, Grants};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// UDP peers remembered per instance, so that each is audited once; past this many the
/// memory is cleared and peers are audited again.
const PEERS_REMEMBERED: usize = 1024;

/// One instance's socket grants, with where their uses are counted and audited.
pub(crate) struct NetPolicy {
    component: Arc<str>,
    tcp_connect: Vec<AddrRule>,
    tcp_bind: Vec<AddrRule>,
    udp: Vec<AddrRule>,
    udp_bind: Vec<AddrRule>,
    audit: Audit,
    stats: Arc<ComponentStats>,
    /// UDP peers already audited: sent to, or dropped a datagram from.
    peers: Mutex<HashSet<(bool, SocketAddr)>>,
}

/// What the policy says about one use of an address.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Allowed by the named grant key; audited.
    Granted(&'static str),
    /// Allowed, not audited: the wildcard bind the OS does before a granted connect or
    /// send, or a datagram from a granted peer.
    Quiet,
    /// Refused; the manifest key and the flag that would allow it.
    Denied { key: &'static str, flag: &'static str },
}

impl NetPolicy {
    pub(crate) fn new(component: &str, grants: &Grants, audit: &Audit, stats: Arc<ComponentStats>) -> Self {
        NetPolicy {
            component: component.into(),
            tcp_connect: grants.allow_tcp.clone(),
            tcp_bind: grants.allow_tcp_bind.clone(),
            udp: grants.allow_udp.clone(),
            udp_bind: grants.allow_udp_bind.clone(),
            audit: audit.clone(),
            stats,
            peers: Mutex::default(),
        }
    }

    pub(crate) fn tcp_granted(grants: &Grants) -> bool {
        !grants.allow_tcp.is_empty() || !grants.allow_tcp_bind.is_empty()
    }

    pub(crate) fn udp_granted(grants: &Grants) -> bool {
        !grants.allow_udp.is_empty() || !grants.allow_udp_bind.is_empty()
    }

    /// Sockets of a protocol with no grant are never created (`access-denied`); every
    /// address a created socket uses goes through [`NetPolicy::check`].
    pub(crate) fn install(self, grants: &Grants, builder: &mut WasiCtxBuilder) {
        builder.allow_tcp(Self::tcp_granted(grants));
        builder.allow_udp(Self::udp_granted(grants));
        let policy = Arc::new(self);
        builder.socket_addr_check(move |addr, usage| Box::pin(std::future::ready(policy.check(addr, usage))));
    }

    fn verdict(&self, addr: SocketAddr, usage: SocketAddrUse) -> Verdict {
        let any = |rules: &[AddrRule]| rules.iter().any(|r| r.allows(addr));
        // The OS binds a connecting or sending socket to the wildcard address first, and
        // wasmtime asks about that implicit bind too.
        let wildcard = addr.ip().is_unspecified() && addr.port() == 0;
        let granted_or = |ok: bool, key, flag| if ok { Verdict::Granted(key) } else { Verdict::Denied { key, flag } };
        match usage {
            SocketAddrUse::TcpBind if any(&self.tcp_bind) => Verdict::Granted("allow_tcp_bind"),
            SocketAddrUse::TcpBind if wildcard && !self.tcp_connect.is_empty() => Verdict::Quiet,
            SocketAddrUse::TcpBind => Verdict::Denied { key: "allow_tcp_bind", flag: "--allow-tcp-bind" },
            // A socket bound to an ephemeral port listens on the port the OS picked.
            SocketAddrUse::TcpListen => granted_or(
                self.tcp_bind.iter().any(|r| r.allows(addr) || r.allows(SocketAddr::new(addr.ip(), 0))),
                "allow_tcp_bind",
                "--allow-tcp-bind",
            ),
            // Only a listener accepts, and listening needed the bind grant.
            SocketAddrUse::TcpAccept => Verdict::Granted("allow_tcp_bind"),
            SocketAddrUse::TcpConnect => granted_or(any(&self.tcp_connect), "allow_tcp", "--allow-tcp"),
            SocketAddrUse::UdpBind if any(&self.udp_bind) => Verdict::Granted("allow_udp_bind"),
            SocketAddrUse::UdpBind if wildcard && !self.udp.is_empty() => Verdict::Quiet,
            SocketAddrUse::UdpBind => Verdict::Denied { key: "allow_udp_bind", flag: "--allow-udp-bind" },
            SocketAddrUse::UdpSend => granted_or(any(&self.udp), "allow_udp", "--allow-udp"),
            SocketAddrUse::UdpReceive if any(&self.udp) || !self.udp_bind.is_empty() => Verdict::Quiet,
            SocketAddrUse::UdpReceive => Verdict::Denied { key: "allow_udp", flag: "--allow-udp" },
        }
    }

    /// Decides, counts and audits one use of `addr`.
    fn check(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let counted = SocketUse::of(usage);
        let what = format!("{usage:?} {addr}");
        match self.verdict(addr, usage) {
            Verdict::Quiet => {
                if matches!(usage, SocketAddrUse::UdpReceive) {
                    self.stats.sockets.granted(counted);
                }
                true
            }
            Verdict::Granted(key) => {
                self.stats.sockets.granted(counted);
                // Datagrams are audited once per peer, not once each.
                if !matches!(usage, SocketAddrUse::UdpSend) || self.first_time(true, addr) {
                    self.audit.record(&self.component, "granted", &what, &format!("allowed by grants.{key}"));
                }
                true
            }
            Verdict::Denied { key, flag } => {
                self.stats.sockets.denied(counted);
                // Datagrams from outside are not the guest's doing: one record per peer.
                if !matches!(usage, SocketAddrUse::UdpReceive) || self.first_time(false, addr) {
                    let outcome = match usage {
                        SocketAddrUse::UdpReceive => format!(
                            "datagram dropped: no grants.{key} rule matches the sender; grant it with {flag} {addr}, \
                             or bind with --allow-udp-bind to receive from anyone"
                        ),
                        _ => format!("no grants.{key} rule matches; grant it with {flag} {addr}"),
                    };
                    self.audit.record(&self.component, "denied", &what, &outcome);
                }
                false
            }
        }
    }

    /// Whether `peer` is new to this instance (for sends when `sent`, else for drops).
    fn first_time(&self, sent: bool, peer: SocketAddr) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= PEERS_REMEMBERED {
            peers.clear();
        }
        peers.insert((sent, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(grants: Grants) -> (NetPolicy, Audit) {
        let audit = Audit::default();
        (NetPolicy::new("c", &grants, &audit, Arc::default()), audit)
    }

    fn rules(text: &[&str]) -> Vec<AddrRule> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn each_use_needs_its_own_grant() {
        let (p, _) = policy(Grants { allow_tcp: rules(&["10.0.0.0/8"]), ..Grants::default() });
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(p.verdict(a("10.1.1.1:80"), SocketAddrUse::TcpConnect), Verdict::Granted("allow_tcp"));
        // The implicit bind of a connect is allowed; listening on it is not.
        assert_eq!(p.verdict(a("0.0.0.0:0"), SocketAddrUse::TcpBind), Verdict::Quiet);
        assert!(matches!(p.verdict(a("0.0.0.0:41000"), SocketAddrUse::TcpListen), Verdict::Denied { .. }));
        assert!(matches!(p.verdict(a("127.0.0.1:8080"), SocketAddrUse::TcpBind), Verdict::Denied { .. }));
        assert!(matches!(p.verdict(a("10.1.1.1:53"), SocketAddrUse::UdpSend), Verdict::Denied { .. }));

        let (p, _) = policy(Grants { allow_tcp_bind: rules(&["127.0.0.1:0", "127.0.0.1:8080"]), ..Grants::default() });
        assert_eq!(p.verdict(a("127.0.0.1:0"), SocketAddrUse::TcpBind), Verdict::Granted("allow_tcp_bind"));
        assert_eq!(p.verdict(a("127.0.0.1:41000"), SocketAddrUse::TcpListen), Verdict::Granted("allow_tcp_bind"));
        assert!(matches!(p.verdict(a("127.0.0.1:8081"), SocketAddrUse::TcpBind), Verdict::Denied { .. }));
        assert!(matches!(p.verdict(a("0.0.0.0:0"), SocketAddrUse::TcpBind), Verdict::Denied { .. }));

        let (p, _) = policy(Grants { allow_udp: rules(&["127.0.0.1:5353"]), ..Grants::default() });
        assert_eq!(p.verdict(a("0.0.0.0:0"), SocketAddrUse::UdpBind), Verdict::Quiet);
        assert_eq!(p.verdict(a("127.0.0.1:5353"), SocketAddrUse::UdpReceive), Verdict::Quiet);
        assert!(matches!(p.verdict(a("127.0.0.1:5354"), SocketAddrUse::UdpReceive), Verdict::Denied { .. }));
        assert!(matches!(p.verdict(a("127.0.0.1:5000"), SocketAddrUse::UdpBind), Verdict::Denied { .. }));
    }

    #[test]
    fn a_denial_names_the_grant_and_a_peer_is_audited_once() {
        let (p, audit) = policy(Grants { allow_udp: rules(&["127.0.0.1:53"]), ..Grants::default() });
        assert!(!p.check("0.0.0.0:8080".parse().unwrap(), SocketAddrUse::TcpBind));
        let events = audit.since(0);
        assert_eq!(events[0].what, "TcpBind 0.0.0.0:8080");
        assert_eq!(
            events[0].outcome,
            "no grants.allow_tcp_bind rule matches; grant it with --allow-tcp-bind 0.0.0.0:8080"
        );
        for _ in 0..3 {
            assert!(p.check("127.0.0.1:53".parse().unwrap(), SocketAddrUse::UdpSend));
        }
        assert_eq!(audit.since(0).len(), 2);
        assert_eq!(p.stats.sockets.snapshot().granted["udp_send"], 3);
        assert_eq!(p.stats.sockets.snapshot().denied["tcp_bind"], 1);
    }
}
