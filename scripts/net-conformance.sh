#!/usr/bin/env bash
# Runs wasmtime's own WASI 0.2 socket test programs (crates/test-programs, built from a
# wasmtime checkout for wasm32-wasip2) under `membrane run`: once with loopback grants and
# once with none. Not part of the test command: it needs a wasmtime source tree.
#
#   scripts/net-conformance.sh WASMTIME_DIR [MEMBRANE_BINARY]
#
# WASMTIME_DIR is a checkout of wasmtime at the tag matching membrane's wasmtime (v48.0.0);
# its test programs are built there, never copied into this repository.
set -euo pipefail
wasmtime_dir=${1:?usage: $0 WASMTIME_DIR [MEMBRANE_BINARY]}
membrane=${2:-target/release/membrane}
[ -x "$membrane" ] || { echo "no membrane binary at $membrane; build it with cargo build --release" >&2; exit 2; }

programs=(p2_tcp_bind p2_tcp_connect p2_tcp_listen p2_tcp_sample_application p2_tcp_sockopts
  p2_tcp_states p2_tcp_streams p2_udp_bind p2_udp_connect p2_udp_sample_application
  p2_udp_send_to_closed_receiver p2_udp_send_too_much p2_udp_sockopts p2_udp_states p2_udp_stream
  p2_cli_no_tcp p2_cli_no_udp p2_cli_no_ip_name_lookup)
# Programs meant to run with no grant at all; the rest need the loopback grants.
no_grant=" p2_cli_no_tcp p2_cli_no_udp p2_cli_no_ip_name_lookup "

bins=()
for p in "${programs[@]}"; do bins+=(--bin "$p"); done
(cd "$wasmtime_dir" && cargo build --release --target wasm32-wasip2 -p test-programs "${bins[@]}" >&2)
out="$wasmtime_dir/target/wasm32-wasip2/release"

loopback=()
for flag in --allow-tcp --allow-tcp-bind --allow-udp --allow-udp-bind; do
  loopback+=("$flag" 127.0.0.0/8 "$flag" ::1/128)
done
# Binding the unspecified address (all interfaces), on any port, is part of what the
# programs check; nothing outside loopback is reachable as a peer.
# They also bind a documentation address (192.0.2.0, 2001:db8::) to see the OS refuse an
# address this host does not have (address-not-bindable): without a grant for it membrane
# refuses first, with access-denied.
for flag in --allow-tcp-bind --allow-udp-bind; do
  loopback+=("$flag" 0.0.0.0 "$flag" :: "$flag" 192.0.2.0/24 "$flag" 2001:db8::/32)
done
loopback+=(--allow-dns)

# p2_udp_send_too_much passes when it traps for sending more than check-send permitted.
run() {
  local text
  if text=$(timeout 60 "$membrane" run "$@" 2>&1); then echo pass
  elif [[ $text == *"argument exceeds permitted size"* ]]; then echo "pass (trapped)"
  else echo fail; fi
}

printf '%-32s %-16s %-10s %s\n' program "loopback grants" "no grants" expected
for p in "${programs[@]}"; do
  wasm="$out/$p.wasm"
  with=$(run "${loopback[@]}" "$wasm")
  without=$(run "$wasm")
  # The no-* programs check that a socket is refused, so they fail when it is granted.
  if [[ $no_grant == *" $p "* ]]; then expected="fail / pass"; else expected="pass / fail"; fi
  printf '%-32s %-16s %-10s %s\n' "$p" "$with" "$without" "$expected"
done
