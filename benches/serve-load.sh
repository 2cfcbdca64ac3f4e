#!/usr/bin/env bash
# Requests/s, p50 and p99 of `membrane serve` next to `wasmtime serve` 48.0.8: the same hello
# wasi:http component, a fresh instance per request and the pooling allocator on both,
# driven by wrk at 1, 8 and 32 connections, the two servers alternating run by run.
#
#   benches/serve-load.sh [SECONDS_PER_RUN]      # default 10
#
# Installs wrk (Debian) and wasmtime-cli 48.0.8 (cargo install, cached) when missing.
# Only loopback addresses are used. Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
seconds=${1:-10}

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if ! command -v wasmtime >/dev/null || ! wasmtime --version | grep -q '^wasmtime 48.0.8'; then
  cargo install wasmtime-cli@48.0.8 --locked
fi
cargo build --release --quiet -p membrane -p membrane-test-guests
component=guests/target/wasm32-wasip2/release/http_hello.wasm

membrane_port=18081
wasmtime_port=18082
# Access logging is off for the run, as wasmtime serve keeps none.
MEMBRANE_LOG=warn target/release/membrane serve --listen 127.0.0.1:$membrane_port "$component" >/dev/null 2>&1 &
membrane_pid=$!
wasmtime serve -S cli -O pooling-allocator=y --addr 127.0.0.1:$wasmtime_port "$component" >/dev/null 2>&1 &
wasmtime_pid=$!
trap 'kill $membrane_pid $wasmtime_pid 2>/dev/null || true' EXIT
for port in $membrane_port $wasmtime_port; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/warm" >/dev/null && break; sleep 0.1; done
done

# wrk's latency figures come in us, ms or s; this prints them in ms.
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'; }

run() { # port connections -> "rps p50 p99"
  local threads=$(( $2 < 2 ? 1 : 2 ))
  local out
  out=$(wrk -t"$threads" -c"$2" -d"${seconds}s" --latency "http://127.0.0.1:$1/hello")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out" | to_ms)
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out" | to_ms)
  echo "$rps $p50 $p99"
}

echo "| connections | membrane req/s | wasmtime serve req/s | ratio | membrane p50 / p99 (ms) | wasmtime p50 / p99 (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
for connections in 1 8 32; do
  read -r m_rps m_p50 m_p99 < <(run $membrane_port "$connections")
  read -r w_rps w_p50 w_p99 < <(run $wasmtime_port "$connections")
  ratio=$(awk -v m="$m_rps" -v w="$w_rps" 'BEGIN { printf "%.2f", m / w }')
  echo "| $connections | $m_rps | $w_rps | ${ratio}x | $m_p50 / $m_p99 | $w_p50 / $w_p99 |"
done
