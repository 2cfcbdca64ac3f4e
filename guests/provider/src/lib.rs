//! A provider component: state, memory, faults and a resource, each exported through a
//! WIT interface of `membrane:test` for consumers to reach only through a link.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

wit_bindgen::generate!({ path: "../../wit/test", world: "provider" });

use exports::membrane::test::{counter, faults, kv, memory, pace};

struct Provider;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static CANARIES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static LIVE_BUCKETS: Cell<u32> = const { Cell::new(0) };
}

impl counter::Guest for Provider {
    fn increment() -> u64 {
        COUNT.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }
}

impl memory::Guest for Provider {
    fn plant(secret: String) -> u32 {
        CANARIES.with(|c| {
            let mut c = c.borrow_mut();
            c.push(secret);
            c.last().unwrap().as_ptr() as u32
        })
    }

    fn peek(addr: u32, len: u32) -> Vec<u8> {
        // Reading our own linear memory is what any guest may do; the point is that
        // this memory is ours alone.
        (0..len).map(|i| unsafe { std::ptr::read_volatile((addr + i) as usize as *const u8) }).collect()
    }

    fn reverse(mut data: Vec<u8>) -> Vec<u8> {
        data.reverse();
        data
    }
}

impl faults::Guest for Provider {
    fn maybe_trap(trap: bool) -> String {
        if trap {
            panic!("provider asked to trap");
        }
        "ok".to_string()
    }

    fn flaky(n: u32) -> String {
        let path = "/state/attempts";
        let attempts: u32 = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0) + 1;
        std::fs::write(path, attempts.to_string()).expect("the flaky provider needs a writable /state");
        if attempts <= n {
            panic!("transient failure {attempts} of {n}");
        }
        format!("ok after {attempts} attempts")
    }

    fn spin() {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

struct Bucket {
    name: String,
    entries: RefCell<BTreeMap<String, String>>,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        LIVE_BUCKETS.with(|l| l.set(l.get() - 1));
    }
}

impl kv::GuestBucket for Bucket {
    fn new(name: String) -> Self {
        LIVE_BUCKETS.with(|l| l.set(l.get() + 1));
        Bucket { name, entries: RefCell::default() }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn put(&self, key: String, value: String) {
        self.entries.borrow_mut().insert(key, value);
    }

    fn get(&self, key: String) -> Option<String> {
        self.entries.borrow().get(&key).cloned()
    }
}

impl kv::Guest for Provider {
    type Bucket = Bucket;

    fn merge(dst: kv::BucketBorrow<'_>, src: kv::BucketBorrow<'_>) -> u32 {
        let src: &Bucket = src.get();
        let dst: &Bucket = dst.get();
        // A trap in the middle of a call that holds two borrows, for the hostile corpus.
        if src.name == "poison" {
            panic!("merging a poisoned bucket");
        }
        let entries = src.entries.borrow().clone();
        let n = entries.len() as u32;
        dst.entries.borrow_mut().extend(entries);
        n
    }

    fn consume(b: kv::Bucket) -> String {
        let bucket: Bucket = b.into_inner();
        bucket.name.clone()
    }

    fn live() -> u32 {
        LIVE_BUCKETS.with(|l| l.get())
    }
}

impl pace::Guest for Provider {
    fn wait(ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }
}

export!(Provider);
