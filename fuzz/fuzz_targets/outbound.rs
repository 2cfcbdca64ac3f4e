//! The outbound HTTP allowlist: no request is accepted outside its grant, and no
//! restricted address escapes `is_restricted` through another spelling of it.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| membrane_fuzz::targets::outbound(data));
