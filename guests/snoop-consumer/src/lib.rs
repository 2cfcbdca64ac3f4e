//! The consumer side of the reach tests: what it reaches itself, and what its provider
//! (`snoop-provider`, through the link) answers.

use exports::membrane::test::snoop_driver::Guest;

wit_bindgen::generate!({ path: "../../wit/test", world: "snoop-consumer" });

use membrane::test::snoop;

struct Consumer;

impl exports::membrane::test::snoop_driver::Guest for Consumer {
    fn own_file(path: String) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("error: {e}"))
    }
    fn own_env(name: String) -> String {
        std::env::var(&name).unwrap_or_else(|_| "(unset)".into())
    }
    fn own_preopens() -> String {
        let dirs = wasip2::filesystem::preopens::get_directories();
        dirs.iter().map(|(_, path)| path.as_str()).collect::<Vec<_>>().join(",")
    }
    fn provider_file(path: String) -> String {
        snoop::read_file(&path)
    }
    fn provider_env(name: String) -> String {
        snoop::env_var(&name)
    }
    fn provider_preopens() -> String {
        snoop::preopens()
    }
    fn provider_hoard(mib: u32) -> u32 {
        snoop::hoard(mib)
    }
    fn sequence(path: String, name: String) -> Vec<String> {
        let mut seen = vec![Self::own_file(path.clone()), Self::own_env(name.clone())];
        seen.extend([snoop::read_file(&path), snoop::env_var(&name)]);
        seen.extend([Self::own_file(path), Self::own_env(name)]);
        seen
    }
}

export!(Consumer);
