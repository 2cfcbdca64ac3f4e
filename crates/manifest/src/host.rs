//! Host names compared the way DNS compares them. The one place that turns a `Host` header
//! or a host written in the manifest into the form tenants and routes are matched on, so
//! no spelling of a name (`ALICE.localhost.`, `alice.localhost:8080`, `ａｌｉｃｅ.localhost`)
//! reaches a different tenant or route than the name itself.

use std::net::Ipv6Addr;

/// A host that is not a valid DNS name or IP literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host:?} is not a host name: {reason}")]
pub struct InvalidHost {
    pub host: String,
    pub reason: &'static str,
}

/// `host` (a `Host` header or a configured host, a port allowed) as DNS compares it: the
/// port and IPv6 brackets removed, mapped to ASCII by IDNA (UTS #46, which also lowercases
/// and folds full-width forms), and one trailing dot removed (`alice.localhost.` is the
/// fully qualified spelling of `alice.localhost`).
pub fn normalize_host(host: &str) -> Result<String, InvalidHost> {
    normalize_authority(host).map(|(name, _)| name)
}

/// A host as [`normalize_host`] gives it, with its port, if it has one.
pub fn normalize_authority(host: &str) -> Result<(String, Option<u16>), InvalidHost> {
    let invalid = |reason| InvalidHost { host: host.to_string(), reason };
    let (name, port) = split_port(host.trim());
    let port = match port {
        Some(port) => Some(port.parse::<u16>().map_err(|_| invalid("its port is not a number below 65536"))?),
        None => None,
    };
    if let Ok(ip) = name.parse::<Ipv6Addr>() {
        return Ok((ip.to_string(), port));
    }
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    // The URL deny list refuses what may never appear in a host (spaces, `/`, `@`, `%`, …).
    let ascii = idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::URL)
        .map_err(|_| invalid("IDNA cannot map it to ASCII"))?;
    // IDNA maps other full stops (`。`) to `.`, so the trailing dot is looked for after it.
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(invalid("it has an empty label"));
    }
    Ok((ascii.to_string(), port))
}

/// `host` split into its name (an IPv6 literal without brackets) and its `:port`.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(bracketed) = host.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((ip, rest)) => (ip, rest.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        // A bare IPv6 literal has colons of its own; only one colon can start a port.
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_name_is_the_name() {
        for spelling in [
            "alice.localhost",
            "alice.localhost.",
            "ALICE.Localhost.",
            "alice.localhost:8080",
            "alice.localhost.:8080",
            "ａｌｉｃｅ.localhost",
            "alice。localhost。",
        ] {
            assert_eq!(normalize_host(spelling).as_deref(), Ok("alice.localhost"), "{spelling}");
        }
        assert_eq!(normalize_host("bücher.example").as_deref(), Ok("xn--bcher-kva.example"));
        assert_eq!(normalize_host("XN--BCHER-KVA.example.").as_deref(), Ok("xn--bcher-kva.example"));
    }

    #[test]
    fn ip_literals_keep_their_form() {
        assert_eq!(normalize_host("127.0.0.1:80").as_deref(), Ok("127.0.0.1"));
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Ok("::1"));
        assert_eq!(normalize_host("[0:0::1]").as_deref(), Ok("::1"));
        assert_eq!(normalize_host("::1").as_deref(), Ok("::1"));
        assert_eq!(normalize_authority("[::1]:8080"), Ok(("::1".into(), Some(8080))));
        assert_eq!(normalize_authority("Admin.Example.:9900"), Ok(("admin.example".into(), Some(9900))));
        assert_eq!(normalize_authority("127.0.0.1"), Ok(("127.0.0.1".into(), None)));
    }

    #[test]
    fn what_no_resolver_would_accept_is_refused() {
        for bad in [
            "",
            ":80",
            ".",
            "alice..localhost",
            "alice.localhost..",
            ".alice",
            "a b",
            "a/b",
            "a@b",
            "a%41",
            "a:b",
            "a:99999",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad:?}");
        }
    }
}
