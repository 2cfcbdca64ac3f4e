# Shared by the conformance scripts (sourced): wasmtime's own test programs, built from a
# wasmtime checkout as its crates/test-programs/artifacts/build.rs builds them, and turned
# into components with the preview 1 reactor adapter, at the versions membrane itself uses.

# build_test_programs WASMTIME_DIR PROGRAM...: the programs as wasm32-wasip1 modules, in
# WASMTIME_DIR/target/wasm32-wasip1/release.
build_test_programs() {
  local dir=$1 bins=() p
  shift
  for p in "$@"; do bins+=(--bin "$p"); done
  (cd "$dir" && cargo build --release --target wasm32-wasip1 -p test-programs "${bins[@]}" >&2)
}

# componentize_helper WORK: builds, under WORK/componentize, the helper that adapts a module
# into a component (`componentize MODULE COMPONENT`), and prints its path.
componentize_helper() {
  local helper=$1/componentize
  mkdir -p "$helper/src"
  printf '%s\n' '[package]' 'name = "componentize"' 'version = "0.0.0"' 'edition = "2024"' 'publish = false' '' \
    '[workspace]' '' '[dependencies]' 'wit-component = "0.254"' \
    'wasi-preview1-component-adapter-provider = "=48.0.8"' >"$helper/Cargo.toml"
  cat >"$helper/src/main.rs" <<'RUST'
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let module = std::fs::read(&args[1]).unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .unwrap()
        .encode()
        .unwrap();
    std::fs::write(&args[2], component).unwrap();
}
RUST
  (cd "$helper" && cargo build --release >&2)
  echo "$helper/target/release/componentize"
}
