#!/usr/bin/env bash
# Runs wasmtime's own WASI 0.3 HTTP test programs (crates/test-programs/src/bin/p3_http_*,
# built from a wasmtime checkout as its artifacts/build.rs builds them: wasm32-wasip1 and the
# preview 1 reactor adapter) under membrane: the outbound ones with `membrane run`, once
# with a grant for their upstream and once without, and the handlers under `membrane serve`.
# Not part of the test command: it needs a wasmtime source tree, curl and python3.
#
#   scripts/http-p3-conformance.sh WASMTIME_DIR [MEMBRANE_BINARY]
#
# WASMTIME_DIR is a checkout of wasmtime at the tag matching membrane's wasmtime (v48.0.0);
# its test programs are built there, never copied into this repository. The helper that
# adapts them into components and the mock upstream are written under target/.
set -euo pipefail
source "$(dirname "$0")/test-programs.sh"
wasmtime_dir=${1:?usage: $0 WASMTIME_DIR [MEMBRANE_BINARY]}
membrane=$(realpath "${2:-target/release/membrane}")
[ -x "$membrane" ] || { echo "no membrane binary at $membrane; build it with cargo build --release" >&2; exit 2; }
work=$(realpath -m target/http-p3-conformance)
mkdir -p "$work/components"

programs=()
for f in "$wasmtime_dir"/crates/test-programs/src/bin/p3_http_*.rs; do programs+=("$(basename "$f" .rs)"); done
build_test_programs "$wasmtime_dir" "${programs[@]}"

componentize=$(componentize_helper "$work")
for m in "$wasmtime_dir"/target/wasm32-wasip1/release/p3_http_*.wasm; do
  "$componentize" "$m" "$work/components/$(basename "$m")"
done

# wasmtime's mock upstream (crates/wasi-http/tests/all/http_server.rs): the request's method
# and URI in x-wasmtime-test-* headers, and its body back.
cat > "$work/upstream.py" <<'EOF'
import socket, sys, threading
def line(f): return f.readline().decode('latin-1').rstrip('\r\n')
def serve(conn):
    f = conn.makefile('rb')
    try:
        while (first := line(f)):
            method, uri, _ = first.split(' ', 2)
            headers = {}
            while (h := line(f)):
                k, v = h.split(':', 1)
                headers[k.strip().lower()] = v.strip()
            body = b''
            if 'content-length' in headers:
                body = f.read(int(headers['content-length']))
            elif headers.get('transfer-encoding', '').lower() == 'chunked':
                while (size := int(line(f).split(';')[0], 16)):
                    body += f.read(size); f.read(2)
                while line(f): pass
            head = f'HTTP/1.1 200 OK\r\nx-wasmtime-test-method: {method}\r\nx-wasmtime-test-uri: {uri}\r\ncontent-length: {len(body)}\r\n\r\n'
            conn.sendall(head.encode('latin-1') + body)
    finally:
        conn.close()
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
exec 3< <(python3 "$work/upstream.py")
upstream_pid=$!
read -r port <&3
servers=()
trap 'kill $upstream_pid "${servers[@]}" 2>/dev/null || true' EXIT
upstream="http://127.0.0.1:$port"
out="$work/components"

printf '%-52s %-10s %-10s\n' "program (membrane run)" granted "no grant"
for wasm in "$out"/p3_http_outbound_request_*.wasm; do
  p=$(basename "$wasm" .wasm)
  grant=(--allow-http "$upstream")
  case $p in
    *invalid_dnsname) grant=(--allow-http http://some.invalid.dnsname:3000) ;;
    *timeout) grant=(--allow-http http://203.0.113.12) ;;
  esac
  with=$(timeout 60 "$membrane" run --env "HTTP_SERVER=127.0.0.1:$port" "${grant[@]}" "$wasm" >/dev/null 2>&1 && echo pass || echo fail)
  without=$(timeout 60 "$membrane" run --env "HTTP_SERVER=127.0.0.1:$port" "$wasm" >/dev/null 2>&1 && echo pass || echo fail)
  printf '%-52s %-10s %-10s\n' "$p" "$with" "$without"
done

# Serves `wasm` with `flags`, printing its address.
serve() {
  local log="$work/$(basename "$1" .wasm).serve.log"
  "$membrane" serve --listen 127.0.0.1:0 --admin-listen off "${@:2}" "$1" > "$log.out" 2> "$log" &
  servers+=($!)
  until grep -q '^serving http://' "$log.out" 2>/dev/null; do sleep 0.1; done
  sed -n 's|^serving http://||p' "$log.out"
}
check() { if "$@"; then echo pass; else echo fail; fi; }
body="$work/body.bin"
head -c 5000000 /dev/urandom > "$body"

printf '\n%-52s %s\n' "handler (membrane serve)" result
addr=$(serve "$out/p3_http_echo.wasm")
for mode in false true; do
  printf '%-52s %s\n' "p3_http_echo (x-host-to-host: $mode)" "$(check bash -c \
    "curl -sf -H 'x-host-to-host: $mode' --data-binary @$body http://$addr/ | cmp -s - $body")"
done
printf '%-52s %s\n' "p3_http_echo over h2c" "$(check bash -c \
  "curl -sf --http2-prior-knowledge --data-binary @$body http://$addr/ | cmp -s - $body")"
addr=$(serve "$out/p3_http_proxy.wasm" --allow-http "$upstream")
printf '%-52s %s\n' "p3_http_proxy to a granted upstream" "$(check bash -c \
  "curl -sf -H 'url: $upstream/p' --data-binary hello http://$addr/ | grep -qx hello")"
printf '%-52s %s\n' "p3_http_proxy to a metadata address (must be 500)" "$(check bash -c \
  "[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'url: http://169.254.169.254/' http://$addr/) = 500 ]")"

# p3_http_middleware in front of p3_http_echo, linked through the host (wasmtime composes
# the two into one component; membrane keeps each behind its own membrane).
cat > "$work/middleware.toml" <<EOF2
[app]
name = "wasmtime-middleware"

[component.middleware]
source = "$out/p3_http_middleware.wasm"

[component.echo]
source = "$out/p3_http_echo.wasm"

[[link]]
from = "middleware"
import = "wasi:http/handler@0.3.0"
to = "echo"

[[route]]
path = "/"
component = "middleware"
EOF2
addr=$(serve "$work/middleware.toml")
python3 -c "import zlib,sys; c=zlib.compressobj(wbits=-15); d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(c.compress(d)+c.flush())" "$body" "$body.deflate"
inflates() { python3 -c "import zlib,sys; sys.exit(zlib.decompress(open(sys.argv[1],'rb').read(), -15) != open(sys.argv[2],'rb').read())" "$1" "$body"; }
printf '%-52s %s\n' "p3_http_middleware -> p3_http_echo" "$(check bash -c \
  "curl -sf --data-binary @$body http://$addr/ | cmp -s - $body")"
for mode in false true; do
  printf '%-52s %s\n' "  accept-encoding: deflate (x-host-to-host: $mode)" "$(check bash -c \
    "curl -sf -H 'x-host-to-host: $mode' -H 'accept-encoding: deflate' --data-binary @$body http://$addr/ -o $work/deflated && $(declare -f inflates); body=$body; inflates $work/deflated")"
done
# The program keeps the request's content-length while it inflates the body, so the request
# is sent chunked (with a content-length the host refuses the longer body, as wasmtime does).
printf '%-52s %s\n' "  content-encoding: deflate, chunked" "$(check bash -c \
  "curl -sf -H 'transfer-encoding: chunked' -H 'content-encoding: deflate' --data-binary @$body.deflate http://$addr/ | cmp -s - $body")"
