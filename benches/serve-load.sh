#!/usr/bin/env bash
# Requests/s, p50 and p99 of `membrane serve` next to `wasmtime serve` 48.0.8: the same hello
# wasi:http component, a fresh instance per request and the pooling allocator on both,
# driven by wrk at 1, 8 and 32 connections, the two servers alternating run by run (which
# one goes first alternates too), ROUNDS rounds; figures are the median round.
#
#   benches/serve-load.sh [SECONDS_PER_RUN] [ROUNDS]     # default 10 s, 3 rounds
#
# Installs wrk (Debian) and wasmtime-cli 48.0.8 (cargo install, cached) when missing.
# Only loopback addresses on free ports are used. Prints `label<TAB>req/s` lines for
# benches/run.sh's chart, then (as # comments) a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${1:-10}
rounds=${2:-3}

need_deb wrk wrk
need_wasmtime
build_release
component=guests/target/wasm32-wasip2/release/http_hello.wasm

membrane_port=$(free_port)
wasmtime_port=$(free_port)
# Access logging is off for the run, as wasmtime serve keeps none.
MEMBRANE_LOG=warn target/release/membrane serve --listen 127.0.0.1:$membrane_port "$component" >/dev/null 2>&1 &
membrane_pid=$!
wasmtime serve -S cli -O pooling-allocator=y --addr 127.0.0.1:$wasmtime_port "$component" >/dev/null 2>&1 &
wasmtime_pid=$!
trap 'kill $membrane_pid $wasmtime_pid 2>/dev/null || true' EXIT
for port in $membrane_port $wasmtime_port; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/warm" >/dev/null && break; sleep 0.1; done
done



declare -A figures
for round in $(seq "$rounds"); do
  for connections in 1 8 32; do
    order="membrane wasmtime"
    (( round % 2 == 0 )) && order="wasmtime membrane"
    for server in $order; do
      port=$membrane_port
      [ "$server" = wasmtime ] && port=$wasmtime_port
      wrk_figures "$server.$connections" "$port" "$connections"
    done
  done
done

echo "# title: Requests/s, one instance per request (median of $rounds rounds)"
echo "# unit: requests/s"
for connections in 1 8 32; do
  echo -e "membrane serve, $connections connections\t$(med membrane.$connections.rps)"
  echo -e "wasmtime serve, $connections connections\t$(med wasmtime.$connections.rps)"
done
echo "# | connections | membrane req/s | wasmtime serve req/s | ratio | membrane p50 / p99 (ms) | wasmtime p50 / p99 (ms) |"
echo "# | --- | --- | --- | --- | --- | --- |"
for connections in 1 8 32; do
  m_rps=$(med membrane.$connections.rps); w_rps=$(med wasmtime.$connections.rps)
  ratio=$(awk -v m="$m_rps" -v w="$w_rps" 'BEGIN { printf "%.2f", m / w }')
  echo "# | $connections | $m_rps | $w_rps | ${ratio}x | $(med membrane.$connections.p50) / $(med membrane.$connections.p99) | $(med wasmtime.$connections.p50) / $(med wasmtime.$connections.p99) |"
  echo "# rounds at $connections connections: membrane ${figures[membrane.$connections.rps]}/ wasmtime ${figures[wasmtime.$connections.rps]}"
done
