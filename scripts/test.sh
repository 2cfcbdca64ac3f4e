#!/usr/bin/env bash
# Runs membrane's whole test suite, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo test --workspace

# The fuzz targets, as the tests above built them: every seed and every input that once
# failed (fuzz/regressions), then a few seconds of mutating the seeds. This build has no
# coverage instrumentation (that would compile wasmtime a second time); scripts/fuzz.sh
# runs the same targets coverage-guided, for as long as asked.
shopt -s nullglob
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in manifest outbound link_values; do
  inputs=(fuzz/seeds/"$target"/* fuzz/regressions/"$target"/*)
  [ ${#inputs[@]} -gt 0 ] || { echo "fuzz: $target has no seeds in fuzz/seeds/$target" >&2; exit 1; }
  echo "fuzz: $target: ${#inputs[@]} saved inputs, then ${FUZZ_SECONDS:-5}s of mutation" >&2
  target/debug/"$target" "${inputs[@]}" 2>&1 | tail -n 1
  mkdir -p "$corpus/$target"
  target/debug/"$target" -keep_seed=1 -max_total_time="${FUZZ_SECONDS:-5}" -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 "$corpus/$target" fuzz/seeds/"$target" 2>&1 | grep -E '^(stat::number_of_executed_units|Done)' >&2
done
