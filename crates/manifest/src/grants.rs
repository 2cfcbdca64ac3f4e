//! The capabilities a component is granted. Everything is empty by default: a component
//! with `Grants::default()` sees no file, no environment variable, no socket and no name.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Host directories preopened for the guest.
    pub dirs: Vec<DirGrant>,
    /// Environment variables, by name.
    pub env: BTreeMap<String, String>,
    /// TCP addresses the guest may connect to.
    pub allow_tcp: Vec<AddrRule>,
    /// Local TCP addresses the guest may bind and listen on, and accept connections at
    /// (port 0: an ephemeral port the host picks).
    pub allow_tcp_bind: Vec<AddrRule>,
    /// UDP peers the guest may send datagrams to (and "connect" to); their replies reach it.
    pub allow_udp: Vec<AddrRule>,
    /// Local UDP addresses the guest may bind; a bound socket receives from any peer.
    pub allow_udp_bind: Vec<AddrRule>,
    /// Whether the guest may resolve names (`wasi:sockets/ip-name-lookup`).
    pub allow_dns: bool,
    /// Whether the guest reads the host's standard input.
    pub stdin: bool,
    /// Origins the guest may send HTTP requests to (wasi:http/outgoing-handler).
    pub outbound_http: Vec<crate::OutboundRule>,
    /// Key-value buckets (wasi:keyvalue), each read-only or read-write.
    pub keyvalue: Vec<crate::BucketGrant>,
    /// Whether the guest may add spans of its own to the trace it runs in (wasi:otel).
    pub otel: bool,
}

/// A host directory made visible to the guest at `guest`, read-only or read-write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    #[serde(default)]
    pub mode: DirMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    /// Read files and list directories; nothing can be created, written, truncated,
    /// renamed, linked, removed or have its times set.
    Ro,
    #[default]
    Rw,
}

/// The error for a grant written on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("invalid directory grant {text:?}: expected HOST::GUEST, HOST::GUEST:ro or HOST")]
    Dir { text: String },
    #[error(
        "invalid address rule {text:?}: expected IP:PORT, [IPv6]:PORT, a CIDR such as \
         10.0.0.0/8 (any port), CIDR:PORT such as 10.0.0.0/8:443 or a port range such as \
         10.0.0.0/8:8000-8999"
    )]
    Addr { text: String },
}

impl FromStr for DirGrant {
    type Err = GrantError;
    /// Parses `HOST::GUEST[:ro|:rw]` (wasmtime's `--dir` spelling plus a mode), or a bare
    /// `HOST`, which appears in the guest at the same path.
    fn from_str(text: &str) -> Result<Self, GrantError> {
        let err = || GrantError::Dir { text: text.to_string() };
        let (host, guest) = match text.split_once("::") {
            Some((host, guest)) => (host, guest),
            None => (text, text),
        };
        let (guest, mode) = if let Some(g) = guest.strip_suffix(":ro") {
            (g, DirMode::Ro)
        } else if let Some(g) = guest.strip_suffix(":rw") {
            (g, DirMode::Rw)
        } else {
            (guest, DirMode::Rw)
        };
        let host = if text.contains("::") { host } else { guest };
        if host.is_empty() || guest.is_empty() {
            return Err(err());
        }
        Ok(DirGrant { host: PathBuf::from(host), guest: guest.to_string(), mode })
    }
}

/// An address a socket grant names: one IP or a network, on one port, a range of ports or
/// any port. Port 0 names an ephemeral port, picked by the host when the guest binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRule {
    pub net: IpNet,
    /// `None` for any port.
    pub ports: Option<Ports>,
}

/// An inclusive range of ports; one port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl AddrRule {
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.net.contains(&canonical_ip(addr.ip())) && self.ports.is_none_or(|p| p.contains(addr.port()))
    }

    /// Whether every address `inner` allows, this rule allows too.
    pub fn covers(&self, inner: &AddrRule) -> bool {
        let ports = match (self.ports, inner.ports) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(o), Some(i)) => o.first <= i.first && i.last <= o.last,
        };
        ports && self.net.contains(&inner.net)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry, so a
/// rule cannot be dodged by spelling the same host another way.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for AddrRule {
    type Err = GrantError;
    fn from_str(text: &str) -> Result<Self, GrantError> {
        let err = || GrantError::Addr { text: text.to_string() };
        let text_t = text.trim();
        // `[v6 or v6/len]:port` or `[v6]`
        let (addr, port) = if let Some(rest) = text_t.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(err)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(err)?),
            };
            (inner, port)
        } else if text_t.matches(':').count() == 1 {
            let (a, p) = text_t.split_once(':').unwrap();
            (a, Some(p))
        } else {
            (text_t, None)
        };
        let ports = match port {
            None | Some("*") => None,
            Some(p) => {
                let (first, last) = p.split_once('-').unwrap_or((p, p));
                let first = first.parse::<u16>().map_err(|_| err())?;
                let last = last.parse::<u16>().map_err(|_| err())?;
                if first > last {
                    return Err(err());
                }
                Some(Ports { first, last })
            }
        };
        let net = if addr.contains('/') {
            addr.parse::<IpNet>().map_err(|_| err())?.trunc()
        } else {
            IpNet::from(canonical_ip(addr.parse::<IpAddr>().map_err(|_| err())?))
        };
        Ok(AddrRule { net, ports })
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last { write!(f, "{}", self.first) } else { write!(f, "{}-{}", self.first, self.last) }
    }
}

impl fmt::Display for AddrRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = self.net.prefix_len() == self.net.max_prefix_len();
        let addr = if single { self.net.addr().to_string() } else { self.net.to_string() };
        match (self.ports, self.net) {
            (Some(p), IpNet::V6(_)) => write!(f, "[{addr}]:{p}"),
            (Some(p), IpNet::V4(_)) => write!(f, "{addr}:{p}"),
            (None, _) => f.write_str(&addr),
        }
    }
}

serde_via_str!(AddrRule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_parse_wasmtime_spelling_with_a_mode() {
        let g: DirGrant = "./data::/data:ro".parse().unwrap();
        assert_eq!((g.host, g.guest.as_str(), g.mode), (PathBuf::from("./data"), "/data", DirMode::Ro));
        let g: DirGrant = "/tmp/x::/x".parse().unwrap();
        assert_eq!(g.mode, DirMode::Rw);
        let g: DirGrant = "/srv".parse().unwrap();
        assert_eq!((g.host, g.guest.as_str()), (PathBuf::from("/srv"), "/srv"));
        assert!("::/x".parse::<DirGrant>().is_err());
        assert!("/x::".parse::<DirGrant>().is_err());
    }

    #[test]
    fn addr_rules_match_exact_addresses_networks_and_ports() {
        let one: AddrRule = "127.0.0.1:8080".parse().unwrap();
        assert!(one.allows("127.0.0.1:8080".parse().unwrap()));
        assert!(!one.allows("127.0.0.1:8081".parse().unwrap()));
        assert!(!one.allows("127.0.0.2:8080".parse().unwrap()));
        // The mapped spelling of the same host is the same host.
        assert!(one.allows("[::ffff:127.0.0.1]:8080".parse().unwrap()));

        let net: AddrRule = "10.0.0.0/8:443".parse().unwrap();
        assert!(net.allows("10.1.2.3:443".parse().unwrap()));
        assert!(!net.allows("11.1.2.3:443".parse().unwrap()));
        let any_port: AddrRule = "192.168.1.0/24".parse().unwrap();
        assert!(any_port.allows("192.168.1.9:1".parse().unwrap()));

        let v6: AddrRule = "[::1]:80".parse().unwrap();
        assert!(v6.allows("[::1]:80".parse().unwrap()));
        let v6net: AddrRule = "[fc00::/7]:443".parse().unwrap();
        assert!(v6net.allows("[fd00::1]:443".parse().unwrap()));
        assert_eq!(v6net.to_string(), "[fc00::/7]:443");
        assert_eq!(one.to_string(), "127.0.0.1:8080");

        let range: AddrRule = "10.0.0.0/8:8000-8999".parse().unwrap();
        assert!(range.allows("10.9.9.9:8000".parse().unwrap()));
        assert!(range.allows("10.9.9.9:8999".parse().unwrap()));
        assert!(!range.allows("10.9.9.9:9000".parse().unwrap()));
        assert_eq!(range.to_string(), "10.0.0.0/8:8000-8999");
        assert_eq!("[::1]:1-2".parse::<AddrRule>().unwrap().to_string(), "[::1]:1-2");

        for bad in ["localhost:80", "1.2.3.4:99999", "1.2.3.4:x", "[::1", "300.1.1.1:80", "1.2.3.4:9-8", "1.2.3.4:1-"] {
            assert!(bad.parse::<AddrRule>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn a_rule_covers_narrower_networks_and_port_ranges_only() {
        let rule = |t: &str| t.parse::<AddrRule>().unwrap();
        assert!(rule("10.0.0.0/8").covers(&rule("10.1.0.0/16:80")));
        assert!(rule("10.0.0.0/8:8000-8999").covers(&rule("10.1.2.3:8080")));
        assert!(rule("10.0.0.0/8:8000-8999").covers(&rule("10.1.2.3:8100-8200")));
        assert!(!rule("10.0.0.0/8:8000-8999").covers(&rule("10.1.2.3:7000-8100")));
        assert!(!rule("10.0.0.0/8:8080").covers(&rule("10.1.2.3")));
        assert!(!rule("10.0.0.0/16").covers(&rule("10.0.0.0/8")));
    }
}
