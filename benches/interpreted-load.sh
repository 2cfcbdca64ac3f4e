#!/usr/bin/env bash
# Requests/s and p50 of the interpreted wasi:http handlers (guests/py-hello, componentize-py;
# guests/js-hello, componentize-js) at one connection (wrk -c1), each served three ways in
# one run: `membrane serve` with a fresh instance per request (made on the request path, and
# with `--spare-instances 2` made ahead), `membrane serve
# --max-instance-reuse 1000`, and `wasmtime serve` 48.0.8 with the pooling allocator. The
# servers take turns run by run, ROUNDS rounds; figures are the median round.
#
#   benches/interpreted-load.sh [SECONDS_PER_RUN] [ROUNDS]     # default 10 s, 3 rounds
#
# Builds the guests (scripts/build-interpreted-guests.sh) and membrane (release), installs
# wrk (Debian) and wasmtime-cli 48.0.8 (cargo install into target/wasmtime-cli) when
# missing. Only loopback addresses on free ports. Prints `label<TAB>req/s` lines, then (as
# # comments) the Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${1:-10}
rounds=${2:-3}

need_deb wrk wrk
need_wasmtime
[ -n "${NO_BUILD:-}" ] || build_release  # NO_BUILD=1: measure target/release as it is
declare -A wasm
while IFS=$'\t' read -r name path; do wasm[$name]=$path; done < <(scripts/build-interpreted-guests.sh)

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
declare -A port
servers="fresh spares reuse wasmtime"
for guest in py-hello js-hello; do
  for server in $servers; do
    p=$(free_port)
    port[$guest.$server]=$p
    case $server in
      # Access logging is off for the run, as wasmtime serve keeps none.
      fresh) MEMBRANE_LOG=warn target/release/membrane serve --admin-listen off --spare-instances 0 --listen "127.0.0.1:$p" "${wasm[$guest]}" ;;
      spares) MEMBRANE_LOG=warn target/release/membrane serve --admin-listen off --spare-instances 2 --listen "127.0.0.1:$p" "${wasm[$guest]}" ;;
      reuse) MEMBRANE_LOG=warn target/release/membrane serve --admin-listen off --max-instance-reuse 1000 --listen "127.0.0.1:$p" "${wasm[$guest]}" ;;
      wasmtime) wasmtime serve -S cli -O pooling-allocator=y --addr "127.0.0.1:$p" "${wasm[$guest]}" ;;
    esac >/dev/null 2>&1 &
    pids+=($!)
  done
done
# The first start compiles each component (tens of seconds); later ones hit the cache.
for key in "${!port[@]}"; do
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:${port[$key]}/warm" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:${port[$key]}/warm" >/dev/null || { echo "$key did not come up" >&2; exit 1; }
done

declare -A figures
for round in $(seq "$rounds"); do
  for guest in py-hello js-hello; do
    order=$servers
    (( round % 2 == 0 )) && order=$(tr ' ' '\n' <<<"$servers" | tac | tr '\n' ' ')
    for server in $order; do
      wrk_figures "$guest.$server" "${port[$guest.$server]}" 1
    done
  done
done

echo "# title: Interpreted handlers at one connection, requests/s (median of $rounds rounds)"
echo "# unit: requests/s"
for guest in py-hello js-hello; do
  echo -e "$guest, membrane fresh per request\t$(med $guest.fresh.rps)"
  echo -e "$guest, membrane fresh, 2 spare instances\t$(med $guest.spares.rps)"
  echo -e "$guest, membrane --max-instance-reuse 1000\t$(med $guest.reuse.rps)"
  echo -e "$guest, wasmtime serve (pooling)\t$(med $guest.wasmtime.rps)"
done
echo "# | handler | fresh per request: req/s (p50 ms) | fresh, 2 spares | reuse 1000 | wasmtime serve | fresh / reuse | fresh / wasmtime serve |"
echo "# | --- | --- | --- | --- | --- | --- | --- |"
for guest in py-hello js-hello; do
  f=$(med $guest.fresh.rps); r=$(med $guest.reuse.rps); w=$(med $guest.wasmtime.rps)
  ratios=$(awk -v f="$f" -v r="$r" -v w="$w" 'BEGIN { printf "%.3f | %.2fx", f / r, f / w }')
  echo "# | $guest | $f ($(med $guest.fresh.p50)) | $(med $guest.spares.rps) ($(med $guest.spares.p50)) | $r ($(med $guest.reuse.p50)) | $w ($(med $guest.wasmtime.p50)) | $ratios |"
  echo "# rounds of $guest: fresh ${figures[$guest.fresh.rps]}/ spares ${figures[$guest.spares.rps]}/ reuse ${figures[$guest.reuse.rps]}/ wasmtime ${figures[$guest.wasmtime.rps]}"
done
