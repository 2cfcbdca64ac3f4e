#!/usr/bin/env bash
# A soak of `membrane serve` under the hostile-neighbour attacks of SECURITY.md, mixed with
# healthy traffic: clients that hang up inside a singleton provider's call or mid-body,
# consumers that never drop the provider resources they hold, a wasi:http fields flood
# against a 16 MiB component, a socket loop with no grant, and a tenant's quota dodged with
# a trailing dot. Reports errors on the healthy routes (goal: 0), their p50/p99, the
# server's RSS (goal: flat), what each attack got, and what the provider was left with
# (restarts: 0, live resources: 0). Bounded in time; loopback only.
#
#   benches/soak-hostile.sh                          # 40 s
#   SOAK_SECONDS=300 SOAK_PROFILE=release benches/soak-hostile.sh
#
# SOAK_RPS is the healthy request rate (default 200 a second); SOAK_PROFILE (default debug)
# picks the build. Installs hey and curl (Debian) when missing. Prints Markdown for
# RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
seconds=${SOAK_SECONDS:-40}
rps=${SOAK_RPS:-200}
profile=${SOAK_PROFILE:-debug}

need_deb hey hey
need_deb curl curl
if [ "$profile" = release ]; then
  build_release
else
  cargo build --quiet --workspace --tests
fi
guests=guests/target/wasm32-wasip2/release
work=$(mktemp -d)
cat >"$work/membrane.toml" <<EOF
[app]
name = "soak-hostile"
audit = "audit.jsonl"

[component.good]
source = "$PWD/$guests/http_hello.wasm"

[component.web]
source = "$PWD/$guests/link_web.wasm"

[component.provider]
source = "$PWD/$guests/provider.wasm"
instances = "singleton"

[component.evil]
source = "$PWD/$guests/hostile_http.wasm"
limits = { memory = "16MiB", timeout = "2s" }

[tenant.alice]
hosts = ["alice.localhost"]
requests_per_second = 1
burst = 1

[[route]]
path = "/evil"
component = "evil"

[[route]]
path = "/hello"
component = "good"

[[route]]
path = "/"
component = "web"
EOF
for interface in counter kv pace; do
  printf '\n[[link]]\nfrom = "web"\nimport = "membrane:test/%s@0.1.0"\nto = "provider"\n' "$interface" >>"$work/membrane.toml"
done

MEMBRANE_LOG=error target/$profile/membrane serve --listen 127.0.0.1:0 --admin-listen off "$work/membrane.toml" \
  >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do grep -qs '^serving http://' "$work/serve.out" && break; sleep 0.1; done
base=$(sed -n 's|^serving \(http://[^ ]*\)$|\1|p' "$work/serve.out")
[ -n "$base" ] || { echo "soak: the server did not start" >&2; cat "$work/serve.err" >&2; exit 1; }
curl -sf "$base/hello/warm" >/dev/null && curl -sf "$base/count" >/dev/null

# Healthy traffic: a plain handler, and a handler whose every request crosses a link into
# the singleton provider that the attacks below go after.
workers=4
per_worker=$(( rps / 2 / workers > 0 ? rps / 2 / workers : 1 ))
load=()
hey -z "${seconds}s" -c $workers -q $per_worker -o csv "$base/hello/soak" >"$work/hello.csv" &
load+=($!)
hey -z "${seconds}s" -c $workers -q $per_worker -o csv "$base/count" >"$work/count.csv" &
load+=($!)

# Each attack in its own loop, about twice a second, each outcome kept: the status (000
# when curl's own time limit, -m, hung up before any), or with ATTACK_BODY=1 the body.
attack() { # name curl-args...
  local name=$1
  shift
  local end=$(( SECONDS + seconds )) show=('-o' '/dev/null' '-w' '%{http_code}\n')
  [ "${ATTACK_BODY:-}" = 1 ] && show=()
  while (( SECONDS < end )); do
    curl -s "${show[@]}" "$@" >>"$work/$name.codes" || true
    sleep 0.5
  done
}
attack disconnect-in-call -m 0.05 "$base/wait?ms=200" &
load+=($!)
attack disconnect-mid-body -m 0.2 "$base/stream" &
load+=($!)
attack leaked-handles "$base/leak?n=20" &
load+=($!)
attack fields-flood "$base/evil/big-fields?count=1000" &
load+=($!)
ATTACK_BODY=1 attack socket-loop "$base/evil/sockets" &
load+=($!)
attack trailing-dot -H "Host: alice.localhost." "$base/hello/alice" &
load+=($!)

rss_start=$(rss_kib)
rss_series=()
for i in $(seq "$seconds"); do
  sleep 1
  if (( i % (seconds / 8 > 0 ? seconds / 8 : 1) == 0 )); then rss_series+=("$(( $(rss_kib) / 1024 ))"); fi
done
wait "${load[@]}"
sleep 1
rss_end=$(rss_kib)
read -r n p50 p99 bad < <(summary "$work/hello.csv" "$work/count.csv")
live=$(curl -s "$base/live")
restarts=$(grep -c '"event":"restart"\|"event":"failed"' "$work/audit.jsonl" || true)
outcomes() { sort "$work/$1.codes" | uniq -c | sed 's/^ *\([0-9]*\) /\1 x /' | paste -sd '|' | sed 's/|/; /g'; }

echo "| healthy requests | errors on healthy routes | healthy p50 (ms) | healthy p99 (ms) |"
echo "| --- | --- | --- | --- |"
echo "| $n | $bad | $p50 | $p99 |"
echo
echo "| attack, about 2 a second for ${seconds} s | what it got |"
echo "| --- | --- |"
for name in disconnect-in-call disconnect-mid-body leaked-handles fields-flood socket-loop trailing-dot; do
  echo "| $name | $(outcomes "$name") |"
done
echo
echo "Server RSS (MiB): start $(( rss_start / 1024 )), then ${rss_series[*]}, end $(( rss_end / 1024 ))."
echo "Provider afterwards: $restarts restarts or failures in the audit log, $live live resources."
