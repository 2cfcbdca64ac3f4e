//! Outbound HTTP grants: which origins a component may call, and which addresses are
//! never reached by name. Pure decisions, so they can be tested and fuzzed on their own.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An origin a component may send HTTP requests to: `https://api.example.com`,
/// `http://127.0.0.1:9000`, `https://*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboundRule {
    pub https: bool,
    pub host: HostPattern,
    /// The port; `None` means the scheme's default (80 or 443).
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One DNS name, lowercase, without a trailing dot.
    Name(String),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself).
    Wildcard(String),
    /// An IP address, written literally in the grant: the one way to reach a loopback,
    /// private or link-local address.
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid outbound HTTP grant {text:?}: expected scheme://host[:port] with scheme http or \
     https, e.g. https://api.example.com, https://*.example.com or http://127.0.0.1:9000"
)]
pub struct OutboundRuleError {
    pub text: String,
}

impl OutboundRule {
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// Whether a request to `host:port` over `https` (or not) is within this grant.
    /// `host` is the request's host, an IP literal or a name.
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        if https != self.https || port != self.port_or_default() {
            return false;
        }
        let host = normalize_host(host);
        match (&self.host, parse_ip(&host)) {
            (HostPattern::Ip(ip), Some(asked)) => *ip == asked,
            (HostPattern::Name(name), None) => *name == host,
            (HostPattern::Wildcard(suffix), None) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            _ => false,
        }
    }

    /// Whether this grant names `ip` literally, which is what allows a restricted address.
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        matches!(self.host, HostPattern::Ip(granted) if canonical(granted) == canonical(ip))
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// An IP literal in the forms URL parsers accept, including IPv6 with brackets.
/// Decimal (`2130706433`), octal (`0177.0.0.1`) and hex spellings are deliberately not
/// parsed as IPs: they are treated as names, which never match an IP grant and which DNS
/// resolution then vets like any other name.
fn parse_ip(host: &str) -> Option<IpAddr> {
    host.parse().ok().map(canonical)
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses that must never be reached through a name, only through a grant that names
/// the IP literally: loopback, private, link-local (cloud metadata), unspecified,
/// multicast, broadcast, shared and documentation ranges, unique-local IPv6.
pub fn is_restricted(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || first == 0x2001 && v6.segments()[1] == 0xdb8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 can reach IPv4 inside
        }
    }
}

impl FromStr for OutboundRule {
    type Err = OutboundRuleError;
    fn from_str(text: &str) -> Result<Self, OutboundRuleError> {
        let err = || OutboundRuleError { text: text.to_string() };
        let (scheme, rest) = text.split_once("://").ok_or_else(err)?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(err()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(err());
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (ip, after) = inner.split_once(']').ok_or_else(err)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(err)?),
            };
            (ip.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| err())).transpose()?;
        let host = normalize_host(&host);
        let host = if let Some(ip) = parse_ip(&host) {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_name(suffix) {
                return Err(err());
            }
            HostPattern::Wildcard(suffix.to_string())
        } else if valid_name(&host) {
            HostPattern::Name(host)
        } else {
            return Err(err());
        };
        Ok(OutboundRule { https, host, port })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.https { "https://" } else { "http://" })?;
        match &self.host {
            HostPattern::Name(n) => f.write_str(n)?,
            HostPattern::Wildcard(s) => write!(f, "*.{s}")?,
            HostPattern::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

serde_via_str!(OutboundRule);

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse_and_print() {
        for text in ["https://api.example.com", "http://127.0.0.1:9000", "https://*.example.com", "http://[::1]:8080"] {
            assert_eq!(rule(text).to_string(), text);
        }
        for bad in [
            "api.example.com",
            "ftp://x.com",
            "https://",
            "https://a.com/path",
            "https://user@a.com",
            "https://*.",
            "http://a.com:99999",
            "https://bad_name.com",
        ] {
            assert!(bad.parse::<OutboundRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_match_scheme_host_and_port() {
        let api = rule("https://api.example.com");
        assert!(api.allows(true, "api.example.com", 443));
        assert!(api.allows(true, "API.Example.com.", 443));
        assert!(!api.allows(false, "api.example.com", 80));
        assert!(!api.allows(true, "api.example.com", 8443));
        assert!(!api.allows(true, "evil.com", 443));
        let wild = rule("https://*.example.com");
        assert!(wild.allows(true, "a.example.com", 443));
        assert!(wild.allows(true, "a.b.example.com", 443));
        assert!(!wild.allows(true, "example.com", 443));
        assert!(!wild.allows(true, "badexample.com", 443));
        let ip = rule("http://127.0.0.1:9000");
        assert!(ip.allows(false, "127.0.0.1", 9000));
        assert!(ip.allows(false, "[::ffff:127.0.0.1]", 9000));
        assert!(!ip.allows(false, "localhost", 9000));
        assert!(ip.names_ip("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn restricted_addresses_are_recognized_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(is_restricted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_restricted(ip.parse().unwrap()), "{ip}");
        }
    }
}
