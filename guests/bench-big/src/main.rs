//! A command of about 2 MB (regex, serde_json, sha2 linked in) for the start-up and
//! instantiation benchmarks: runs each compute kernel once on a small input.

use membrane_bench_kernels as kernels;

fn main() {
    let digest = kernels::sha256(&kernels::bytes(1024));
    let json = kernels::json_roundtrip(&kernels::json_document(4));
    let matches = kernels::regex_count(&kernels::email_regex(), &kernels::text(1024));
    println!("sha256 {digest} json {json} regex {matches}");
}
