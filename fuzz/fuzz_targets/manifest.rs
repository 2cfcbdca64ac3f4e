//! Any text as a membrane.toml: parsing and validation never panic, every refusal has a
//! message, and sizes and durations that parse print back to themselves.

#![no_main]

use libfuzzer_sys::fuzz_target;
use membrane_manifest::{AppSpec, ByteSize, Duration};
use std::path::Path;

fuzz_target!(|text: &str| {
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
});
