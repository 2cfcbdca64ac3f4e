# Shared by the benchmark scripts (sourced): the release build they all measure, and the
# peers they install when missing.
source scripts/setup.sh

# One set of packages, benches included, for every benchmark build: cargo unifies features
# over the packages (and dev-dependencies) it builds, so a different set would compile
# wasmtime a second time with other features.
build_release() {
  cargo build --release --quiet -p membrane -p membrane-bench --bins --benches
}

need_deb() { # command package
  command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}

need_wasmtime() {
  if ! command -v wasmtime >/dev/null || ! wasmtime --version | grep -q '^wasmtime 48.0.8'; then
    cargo install wasmtime-cli@48.0.8 --locked
  fi
}
