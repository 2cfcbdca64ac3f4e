//! Arbitrary values of arbitrary WIT types through a real link and back: what comes back
//! equals what was sent, and nothing panics. See the crate doc for how.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| membrane_fuzz::targets::link_values(data));
