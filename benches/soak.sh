#!/usr/bin/env bash
# A soak of `membrane serve` on the docs-web demo: sustained load on its healthy routes
# while 1% of requests hit a trapping route and 1% a spinning one, next to a run without
# faults. Reports errors on the healthy routes (goal: 0), their p50/p99 in both runs, and
# the server's RSS over the faulty run (goal: flat). Bounded in time.
#
#   benches/soak.sh                       # 60 s: 20 s without faults, 40 s with
#   SOAK_SECONDS=600 SOAK_RPS=800 benches/soak.sh
#
# SOAK_RPS is the healthy request rate (default 400 a second); SOAK_PROFILE=debug uses the
# debug build. Installs hey (Debian) when missing. Loopback only, on a free port. Prints
# Markdown for RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${SOAK_SECONDS:-60}
rps=${SOAK_RPS:-400}
profile=${SOAK_PROFILE:-release}
baseline=$(( seconds / 3 > 5 ? seconds / 3 : 5 ))
faulty=$(( seconds - baseline > 5 ? seconds - baseline : 5 ))

need_deb hey hey
if [ "$profile" = release ]; then
  build_release
else
  cargo build --quiet -p membrane -p membrane-test-guests
fi
work=$(mktemp -d)
MEMBRANE_LOG=error target/$profile/membrane serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 examples/docs-web/membrane.toml \
  >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 200); do grep -qs '^serving http://' "$work/serve.out" && break; sleep 0.1; done
base=$(sed -n 's|^serving \(http://[^ ]*\)$|\1|p' "$work/serve.out")
[ -n "$base" ] || { echo "soak: the server did not start" >&2; cat "$work/serve.err" >&2; exit 1; }

page="$base/?doc=%23+Soak%0Asome+*fancy*+text"
hello="$base/hello/soak"
workers=8
per_worker=$(( rps / 2 / workers > 0 ? rps / 2 / workers : 1 ))
fault_rate=$(( rps / 100 > 0 ? rps / 100 : 1 ))

# Healthy load on both routes, as CSV rows of every request.
load=()
healthy() { # seconds prefix
  hey -z "${1}s" -c $workers -q $per_worker -o csv "$page" >"$work/$2-page.csv" &
  load+=($!)
  hey -z "${1}s" -c $workers -q $per_worker -o csv "$hello" >"$work/$2-hello.csv" &
  load+=($!)
}
# Waits for the load generators (not the server, also a background job).
wait_load() { wait "${load[@]}"; load=(); }
# Warm the compile cache and the routes.
curl -sf "$page" >/dev/null && curl -sf "$hello" >/dev/null

healthy "$baseline" base
wait_load
read -r base_n base_p50 base_p99 base_bad < <(summary "$work/base-page.csv" "$work/base-hello.csv")

rss_start=$(rss_kib)
healthy "$faulty" fault
hey -z "${faulty}s" -c 1 -q $fault_rate -o csv "$base/hello/trap" >"$work/trap.csv" &
load+=($!)
hey -z "${faulty}s" -c 1 -q $fault_rate -o csv "$base/hello/spin" >"$work/spin.csv" &
load+=($!)
rss_series=()
for i in $(seq "$faulty"); do
  sleep 1
  if (( i % (faulty / 8 > 0 ? faulty / 8 : 1) == 0 )); then rss_series+=("$(( $(rss_kib) / 1024 ))"); fi
done
wait_load
rss_end=$(rss_kib)
read -r fault_n fault_p50 fault_p99 fault_bad < <(summary "$work/fault-page.csv" "$work/fault-hello.csv")
traps=$(count "$work/trap.csv" 500)
spins=$(count "$work/spin.csv" 504)
trap_total=$(( $(wc -l <"$work/trap.csv") - 1 ))
spin_total=$(( $(wc -l <"$work/spin.csv") - 1 ))

echo "| run | healthy requests | errors on healthy routes | healthy p50 (ms) | healthy p99 (ms) | faults sent |"
echo "| --- | --- | --- | --- | --- | --- |"
echo "| no faults, ${baseline} s | $base_n | $base_bad | $base_p50 | $base_p99 | none |"
echo "| 1% trap + 1% spin, ${faulty} s | $fault_n | $fault_bad | $fault_p50 | $fault_p99 | $traps/$trap_total traps answered 500, $spins/$spin_total spins answered 504 |"
echo
echo "Server RSS over the faulty run (MiB): start $(( rss_start / 1024 )), then ${rss_series[*]}, end $(( rss_end / 1024 ))."
