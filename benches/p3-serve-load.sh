#!/usr/bin/env bash
# Requests/s, p50 and p99 of a WASI 0.3 handler (guests/p3-http) under `membrane serve`,
# next to the WASI 0.2 hello handler (guests/http-hello) under `membrane serve` and the same
# WASI 0.3 handler under `wasmtime serve` 48.0.8 with WASI 0.3 on: each server fresh per
# request, then with instance reuse (membrane: --max-instance-reuse 128, one request at a
# time per instance, and with --instance-concurrency 16 too; wasmtime: its WASI 0.3
# defaults, 128 requests per instance, 16 at once). wrk at 1, 8 and 32 connections, the servers taking turns, ROUNDS rounds; figures
# are the median round.
#
#   benches/p3-serve-load.sh [SECONDS_PER_RUN] [ROUNDS]     # default 10 s, 3 rounds
#
# Installs wrk (Debian) and wasmtime-cli 48.0.8 (cargo install, cached) when missing. Only
# loopback addresses on free ports. Prints `label<TAB>req/s` lines for benches/run.sh's
# chart, then (as # comments) a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${1:-10}
rounds=${2:-3}

need_deb wrk wrk
need_wasmtime
build_release
guests=guests/target/wasm32-wasip2/release
p3=$guests/p3_http.wasm
p2=$guests/http_hello.wasm

declare -A port pid
start() { # name command...
  local name=$1
  shift
  port[$name]=$(free_port)
  "$@" "${port[$name]}" >/dev/null 2>&1 &
  pid[$name]=$!
}
membrane_on() { MEMBRANE_LOG=warn target/release/membrane serve --admin-listen off "${@:1:$#-1}" --listen "127.0.0.1:${*: -1}"; }
wasmtime_on() { wasmtime serve -W component-model-async -S p3,cli -O pooling-allocator=y "${@:1:$#-1}" --addr "127.0.0.1:${*: -1}"; }
start p2_fresh membrane_on "$p2"
start p3_fresh membrane_on "$p3"
start p3_reuse membrane_on --max-instance-reuse 128 "$p3"
start p3_shared membrane_on --max-instance-reuse 128 --instance-concurrency 16 "$p3"
start wasmtime_fresh wasmtime_on --max-instance-reuse-count 1 "$p3"
start wasmtime_reuse wasmtime_on "$p3"
trap 'kill "${pid[@]}" 2>/dev/null || true' EXIT
for name in "${!port[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${port[$name]}/warm" >/dev/null && break; sleep 0.1; done
done

servers=(p2_fresh p3_fresh wasmtime_fresh p3_reuse p3_shared wasmtime_reuse)
declare -A figures
for round in $(seq "$rounds"); do
  for connections in 1 8 32; do
    # Who goes first turns with the round.
    turn=$((round % ${#servers[@]}))
    order=("${servers[@]:turn}" "${servers[@]:0:turn}")
    for server in "${order[@]}"; do
      wrk_figures "$server.$connections" "${port[$server]}" "$connections"
    done
  done
done

label() {
  case $1 in
    p2_fresh) echo "membrane, WASI 0.2 hello, fresh" ;;
    p3_fresh) echo "membrane, WASI 0.3, fresh" ;;
    wasmtime_fresh) echo "wasmtime serve, WASI 0.3, fresh" ;;
    p3_reuse) echo "membrane, WASI 0.3, reuse 128" ;;
    p3_shared) echo "membrane, WASI 0.3, reuse 128 x 16" ;;
    wasmtime_reuse) echo "wasmtime serve, WASI 0.3, reuse 128 x 16" ;;
  esac
}
echo "# title: Requests/s of a WASI 0.3 handler (median of $rounds rounds)"
echo "# unit: requests/s"
for connections in 1 8 32; do
  for server in "${servers[@]}"; do
    echo -e "$(label "$server"), $connections connections\t$(med "$server.$connections.rps")"
  done
done
echo "# | server | connections | req/s | ratio to membrane WASI 0.3 fresh | p50 / p99 (ms) |"
echo "# | --- | --- | --- | --- | --- |"
for connections in 1 8 32; do
  base=$(med "p3_fresh.$connections.rps")
  for server in "${servers[@]}"; do
    rps=$(med "$server.$connections.rps")
    ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    echo "# | $(label "$server") | $connections | $rps | ${ratio}x | $(med "$server.$connections.p50") / $(med "$server.$connections.p99") |"
  done
done
