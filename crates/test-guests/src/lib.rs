//! Paths of the guest components in `guests/`, compiled from source by this crate's build
//! script for `wasm32-wasip2`. Tests, benches and examples use these constants.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
