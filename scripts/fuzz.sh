#!/usr/bin/env bash
# Runs membrane's fuzz targets (cargo-fuzz, libFuzzer) in fuzz/: first each target's
# regression inputs (fuzz/regressions/TARGET, inputs that once failed), then FUZZ_SECONDS
# of fuzzing (default 60) from the seeds and the corpus gathered so far.
#
#   scripts/fuzz.sh                              # every target, 60 s each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh link_values
#
# A failing input is written to fuzz/artifacts/TARGET/; once fixed, copy it into
# fuzz/regressions/TARGET/ so every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
# cargo-fuzz passes compiler flags that only nightly accepts; this lets the stable
# compiler accept them. No sanitizer: membrane is safe Rust, the targets look for panics
# and broken invariants.
export RUSTC_BOOTSTRAP=1
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(manifest outbound link_values component_file)
fi

cd fuzz
# Its own target directory: instrumented, it shares nothing with the normal build.
fuzz_args=(--sanitizer none --release --target-dir target)
cargo fuzz build "${fuzz_args[@]}"
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target" "seeds/$target"
  if [ -n "$(ls -A "regressions/$target")" ]; then
    echo "fuzz: $target: replaying regressions/$target" >&2
    cargo fuzz run "${fuzz_args[@]}" "$target" "regressions/$target" -- -runs=0
  fi
  echo "fuzz: $target: fuzzing for ${FUZZ_SECONDS}s" >&2
  cargo fuzz run "${fuzz_args[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
done
