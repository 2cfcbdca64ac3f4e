#!/usr/bin/env bash
# What tracing adds to one docs-web request, counted rather than timed: instructions and
# simulated cache misses (valgrind's callgrind with --cache-sim=yes) of a `membrane serve`
# of examples/docs-web with tracing off and on at 100 % sampling, over REQUESTS requests
# one after another, after 300 to warm up. Counts do not move with whatever else the
# machine does, where requests/s on this 2-core machine move by 20-50 % within an hour.
# Each binary is measured with the same requests; give others to compare builds:
#
#   benches/trace-callgrind.sh [REQUESTS] [BINARY...]    # default 1000, target/release/membrane
#
# Prints a Markdown table (as # comments): per request, instructions (Ir), first-level
# instruction-cache misses (I1mr), data read and write misses (D1mr, D1mw), each binary off
# and on. The app runs with at most 4 instances: valgrind cannot reserve the address space
# of the default instance pool.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
requests=${1:-1000}
shift || true
binaries=("$@")
[ ${#binaries[@]} -eq 0 ] && binaries=(target/release/membrane)

need_deb valgrind valgrind
build_release
work=$(mktemp -d)
receiver_port=$(free_port)
start_receiver "$receiver_port"
server=
trap 'kill $receiver $server 2>/dev/null || true; rm -rf "$work"' EXIT

# The docs-web app with its sources made absolute and at most 4 instances.
sed -e "s#\.\./\.\./guests#$PWD/guests#" -e 's#^name = "docs-web"#&\nmax_instances = 4#' \
  examples/docs-web/membrane.toml >"$work/membrane.toml"
path="/?doc=%23+Hello"

measure() { # binary off|on -> "Ir I1mr D1mr D1mw" per request
  local binary=$1 mode=$2 port out=$work/callgrind.out
  port=$(free_port)
  local tracing=()
  [ "$mode" = on ] && tracing=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$receiver_port)
  rm -f "$out"*
  env -u RUST_BACKTRACE MEMBRANE_LOG=warn "${tracing[@]}" valgrind --tool=callgrind --cache-sim=yes \
    --callgrind-out-file="$out" "$binary" serve --listen 127.0.0.1:$port --admin-listen off \
    "$work/membrane.toml" >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port$path" >/dev/null && break; sleep 0.5; done
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port$path" >/dev/null; done
  callgrind_control -z $server >/dev/null 2>&1
  python3 - "$port" "$requests" "$path" <<'PY'
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    connection.request("GET", sys.argv[3])
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY
  callgrind_control -d $server >/dev/null 2>&1
  kill $server
  wait $server 2>/dev/null || true
  server=
  callgrind_annotate --auto=no --threshold=100 --show=Ir,I1mr,D1mr,D1mw "$out".1 | awk -v n="$requests" '
    /PROGRAM TOTALS/ { gsub(",", ""); printf "%.0f %.0f %.0f %.0f\n", $1 / n, $3 / n, $5 / n, $7 / n }'
}

echo "# docs-web, GET /?doc=# Hello, per request ($requests requests)"
echo "# | binary | tracing | Ir | I1mr | D1mr | D1mw | added: Ir, I1mr, D1mr, D1mw |"
echo "# | --- | --- | --- | --- | --- | --- | --- |"
for binary in "${binaries[@]}"; do
  read -r off_ir off_i1 off_d1r off_d1w < <(measure "$binary" off)
  read -r on_ir on_i1 on_d1r on_d1w < <(measure "$binary" on)
  echo "# | $binary | off | $off_ir | $off_i1 | $off_d1r | $off_d1w | |"
  echo "# | $binary | on, 100 % | $on_ir | $on_i1 | $on_d1r | $on_d1w |" \
    "+$((on_ir - off_ir)), +$((on_i1 - off_i1)), +$((on_d1r - off_d1r)), +$((on_d1w - off_d1w)) |"
done
