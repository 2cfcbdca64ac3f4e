#!/usr/bin/env bash
# Runs wasmtime's own WASI 0.3 CLI, clocks, random, filesystem and socket test programs
# (crates/test-programs/src/bin/p3_*, all but the HTTP, TLS and `serve` ones; built from a
# wasmtime checkout as its artifacts/build.rs builds them: wasm32-wasip1 and the preview 1
# reactor adapter) three ways: under `wasmtime run -Wcomponent-model-async -Sp3` for
# reference, under `membrane run` with the grants wasmtime's harness gives them (a scratch
# directory preopened as ".", a read-only one as "readonly", ERRNO_MODE_UNIX, loopback
# sockets and DNS, stdin), and under `membrane run` with no grant at all, which must refuse
# without crashing. Exits non-zero if a program that passes under wasmtime (or that needs a
# read-only preopen, which the wasmtime CLI cannot give) fails under membrane with its grants.
# Not part of the test command: it needs a wasmtime source tree, a wasmtime CLI and python3.
# p3_sockets_ip_name_lookup resolves public names, so it fails wherever there is no DNS;
# p3_sockets_udp_connect fails where reconnecting a UDP socket to another peer keeps its
# first local address (as gVisor's network stack does for IPv6), whoever runs it.
#
#   scripts/p3-conformance.sh WASMTIME_DIR [MEMBRANE_BINARY]
#
# WASMTIME_DIR is a checkout of wasmtime at the tag matching membrane's wasmtime (v48.0.0);
# its test programs are built there, never copied into this repository. The wasmtime CLI is
# $WASMTIME, else target/wasmtime-cli/bin/wasmtime (cargo install wasmtime-cli --version
# 48.0.8 --root target/wasmtime-cli), else the one on PATH. The helper that adapts the
# programs into components, and each run's scratch directories and output, are under
# target/p3-conformance.
set -euo pipefail
source "$(dirname "$0")/test-programs.sh"
wasmtime_dir=$(realpath "${1:?usage: $0 WASMTIME_DIR [MEMBRANE_BINARY]}")
membrane=$(realpath "${2:-target/release/membrane}")
[ -x "$membrane" ] || { echo "no membrane binary at $membrane; build it with cargo build --release" >&2; exit 2; }
wasmtime=${WASMTIME:-target/wasmtime-cli/bin/wasmtime}
[ -x "$wasmtime" ] || wasmtime=$(command -v wasmtime) ||
  { echo "no wasmtime CLI; set WASMTIME or cargo install wasmtime-cli --version 48.0.8 --root target/wasmtime-cli" >&2; exit 2; }
wasmtime=$(realpath "$wasmtime")
work=$(realpath -m target/p3-conformance)
mkdir -p "$work/components"
rm -rf "$work/runs"

programs=()
for f in "$wasmtime_dir"/crates/test-programs/src/bin/p3_*.rs; do
  p=$(basename "$f" .rs)
  case $p in p3_http_* | p3_api_* | p3_tls_* | p3_cli_serve_*) continue ;; esac
  programs+=("$p")
done
build_test_programs "$wasmtime_dir" "${programs[@]}"

componentize=$(componentize_helper "$work")
# Named as wasmtime's artifacts name them: the guest's argv[0] is the file's name, and p3_cli
# checks that it is "p3_cli.component".
for p in "${programs[@]}"; do
  "$componentize" "$wasmtime_dir/target/wasm32-wasip1/release/$p.wasm" \
    "$work/components/$p.component"
done

# Drives p3_cli_stdout_flush as wasmtime's cli test does: "READY" must reach stdout while the
# guest still waits for stdin; then stdin gets "x" and closes.
cat > "$work/stdout_flush.py" <<'EOF'
import subprocess, sys, threading
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr)
got = []
t = threading.Thread(target=lambda: got.append(p.stdout.read(5)), daemon=True)
t.start(); t.join(60)
if got != [b"READY"]:
    p.kill(); p.wait()
    print(f"guest stdout was not flushed: {got!r}", file=sys.stderr); sys.exit(1)
try:
    p.stdin.write(b"x"); p.stdin.close()
except BrokenPipeError:
    pass
sys.exit(p.wait(60))
EOF

# wasmtime's in-process harness (crates/wasi/tests/all/store.rs, p3/mod.rs) gives every
# program the arguments [NAME, "."], a scratch directory preopened read-write as ".",
# ERRNO_MODE_UNIX=1, the whole network, and ip-name-lookup; the read-only programs also get
# a directory holding test.txt preopened read-only as "readonly", after ".".
readonly_programs=" p3_file_truncation_readonly p3_file_hardlink_across_perms p3_file_rename_across_perms "
ro_contents="read only test file"

# membrane's loopback grants, as scripts/net-conformance.sh gives the WASI 0.2 programs. The
# programs bind the unspecified address, and a documentation address (192.0.2.0, 2001:db8::)
# to see the OS refuse an address this host does not have.
net=()
for flag in --allow-tcp --allow-tcp-bind --allow-udp --allow-udp-bind; do
  net+=("$flag" 127.0.0.0/8 "$flag" ::1/128)
done
for flag in --allow-tcp-bind --allow-udp-bind; do
  net+=("$flag" 0.0.0.0 "$flag" :: "$flag" 192.0.2.0/24 "$flag" 2001:db8::/32)
done
# p3_sockets_udp_connect connects (sending nothing) to a public address, to compare the local
# address the OS picks for it with the one for loopback.
net+=(--allow-udp 123.234.12.34/32 --allow-udp 7b:ea::22/128 --allow-dns)

# run KIND PROGRAM: runs PROGRAM as KIND (wasmtime, granted or bare, i.e. membrane with no
# grant) and prints "pass", or "fail" and why: the exit status and the first error line.
run() {
  local kind=$1 p=$2 dir="$work/runs/$2.$1" wasm="$work/components/$2.component"
  mkdir -p "$dir/scratch" "$dir/readonly"
  printf '%s\n' "$ro_contents" > "$dir/readonly/test.txt"
  local cmd=() args=(.) stdin=/dev/null expect=status
  case $kind in
    # Without -Wtimeout wasmtime's CLI lets file I/O block the guest's thread, so writes are
    # never short and p3_file_write_chunked fails; the harness does not allow that.
    wasmtime)
      cmd=("$wasmtime" run -Wcomponent-model-async -Sp3 -Wtimeout=120s --dir "$dir/scratch::."
        --env ERRNO_MODE_UNIX=1 -Sinherit-network -Sallow-ip-name-lookup) ;;
    granted)
      cmd=("$membrane" run --dir "$dir/scratch::." --env ERRNO_MODE_UNIX=1 --stdin "${net[@]}")
      [[ $readonly_programs == *" $p "* ]] && cmd+=(--dir "$dir/readonly::readonly:ro") ;;
    bare) cmd=("$membrane" run) ;;
  esac
  # Programs wasmtime's cli tests run with their own flags, arguments and checks.
  case $p in
    p3_cli_hello_stdout | p3_cli_hello_stdout_post_return) args=(); expect="hello, world" ;;
    p3_cli_read_stdin) args=(); printf 'hello!' > "$dir/stdin"; stdin=$dir/stdin ;;
    p3_cli_random_limits) expect=random_limits ;;
    p3_cli_much_stdout) expect=much_stdout ;;
    p3_cli_stdout_flush) args=(); expect=stdout_flush ;;
    # Run with TCP allowed but no address: it creates sockets and checks that binding and
    # listening are refused. membrane creates no TCP socket without a TCP grant, so it gets
    # one for a documentation address, and none to bind.
    p3_cli_deny_listen)
      args=()
      [ "$kind" = wasmtime ] && cmd=("$wasmtime" run -Wcomponent-model-async -Sp3 -Wtimeout=120s -Stcp)
      [ "$kind" = granted ] && cmd=("$membrane" run --allow-tcp 192.0.2.1:9) ;;
    # 200 streams, each dropped, under a limit of 100 resources.
    p3_cli_many_stream)
      args=()
      [ "$kind" = wasmtime ] && cmd+=(-Smax-resources=100)
      [ "$kind" = granted ] && cmd+=(--max-host-resources 100) ;;
    # 1000 pending waits under a limit of 100 resources: must trap on the limit.
    p3_cli_many_tasks)
      args=(); expect=resource_trap
      [ "$kind" = wasmtime ] && cmd+=(-Smax-resources=100)
      [ "$kind" = granted ] && cmd+=(--max-host-resources 100) ;;
  esac
  local out="$dir/stdout" err="$dir/stderr" status=0
  case $expect in
    random_limits)
      for rand in random insecure; do
        timeout 120 "${cmd[@]}" "$wasm" "$rand" 256 < /dev/null > "$out" 2>> "$err" || { status=$?; break; }
      done ;;
    much_stdout)
      # 2^18 bytes of "a", written in pieces of 2^10 to 2^14 bytes.
      for i in 10 11 12 13 14; do
        timeout 120 "${cmd[@]}" "$wasm" "$(head -c $((1 << i)) /dev/zero | tr '\0' a)" $(((1 << 18) >> i)) \
          < /dev/null > "$out" 2>> "$err" || { status=$?; break; }
        if [ "$(wc -c < "$out")" != $((1 << 18)) ] || tr -d a < "$out" | grep -q .; then
          echo "fail (stdout is not 2^18 a's for pieces of 2^$i)"; return
        fi
      done ;;
    stdout_flush) timeout 120 python3 "$work/stdout_flush.py" "${cmd[@]}" "$wasm" > "$out" 2> "$err" || status=$? ;;
    *) timeout 120 "${cmd[@]}" "$wasm" "${args[@]}" < "$stdin" > "$out" 2> "$err" || status=$? ;;
  esac
  local why
  # A guest's panic message, else the first line that looks like an error.
  why=$(grep -m1 -A1 'panicked at' "$err" | tail -n1 || true)
  [ -n "$why" ] || why=$(grep -m1 -i -E 'error|denied|trap|refus|not |fail|limit' "$err" || head -n1 "$err" || true)
  why=${why:0:100}
  if [ $status = 124 ]; then echo "fail (timed out after 120s)"; return; fi
  # membrane's own statuses are below 128 (a trap is 80); wasmtime exits 134 on a trap.
  if [ "$kind" != wasmtime ]; then
    if [ $status -ge 128 ]; then echo "CRASH (signal $((status - 128))): $why"; return; fi
    if [ $status = 70 ]; then echo "CRASH (exit 70, internal error): $why"; return; fi
  fi
  case $expect in
    resource_trap)
      if [ $status != 0 ] && grep -q -i -E 'resource table has no free keys|resource limit|host-resources|too many' "$err"; then
        echo "pass (trapped on the limit)"
      else echo "fail (exit $status): $why"; fi
      return ;;
    "hello, world")
      if [ $status = 0 ] && [ "$(cat "$out")" != "hello, world" ]; then echo "fail (stdout: $(head -c 40 "$out"))"; return; fi ;;
  esac
  if [ $status != 0 ]; then echo "fail (exit $status): $why"; return; fi
  if [[ $readonly_programs == *" $p "* ]] && [ "$(cat "$dir/readonly/test.txt")" != "$ro_contents" ]; then
    echo "fail (readonly/test.txt changed)"; return
  fi
  echo pass
}

failed=()
results=()
for p in "${programs[@]}"; do
  if [[ $readonly_programs == *" $p "* ]]; then
    w="n/a (no read-only --dir)"
  else
    w=$(run wasmtime "$p")
  fi
  g=$(run granted "$p")
  b=$(run bare "$p")
  results+=("$p"$'\t'"$w"$'\t'"$g"$'\t'"$b")
  printf '%s\n  wasmtime: %s\n  membrane granted: %s\n  membrane no grants: %s\n' "$p" "$w" "$g" "$b" >&2
  if [[ $g != pass* && ( $w == pass* || $w == n/a* ) ]]; then failed+=("$p"); fi
done

echo
printf '%-38s | %-30s | %-30s | %s\n' program wasmtime "membrane granted" "membrane no grants"
printf '%s\n' "$(printf -- '-%.0s' {1..160})"
for r in "${results[@]}"; do
  IFS=$'\t' read -r p w g b <<< "$r"
  printf '%-38s | %-30s | %-30s | %s\n' "$p" "$w" "$g" "$b"
done
echo "(outputs of each run: $work/runs/PROGRAM.{wasmtime,granted,bare}/{stdout,stderr})"
if [ ${#failed[@]} -gt 0 ]; then
  echo "pass under wasmtime but fail under membrane with grants: ${failed[*]}" >&2
  exit 1
fi
