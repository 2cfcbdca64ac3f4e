#!/usr/bin/env bash
# Builds membrane and the guest components, then shows the membrane at work.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --quiet -p membrane -p membrane-test-guests
membrane=target/release/membrane
guests=guests/target/wasm32-wasip2/release
data=examples/demo-data

show() {
  printf '\n\033[1m$ %s\033[0m\n' "membrane $*"
  "$membrane" "$@" || printf '\033[2m(exit status %s)\033[0m\n' "$?"
}

echo "A component runs with nothing granted: no files, no environment, no sockets."
show run "$guests/hello.wasm" -- world
echo
echo "It sees an environment variable only when the app grants it."
show run --env GREETING=hello "$guests/hello.wasm"
echo
echo "Files: denied without a grant; readable with a read-only grant; still not writable."
show run "$guests/fs-probe.wasm" -- read /data/note.txt
show run --dir "$data::/data:ro" "$guests/fs-probe.wasm" -- read /data/note.txt
show run --dir "$data::/data:ro" "$guests/fs-probe.wasm" -- write /data/note.txt "rewritten"
show run --dir "$data::/data:ro" "$guests/fs-probe.wasm" -- read /data/../../README.md
echo
echo "Limits stop a guest without stopping the host, and say why."
show run --cpu-time 200ms "$guests/spin.wasm"
show run --max-memory 32MiB "$guests/memhog.wasm"
show run "$guests/panicky.wasm"
echo
echo "What could it reach if granted? inspect tells, before anything runs."
show inspect "$guests/fs-probe.wasm"

echo
echo "An app of linked components: a document pipeline with an untrusted plugin."
echo "The plugin has no grants and sees only the text it is handed; when it crashes on a"
echo "document, the host answers that call with the plain fallback and the pipeline goes on."
mkdir -p target/pipeline-out
show check examples/pipeline/membrane.toml
show run --audit-log target/pipeline-audit.jsonl examples/pipeline/membrane.toml
printf '\n\033[1m$ %s\033[0m\n' "head target/pipeline-out/*.html"
head -n 3 target/pipeline-out/*.html
printf '\n\033[1m$ %s\033[0m\n' "cat target/pipeline-audit.jsonl   # what crossed the membranes"
cat target/pipeline-audit.jsonl
rm -f target/pipeline-audit.jsonl

if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing curl for the HTTP part of the demo" >&2
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  else
    echo "curl is missing: install it to see the HTTP part of the demo"; exit 0
  fi
fi

echo
echo "The same renderers behind HTTP: every request gets fresh, isolated instances."
"$membrane" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 examples/docs-web/membrane.toml \
  > target/demo-serve.out 2> target/demo-serve.log &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q '^admin http' target/demo-serve.out 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^serving //p' target/demo-serve.out)
admin=$(sed -n 's/^admin \(http:.*\)/\1/p' target/demo-serve.out)
token_file=$(sed -n 's/^admin token in //p' target/demo-serve.out)
try() {
  printf '\n\033[1m$ curl %s\033[0m   # %s\n' "$1" "$2"
  curl -s "$1" || true
}
try "$base/?doc=%23+Hello%0AThis+is+*fancy*" "rendered by the untrusted plugin"
try "$base/?doc=%3Cscript%3Ealert(1)%3C/script%3E" "the plugin crashes; the fallback answers"
try "$base/hello/world" "a second component on its own route"
try "$base/hello/fetch?url=http://169.254.169.254/latest/meta-data/" "outbound HTTP to a metadata address: denied"
try "$base/hello/trap" "a trapping handler: a 500 for this request only"

echo
echo "Hot swap while it serves: the fancy renderer is replaced by the plain one, checked first."
printf '\n\033[1m$ membrane swap fancy plain_renderer.wasm\033[0m\n'
"$membrane" swap --admin "$admin" --token-file "$token_file" fancy guests/target/wasm32-wasip2/release/plain_renderer.wasm
try "$base/?doc=%23+Hello%0AThis+is+*fancy*" "now rendered by the plain renderer"
printf '\n\033[1m$ membrane rollback fancy\033[0m\n'
"$membrane" rollback --admin "$admin" --token-file "$token_file" fancy
printf '\n\033[1m$ membrane status\033[0m\n'
"$membrane" status --admin "$admin" --token-file "$token_file"
echo
echo "(curl -w ' %{http_code}' adds the status; the server's access log is in target/demo-serve.log)"
echo "The dashboard: $admin/"
if [ -t 0 ]; then
  echo
  echo "Serving $base until Ctrl-C. Try the lines above."
  wait $server
fi
