//! Any text as a membrane.toml: parsing and validation never panic, every refusal has a
//! message, and sizes and durations that parse print back to themselves.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| membrane_fuzz::targets::manifest(data));
