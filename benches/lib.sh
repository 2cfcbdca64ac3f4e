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

# For the soak scripts, which set $pid (the server) and $work (a scratch folder).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# p50, p99 (ms) and non-200 count over the hey CSVs named.
summary() {
  cat "$@" | awk -F, 'NR > 1 && $1 ~ /^[0-9.]+$/ { print $1 * 1000, $7 }' | sort -n >"$work/sorted"
  awk '{ t[NR] = $1; if ($2 != 200) bad++ }
       END { p50 = t[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = t[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1];
             printf "%d %.2f %.2f %d\n", NR, p50, p99, bad + 0 }' "$work/sorted"
}

# How many rows of hey CSV $1 have status $2.
count() { awk -F, -v s="$2" 'NR > 1 && $7 == s { n++ } END { print n + 0 }' "$1"; }
