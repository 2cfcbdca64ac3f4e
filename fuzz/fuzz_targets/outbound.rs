//! The outbound HTTP allowlist: no request is accepted outside its grant, and no
//! restricted address escapes `is_restricted` through another spelling of it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use membrane_manifest::{HostPattern, OutboundRule, canonical, is_restricted};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, arbitrary::Arbitrary)]
struct Case<'a> {
    rule: &'a str,
    https: bool,
    host: &'a str,
    port: u16,
    v4: [u8; 4],
    v6: [u16; 8],
}

fuzz_target!(|case: Case<'_>| {
    if let Ok(rule) = case.rule.parse::<OutboundRule>() {
        if rule.allows(case.https, case.host, case.port) {
            // Same scheme and port, always.
            assert_eq!(rule.https, case.https, "{case:?}");
            assert_eq!(rule.port_or_default(), case.port, "{case:?}");
            let host =
                case.host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
            match &rule.host {
                HostPattern::Ip(ip) => {
                    let asked: IpAddr = host.parse().expect("an IP grant accepts only IP literals");
                    assert_eq!(canonical(asked), canonical(*ip), "{case:?}");
                }
                HostPattern::Name(name) => assert_eq!(&host, name, "{case:?}"),
                HostPattern::Wildcard(suffix) => {
                    assert!(host.ends_with(&format!(".{suffix}")) && host.len() > suffix.len() + 1, "{case:?}")
                }
            }
            // A name grant never accepts an IP literal: those are vetted as addresses.
            if !matches!(rule.host, HostPattern::Ip(_)) {
                assert!(host.parse::<IpAddr>().is_err(), "{case:?}");
            }
        }
        // The rule prints as a rule that means the same.
        let again: OutboundRule = rule.to_string().parse().expect("a rule prints as a valid rule");
        assert_eq!(again, rule);
    }
    // Every IPv4 address is restricted or not whatever its IPv6 spelling.
    let v4 = Ipv4Addr::from(case.v4);
    assert_eq!(is_restricted(IpAddr::V4(v4)), is_restricted(IpAddr::V6(v4.to_ipv6_mapped())), "{v4}");
    // NAT64 reaches IPv4 inside: never a way around the IPv4 rules.
    let v6 = Ipv6Addr::from(case.v6);
    let [a, b, c, d] = case.v4;
    let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
    assert!(is_restricted(IpAddr::V6(nat64)), "{nat64}");
    // Loopback, unspecified and link-local IPv6 are restricted.
    if v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80 {
        assert!(is_restricted(IpAddr::V6(v6)), "{v6}");
    }
});
