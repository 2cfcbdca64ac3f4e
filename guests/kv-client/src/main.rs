//! A consumer of a resource the provider owns: creates buckets, calls their methods,
//! passes them as borrows and as owned values, and drops them.

wit_bindgen::generate!({ path: "../../wit/test", world: "kv-client", generate_all });

use membrane::test::kv::{self, Bucket};

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "resources" => {
            let before = kv::live();
            let a = Bucket::new("a");
            let b = Bucket::new("b");
            a.put("colour", "teal");
            b.put("shape", "hexagon");
            println!("a is named {}", a.name());
            println!("a.colour = {:?}", a.get("colour"));
            println!("merged {}", kv::merge(&a, &b));
            println!("a.shape = {:?}", a.get("shape"));
            println!("live while held: {}", kv::live() - before);
            println!("consumed {}", kv::consume(b));
            println!("live after consume: {}", kv::live() - before);
            drop(a);
            println!("live after drop: {}", kv::live() - before);
        }
        "trap-borrowed" => {
            let a = Bucket::new("a");
            let poison = Bucket::new("poison");
            println!("merging with both borrowed");
            println!("merged {}", kv::merge(&a, &poison));
        }
        "forge" => {
            // A handle is an index into this instance's own table: a number taken from
            // somewhere else names nothing here.
            let index: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            let forged = unsafe { Bucket::from_handle(index) };
            println!("forged handle {index}");
            println!("name: {}", forged.name());
        }
        other => {
            eprintln!("kv-client: unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}
