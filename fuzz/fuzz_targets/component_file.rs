//! Any bytes as a component file: reading one (telling a WASI 0.3 component from a 0.2
//! one before validation) never panics.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| membrane_fuzz::targets::component_file(data));
