#!/usr/bin/env bash
# Runs one of membrane's benchmarks next to its peers and charts it.
#
#   benches/run.sh instantiate|link_call|p3_link|otlp_encode|serve|p3_serve|interpreted|density|compute|startup [quick]
#
# Writes benches/results/NAME.tsv (label<TAB>value, the figures in BENCHMARKS.md) and
# benches/results/NAME.svg (its chart). `quick` runs with short settings, to check the
# tooling. Peers are installed when missing: wasmtime-cli 48.0.8 (cargo install, cached in
# ~/.cargo/bin), wrk and hyperfine (Debian packages). Only loopback addresses on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
bench=${1:?usage: benches/run.sh instantiate|link_call|p3_link|otlp_encode|serve|p3_serve|interpreted|density|compute|startup [quick]}
quick=${2:-}
results=benches/results
mkdir -p "$results"
out=$results/$bench.tsv

build_release
tools=target/release

criterion() { # bench group unit title
  local args=()
  [ -n "$quick" ] && args=(--warm-up-time 0.2 --measurement-time 0.5)
  rm -rf "target/criterion/$2" # earlier runs' entries would otherwise join this report
  cargo bench --quiet -p membrane -p membrane-bench --bench "$1" -- --noplot "${args[@]}" >&2
  { echo "# title: $4"; echo "# unit: $3"; echo "# log"; "$tools/bench-criterion" target/criterion "$2" "$3"; } >"$out"
}

case $bench in
  instantiate) criterion instantiate instantiate us "A fresh instance from InstancePre (median, µs)" ;;
  link_call) criterion link_call call ns "One call (median, ns per call)" ;;
  p3_link) criterion p3_link p3 ns "WASI 0.3 across a link (median, ns per call)" ;;
  otlp_encode) criterion otlp_encode otlp us "512 spans encoded for an OTLP export (median, µs)" ;;
  compute)
    # The same guest built with wasm SIMD (wasmtime compiles it to SSE/AVX), in the same
    # run; then the native kernels again with sha2's portable code (no SHA-NI).
    simd=target/simd128-guests
    CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-C target-feature=+simd128" cargo build --quiet --release \
      --manifest-path guests/Cargo.toml -p bench-kernels --target wasm32-wasip2 --target-dir "$simd"
    BENCH_KERNELS_SIMD128=$PWD/$simd/wasm32-wasip2/release/bench_kernels.wasm \
      criterion compute compute ms "Compute kernels (median, ms)"
    args=()
    [ -n "$quick" ] && args=(--warm-up-time 0.2 --measurement-time 0.5)
    cargo bench --quiet -p membrane -p membrane-bench --features membrane-bench/soft-kernels --bench compute -- \
      --noplot "${args[@]}" 'native, sha2 soft' >&2
    { echo "# title: Compute kernels (median, ms)"; echo "# unit: ms"; echo "# log"; "$tools/bench-criterion" target/criterion compute ms; } >"$out" ;;
  serve)
    seconds=10
    [ -n "$quick" ] && seconds=2
    rounds=3
    [ -n "$quick" ] && rounds=1
    benches/serve-load.sh "$seconds" "$rounds" >"$out" ;;
  p3_serve)
    seconds=10
    [ -n "$quick" ] && seconds=2
    rounds=3
    [ -n "$quick" ] && rounds=1
    benches/p3-serve-load.sh "$seconds" "$rounds" >"$out" ;;
  interpreted)
    seconds=10
    [ -n "$quick" ] && seconds=2
    rounds=3
    [ -n "$quick" ] && rounds=1
    NO_BUILD=1 benches/interpreted-load.sh "$seconds" "$rounds" >"$out" ;;
  density)
    counts="1000 10000"
    [ -n "$quick" ] && counts="100"
    {
      echo "# title: Memory per live idle instance (MiB)"
      echo "# unit: MiB"
      for n in $counts; do
        read -r _ _ _ m_per _ _ < <("$tools/bench-density" membrane "$n")
        read -r _ _ _ n_rss n_pss started < <("$tools/bench-density" native "$(( n > 2000 ? 2000 : n ))")
        awk -v n="$n" -v m="$m_per" -v r="$n_rss" -v p="$n_pss" -v s="$started" 'BEGIN {
          printf "membrane, %d instances in one process\t%.4f\n", n, m / 1048576
          printf "native processes, %d (of %d; RSS)\t%.4f\n", s, n, r / 1048576
          printf "native processes, %d (of %d; PSS)\t%.4f\n", s, n, p / 1048576 }'
      done
    } >"$out" ;;
  startup)
    need_deb hyperfine hyperfine
    need_wasmtime
    runs=20
    [ -n "$quick" ] && runs=3
    cache=$(mktemp -d)
    trap 'rm -rf "$cache"' EXIT
    json=$(mktemp)
    {
      echo "# title: Start-up of one run (mean, ms)"
      echo "# unit: ms"
      for guest in hello bench-big; do
        wasm=guests/target/wasm32-wasip2/release/$guest.wasm
        membrane=target/release/membrane
        "$membrane" run --cache-dir "$cache" "$wasm" >/dev/null
        wasmtime run "$wasm" >/dev/null
        size=$(( $(stat -c %s "$wasm") / 1024 ))
        hyperfine -N -w 3 -r "$runs" --export-json "$json" \
          -n "membrane run, cold (no cache): $guest, $size KiB" "$membrane run --no-cache $wasm" \
          -n "membrane run, warm (cache): $guest, $size KiB" "$membrane run --cache-dir $cache $wasm" \
          -n "wasmtime run (its cache): $guest, $size KiB" "wasmtime run $wasm" >&2
        python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]: print("%s\t%.3f" % (r["command"], r["mean"] * 1000))' "$json"
      done
    } >"$out" ;;
  *) echo "unknown benchmark $bench: use instantiate|link_call|p3_link|otlp_encode|serve|p3_serve|interpreted|density|compute|startup" >&2; exit 2 ;;
esac
"$tools/bench-chart" "$out" "$results/$bench.svg"
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
cat "$out"
