//! A provider that reports what it can reach of the host: files, environment variables
//! and preopened directories, and memory it takes on request. Tests link it to
//! `snoop-consumer` to show that each component sees only its own grants.

wit_bindgen::generate!({ path: "../../wit/test", world: "snoop-provider" });

use std::sync::Mutex;

/// Memory taken by `hoard`, kept for the instance's life.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct Provider;

impl exports::membrane::test::snoop::Guest for Provider {
    fn read_file(path: String) -> String {
        read_file(&path)
    }
    fn env_var(name: String) -> String {
        env_var(&name)
    }
    fn preopens() -> String {
        preopens()
    }
    fn hoard(mib: u32) -> u32 {
        let mut hoard = HOARD.lock().unwrap();
        for _ in 0..mib {
            // Touched, so the pages are really the guest's.
            hoard.push(vec![1u8; 1 << 20]);
        }
        hoard.len() as u32
    }
}

fn read_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("error: {e}"))
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| "(unset)".into())
}

fn preopens() -> String {
    let dirs = wasip2::filesystem::preopens::get_directories();
    dirs.iter().map(|(_, path)| path.as_str()).collect::<Vec<_>>().join(",")
}

export!(Provider);
