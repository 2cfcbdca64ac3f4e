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
