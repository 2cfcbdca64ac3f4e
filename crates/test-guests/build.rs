//! Builds every guest component under `guests/` for `wasm32-wasip2` and writes a module of
//! constants naming their paths, so tests and benches never depend on a committed binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

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

    ensure_target();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests).args(["build", "--release", "--target", TARGET]);
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
    assert!(status.success(), "building the guest components in {} failed", guests.display());

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
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET))
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup").args(["target", "add", TARGET]).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "could not install the {TARGET} target; run `rustup target add {TARGET}`"
        );
    }
}
