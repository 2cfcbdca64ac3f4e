//! Builds every guest component under `guests/` for `wasm32-wasip2` (and the preview 1
//! guests also for `wasm32-wasip1`, as core modules) and writes a module of constants
//! naming their paths, so tests and benches never depend on a committed binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// Guests also built as WASI preview 1 command modules; each gets a `<NAME>_MODULE` const.
const PREVIEW1_TARGET: &str = "wasm32-wasip1";
const PREVIEW1_GUESTS: &[&str] = &["p1-probe"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guests = manifest_dir.join("../../guests").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", guests.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", guests.join("Cargo.lock").display());

    let members = guest_members(&guests);
    for member in &members {
        println!("cargo:rerun-if-changed={}", guests.join(member).display());
    }
    println!("cargo:rerun-if-changed={}", guests.join("../crates/bench-kernels").display());
    let wit = guests.join("../wit");
    if wit.exists() {
        println!("cargo:rerun-if-changed={}", wit.display());
    }

    ensure_target(TARGET);
    build_guests(&guests, &["--target", TARGET]);
    ensure_target(PREVIEW1_TARGET);
    let mut args = vec!["--target", PREVIEW1_TARGET];
    for guest in PREVIEW1_GUESTS {
        args.extend(["-p", guest]);
    }
    build_guests(&guests, &args);

    let out_dir = guests.join("target").join(TARGET).join("release");
    let mut consts = String::new();
    for member in &members {
        let wasm = out_dir.join(format!("{}.wasm", member.replace('-', "_")));
        let wasm = if wasm.exists() { wasm } else { out_dir.join(format!("{member}.wasm")) };
        assert!(wasm.exists(), "guest {member} did not produce {}", wasm.display());
        let name = member.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// The `{member}` guest component, built from `guests/{member}`.\npub const {name}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    for guest in PREVIEW1_GUESTS {
        let wasm = guests.join("target").join(PREVIEW1_TARGET).join("release").join(format!("{guest}.wasm"));
        assert!(wasm.exists(), "guest {guest} did not produce {}", wasm.display());
        let name = guest.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// The `{guest}` guest as a WASI preview 1 core module, built from `guests/{guest}`.\npub const {name}_MODULE: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    consts.push_str(&format!(
        "/// Every guest, by crate name.\npub const ALL: &[(&str, &str)] = &[{}];\n",
        members
            .iter()
            .map(|m| format!("({m:?}, {})", m.to_uppercase().replace('-', "_")))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("guests.rs");
    fs::write(out, consts).unwrap();
}

/// `cargo build --release <args>` in the guest workspace.
fn build_guests(guests: &Path, args: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guests).args(["build", "--release"]).args(args);
    // The outer build's settings are for the host; none of them apply to the guests.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the guest components");
    assert!(status.success(), "building the guest components in {} ({args:?}) failed", guests.display());
}

/// The `members` of the guest workspace, read from its Cargo.toml.
fn guest_members(guests: &Path) -> Vec<String> {
    let text = fs::read_to_string(guests.join("Cargo.toml")).unwrap();
    let start = text.find("members").expect("guests/Cargo.toml lists its members");
    let list = &text[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    list.split(',').map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect()
}

/// Installs the guest target with rustup when it is missing, so a fresh machine needs no
/// manual step.
fn ensure_target(target: &str) {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == target))
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup").args(["target", "add", target]).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "could not install the {target} target; run `rustup target add {target}`"
        );
    }
}
