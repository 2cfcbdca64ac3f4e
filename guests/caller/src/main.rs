//! A consumer command: reaches the provider only through links. The scenario to run is
//! its first argument; it prints one line per observation.

wit_bindgen::generate!({ path: "../../wit/test", world: "caller", generate_all });

use membrane::test::{counter, faults, memory};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "count" => {
            let n: u32 = arg(1).parse().unwrap_or(3);
            let counts: Vec<String> = (0..n).map(|_| counter::increment().to_string()).collect();
            println!("counts: {}", counts.join(","));
        }
        "canary" => {
            let secret = "canary-7f3a";
            let addr = memory::plant(secret);
            // The same address in our own memory holds whatever we have there, never the
            // provider's secret.
            let ours = unsafe { std::slice::from_raw_parts(addr as usize as *const u8, secret.len()) };
            println!("consumer sees at {addr}: {}", String::from_utf8_lossy(ours).contains(secret));
            let theirs = memory::peek(addr, secret.len() as u32);
            println!("provider has at {addr}: {}", String::from_utf8_lossy(&theirs));
        }
        "copies" => {
            let mine = vec![1u8, 2, 3, 4];
            let reversed = memory::reverse(&mine);
            println!("sent {mine:?}, got {reversed:?}");
        }
        "big" => {
            // N MiB across the link in one list: the host copies it, whatever the provider does.
            let mib: usize = arg(1).parse().unwrap_or(1);
            let data = vec![7u8; mib << 20];
            let back = memory::reverse(&data);
            println!("sent {mib} MiB, got {} bytes back", back.len());
        }
        "trap" => {
            println!("calling a provider that traps");
            let answer = faults::maybe_trap(true);
            println!("answer: {answer}");
        }
        "ok" => println!("answer: {}", faults::maybe_trap(false)),
        "flaky" => println!("answer: {}", faults::flaky(arg(1).parse().unwrap_or(1))),
        "spin-then-ok" => {
            // The first call is abandoned by its timeout; a later call must still work.
            println!("calling a spinning provider");
            faults::spin();
            println!("unreachable: spin returned");
        }
        other => {
            eprintln!("caller: unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}
