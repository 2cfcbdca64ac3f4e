//! The compute kernels as a component; the inputs are made once per instance and kept, as
//! the native side of the benchmark keeps them.

use membrane_bench_kernels as kernels;
use std::cell::RefCell;
use std::collections::HashMap;

wit_bindgen::generate!({ path: "../../wit/test", world: "bench-kernels" });

thread_local! {
    static BYTES: RefCell<HashMap<u32, Vec<u8>>> = RefCell::default();
    static DOCS: RefCell<HashMap<u32, String>> = RefCell::default();
    static TEXTS: RefCell<HashMap<u32, String>> = RefCell::default();
    static EMAIL: kernels::Regex = kernels::email_regex();
}

struct Kernels;

impl exports::membrane::test::kernels::Guest for Kernels {
    fn sha256(len: u32) -> String {
        BYTES.with_borrow_mut(|m| kernels::sha256(m.entry(len).or_insert_with(|| kernels::bytes(len as usize))))
    }

    fn json(records: u32) -> u32 {
        DOCS.with_borrow_mut(|m| {
            kernels::json_roundtrip(m.entry(records).or_insert_with(|| kernels::json_document(records as usize))) as u32
        })
    }

    fn regex(len: u32) -> u32 {
        TEXTS.with_borrow_mut(|m| {
            let text = m.entry(len).or_insert_with(|| kernels::text(len as usize));
            EMAIL.with(|re| kernels::regex_count(re, text)) as u32
        })
    }
}

export!(Kernels);
