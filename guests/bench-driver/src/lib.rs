//! Calls across a link in a loop, so a benchmark can time many calls in one host call.

wit_bindgen::generate!({ path: "../../wit/test", world: "bench-driver" });

struct Driver;

impl exports::membrane::test::driver::Guest for Driver {
    fn calls(n: u32) -> u64 {
        let mut last = 0;
        for _ in 0..n {
            last = membrane::test::counter::increment();
        }
        last
    }
}

export!(Driver);
