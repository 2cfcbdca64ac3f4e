#!/usr/bin/env bash
# What tracing costs `membrane serve`: requests/s, p50 and p99 of the same hello handler
# with tracing off, on at 100 % sampling and on at 1 %, both exporting over OTLP/HTTP to a
# local receiver; wrk at 1 and 8 connections, the three servers alternating run by run
# (the order rotating each round), ROUNDS rounds; figures are the median round.
#
#   benches/trace-load.sh [SECONDS_PER_RUN] [ROUNDS]     # default 8 s, 3 rounds
#
# Prints a Markdown table (as # comments) for BENCHMARKS.md, ratios against "off".
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${1:-8}
rounds=${2:-3}

need_deb wrk wrk
build_release
component=guests/target/wasm32-wasip2/release/http_hello.wasm
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The receiver takes each OTLP/HTTP export (protobuf) and answers 200, as a collector does.
receiver_port=$(free_port)
python3 - "$receiver_port" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
PY
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

declare -A ports
start() { # name [env...]
  local name=$1; shift
  local port; port=$(free_port)
  env MEMBRANE_LOG=warn "$@" target/release/membrane serve --listen 127.0.0.1:$port --admin-listen off "$component" >/dev/null 2>&1 &
  pids+=($!)
  ports[$name]=$port
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/warm" >/dev/null && break; sleep 0.1; done
}
start off
start on-100 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$receiver_port
start on-1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$receiver_port OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01

declare -A figures
servers=(off on-100 on-1)
for round in $(seq "$rounds"); do
  for connections in 1 8; do
    for i in 0 1 2; do
      server=${servers[$(( (i + round) % 3 ))]}
      read -r rps p50 p99 < <(wrk_run "${ports[$server]}" "$connections")
      figures[$server.$connections.rps]+="$rps "
      figures[$server.$connections.p50]+="$p50 "
      figures[$server.$connections.p99]+="$p99 "
    done
  done
done
med() { tr ' ' '\n' <<<"${figures[$1]}" | grep . | median; }
echo "# | connections | tracing | req/s | ratio to off | p50 / p99 (ms) |"
echo "# | --- | --- | --- | --- | --- |"
for connections in 1 8; do
  off=$(med off.$connections.rps)
  for server in off on-100 on-1; do
    rps=$(med $server.$connections.rps)
    ratio=$(awk -v a="$rps" -v b="$off" 'BEGIN { printf "%.2f", a / b }')
    echo "# | $connections | $server | $rps | ${ratio}x | $(med $server.$connections.p50) / $(med $server.$connections.p99) |"
  done
done
