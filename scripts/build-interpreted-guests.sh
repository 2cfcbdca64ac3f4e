#!/usr/bin/env bash
# Builds the interpreted wasi:http guests from source: guests/py-hello (Python, with
# componentize-py) and guests/js-hello (JavaScript, with componentize-js, the engine behind
# `jco componentize`), both against wit/http, and guests/py-p3-http (Python, a WASI 0.3
# handler, against wit/p3), into target/interpreted-guests/.
#
#   scripts/build-interpreted-guests.sh [py-hello|py-p3-http|js-hello]...     # default: all
#
# Installs the pinned toolchains under target/guest-tools/ when missing (componentize-py
# from PyPI into a venv, componentize-js from npm into a folder); offline after that. A guest
# is rebuilt only when its source, the WIT or the pinned toolchain changed. Prints
# `NAME<TAB>PATH` for each guest built or already up to date. Concurrent runs (tests in
# parallel, a bench beside them) wait for each other on a lock.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a bump rebuilds both the toolchain and the guests built with it.
COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.22.0

tools=target/guest-tools
out=target/interpreted-guests
mkdir -p "$tools" "$out"
exec 9>"$tools/.lock"
flock 9

# The venv (or node folder) is complete once its stamp names the pinned version.
install_py() {
  local venv=$tools/py stamp=$tools/py/.pinned
  [ "$(cat "$stamp" 2>/dev/null)" = "componentize-py==$COMPONENTIZE_PY" ] && return
  echo "build-interpreted-guests: installing componentize-py $COMPONENTIZE_PY into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY" >&2
  echo "componentize-py==$COMPONENTIZE_PY" >"$stamp"
}

install_js() {
  local dir=$tools/js stamp=$tools/js/.pinned
  [ "$(cat "$stamp" 2>/dev/null)" = "componentize-js@$COMPONENTIZE_JS" ] && return
  command -v npm >/dev/null || {
    echo "build-interpreted-guests: npm is missing; install Node.js 20 or newer (apt-get install nodejs npm)" >&2
    exit 1
  }
  echo "build-interpreted-guests: installing componentize-js $COMPONENTIZE_JS into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"private": true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --save-exact --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS" >&2
  echo "componentize-js@$COMPONENTIZE_JS" >"$stamp"
}

# Whether $1 (a built component) is older than any of the inputs after it.
stale() {
  local wasm=$1
  shift
  [ ! -s "$wasm" ] || [ -n "$(find "$@" -newer "$wasm" -print -quit)" ]
}

build() {
  local name=$1 wasm=$out/${1//-/_}.wasm
  case $name in
    py-hello)
      install_py
      if stale "$wasm" guests/py-hello wit/http "$tools/py/.pinned"; then
        echo "build-interpreted-guests: building $name with componentize-py" >&2
        "$tools/py/bin/componentize-py" --quiet -d wit/http -w handler componentize \
          -p guests/py-hello app -o "$wasm.tmp" >&2
        mv "$wasm.tmp" "$wasm"
      fi
      ;;
    py-p3-http)
      install_py
      if stale "$wasm" guests/py-p3-http wit/p3 "$tools/py/.pinned"; then
        echo "build-interpreted-guests: building $name with componentize-py" >&2
        "$tools/py/bin/componentize-py" --quiet -d wit/p3 -w http-guest componentize \
          -p guests/py-p3-http app -o "$wasm.tmp" >&2
        mv "$wasm.tmp" "$wasm"
      fi
      ;;
    js-hello)
      install_js
      if stale "$wasm" guests/js-hello wit/http "$tools/js/.pinned"; then
        echo "build-interpreted-guests: building $name with componentize-js" >&2
        "$tools/js/node_modules/.bin/componentize-js" guests/js-hello/app.js \
          -w wit/http -n handler -o "$wasm.tmp" >&2
        mv "$wasm.tmp" "$wasm"
      fi
      ;;
    *)
      echo "build-interpreted-guests: no guest named '$name'; the guests are py-hello, py-p3-http and js-hello" >&2
      exit 2
      ;;
  esac
  printf '%s\t%s\n' "$name" "$PWD/$wasm"
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(py-hello py-p3-http js-hello)
for name in "${names[@]}"; do build "$name"; done
