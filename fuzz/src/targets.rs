//! The fuzz targets' bodies, each a function of the raw input: libFuzzer calls them from
//! `fuzz_targets/` (coverage-guided, `scripts/fuzz.sh`), and `tests/brief.rs` calls them on
//! the saved inputs and on random mutations of the seeds, in the test command.

use crate::{EchoApp, Ty};
use membrane_manifest::{AppSpec, ByteSize, Duration, HostPattern, OutboundRule, canonical, is_restricted};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Any text as a membrane.toml: parsing and validation never panic, every refusal has a
/// message, and sizes and durations that parse print back to themselves.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match AppSpec::parse(Path::new("fuzz/membrane.toml"), text) {
        Ok(spec) => {
            // What was accepted is consistent: links and routes name declared components.
            for link in &spec.links {
                assert!(spec.components.contains_key(&link.from), "{link:?}");
                assert!(spec.components.contains_key(&link.to), "{link:?}");
            }
            for route in &spec.routes {
                assert!(spec.components.contains_key(&route.component), "{route:?}");
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    // A unit that parses prints as text that parses to the same value.
    if let Ok(size) = text.parse::<ByteSize>() {
        assert_eq!(size.to_string().parse::<ByteSize>().ok(), Some(size), "{text:?}");
    }
    if let Ok(duration) = text.parse::<Duration>() {
        assert_eq!(duration.to_string().parse::<Duration>().ok(), Some(duration), "{text:?}");
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Case<'a> {
    rule: &'a str,
    https: bool,
    host: &'a str,
    port: u16,
    v4: [u8; 4],
    v6: [u16; 8],
}

/// The outbound HTTP allowlist: no request is accepted outside its grant, and no
/// restricted address escapes `is_restricted` through another spelling of it.
pub fn outbound(data: &[u8]) {
    use arbitrary::Arbitrary;
    let Ok(case) = Case::arbitrary_take_rest(arbitrary::Unstructured::new(data)) else { return };
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
}

/// Compiling two components per input would be most of the time; types repeat, so the
/// apps are kept: a few of them, since each has its own engine, and an engine's instance
/// pool reserves 4 GiB of address space per memory slot (8 TiB for an app's 1,000
/// instances; sixteen of them ran out of the 128 TiB a process has).
fn apps() -> &'static Mutex<HashMap<String, Arc<EchoApp>>> {
    static APPS: OnceLock<Mutex<HashMap<String, Arc<EchoApp>>>> = OnceLock::new();
    APPS.get_or_init(Mutex::default)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

/// Arbitrary values of arbitrary WIT types through a real link and back: what comes back
/// equals what was sent, and nothing panics. See the crate doc for how.
pub fn link_values(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(ty) = Ty::arbitrary(&mut u, 3) else { return };
    let Ok(value) = ty.value(&mut u) else { return };
    // Every path at every isolation level: the provider in its own store, and in the
    // consumer's.
    for isolation in crate::ISOLATIONS {
        let key = format!("{ty:?} {isolation}");
        let app = {
            let mut apps = apps().lock().unwrap();
            if apps.len() >= 8 {
                apps.clear();
            }
            let made = || EchoApp::with_isolation(&ty, isolation).unwrap_or_else(|e| panic!("{ty:?} {isolation}: {e}"));
            apps.entry(key).or_insert_with(|| Arc::new(made())).clone()
        };
        let back = runtime()
            .block_on(app.round_trip(value.clone()))
            .unwrap_or_else(|e| panic!("{ty:?} {value:?} ({isolation}): {e}"));
        assert_eq!(back, value, "{ty:?} ({isolation})");
        // The same value on the typed path, where the type has one.
        if let Some(back) = runtime().block_on(app.round_trip_typed(value.clone())) {
            let back = back.unwrap_or_else(|e| panic!("{ty:?} {value:?} (typed, {isolation}): {e}"));
            assert_eq!(back, value, "{ty:?} (typed, {isolation})");
        }
    }
}

/// Any bytes as a component file: reading one never panics (the WASI 0.3 detection reads
/// an untrusted binary before anything validates it), and a component read again from
/// its own bytes is told the same way, WASI 0.3 or not.
pub fn component_file(data: &[u8]) {
    let path = Path::new("fuzz/component.wasm");
    if let Ok(file) = membrane_runtime::ComponentFile::from_bytes("fuzz".into(), path, data.to_vec()) {
        let again = membrane_runtime::ComponentFile::from_bytes("fuzz".into(), path, file.bytes.clone())
            .expect("a component's own bytes read as a component");
        assert_eq!(again.wasi_p3, file.wasi_p3);
    }
}
