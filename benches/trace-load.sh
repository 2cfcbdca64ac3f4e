#!/usr/bin/env bash
# What tracing costs `membrane serve`: requests/s, p50 and p99 with tracing off, on at
# 100 % sampling and on at 1 %, both exporting over OTLP/HTTP to a local receiver; wrk at
# 1 and 8 connections, the three servers alternating run by run (the order rotating each
# round), ROUNDS rounds; figures are the median round. Two apps: the hello handler (a
# request is 2 spans: the server span and the instantiation) and examples/docs-web with a
# document the renderer takes (4 spans: the request, the handler's instance, the call
# across the link and the renderer's instance).
#
#   benches/trace-load.sh [SECONDS_PER_RUN] [ROUNDS]     # default 8 s, 3 rounds
#
# Prints Markdown tables (as # comments) for BENCHMARKS.md, ratios against "off", and the
# spans each server exported and dropped. Beside throughput, the CPU time each server
# process spent per request (user + system, from /proc/PID/stat around each run): wrk, the
# servers and the receiver share the cores, so requests/s moves with whatever else the
# machine does, while a server's own CPU per request moves only with what it does.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${1:-8}
rounds=${2:-3}

need_deb wrk wrk
build_release

receiver_port=$(free_port)
start_receiver "$receiver_port"
servers_pids=()
trap 'kill $receiver "${servers_pids[@]}" 2>/dev/null || true' EXIT

declare -A ports metrics pids
start() { # name app path [env...]
  local name=$1 app=$2 path=$3; shift 3
  local port metrics_port; port=$(free_port); metrics_port=$(free_port)
  env MEMBRANE_LOG=warn "$@" target/release/membrane serve --listen 127.0.0.1:$port --admin-listen off \
    --metrics-listen 127.0.0.1:$metrics_port "$app" >/dev/null 2>&1 &
  servers_pids+=($!)
  pids[$name]=$!
  ports[$name]=$port
  metrics[$name]=$metrics_port
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port$path" >/dev/null && return; sleep 0.1; done
  echo "server $name did not answer on $path" >&2
  exit 1
}

# User + system CPU ticks a process has spent so far (fields 14 and 15 of /proc/PID/stat,
# counted after the command name, which may hold spaces).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

measure() { # title app path
  local title=$1 app=$2 path=$3
  servers_pids=()
  start off "$app" "$path"
  start on-100 "$app" "$path" OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$receiver_port
  start on-1 "$app" "$path" OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$receiver_port \
    OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
  declare -A figures=()
  local servers=(off on-100 on-1)
  for round in $(seq "$rounds"); do
    for connections in 1 8; do
      for i in 0 1 2; do
        local server=${servers[$(( (i + round) % 3 ))]}
        local ticks; ticks=$(cpu_ticks "${pids[$server]}")
        wrk_figures "$server.$connections" "${ports[$server]}" "$connections" "$path"
        ticks=$(( $(cpu_ticks "${pids[$server]}") - ticks ))
        local rps=${figures[$server.$connections.rps]% } # this run's, the last of the list
        rps=${rps##* }
        figures[$server.$connections.cpu]+="$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v r="$rps" -v s="$seconds" \
          'BEGIN { printf "%.1f", t / hz * 1e6 / (r * s) }') "
      done
    done
  done
  echo "# $title"
  echo "# | connections | tracing | req/s | ratio to off | p50 / p99 (ms) | CPU µs / request | ratio to off |"
  echo "# | --- | --- | --- | --- | --- | --- | --- |"
  for connections in 1 8; do
    local off; off=$(med off.$connections.rps)
    local off_cpu; off_cpu=$(med off.$connections.cpu)
    for server in off on-100 on-1; do
      local rps; rps=$(med $server.$connections.rps)
      local cpu; cpu=$(med $server.$connections.cpu)
      local ratio; ratio=$(awk -v a="$rps" -v b="$off" 'BEGIN { printf "%.2f", a / b }')
      local cpu_ratio; cpu_ratio=$(awk -v a="$cpu" -v b="$off_cpu" 'BEGIN { printf "%.2f", a / b }')
      echo "# | $connections | $server | $rps | ${ratio}x | $(med $server.$connections.p50) / $(med $server.$connections.p99) | $cpu | ${cpu_ratio}x |"
    done
  done
  sleep 1 # the last batch leaves within its 500 ms linger
  for server in on-100 on-1; do
    echo "# spans of $server: $(curl -s "http://127.0.0.1:${metrics[$server]}/metrics" | awk '/^membrane_trace_spans_total/ { printf "%s ", $0 }')"
  done
  kill "${servers_pids[@]}" 2>/dev/null || true
  wait "${servers_pids[@]}" 2>/dev/null || true
}

measure "hello handler (guests/http-hello), GET /hello" guests/target/wasm32-wasip2/release/http_hello.wasm /hello
measure "docs-web (examples/docs-web), GET /?doc=# Hello: a call across a link" examples/docs-web/membrane.toml "/?doc=%23+Hello"
