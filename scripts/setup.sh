#!/usr/bin/env bash
# Installs what building membrane and its guest components needs on a fresh machine.
# Sourced by the demo and test scripts; safe to run again.
set -euo pipefail

for target in wasm32-wasip2 wasm32-wasip1; do
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "setup: installing the $target Rust target for the guest components" >&2
    rustup target add "$target"
  fi
done

# libFuzzer (linked into the fuzz targets, which the tests build) is C++.
if ! command -v c++ >/dev/null; then
  echo "setup: installing a C++ compiler for libFuzzer" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null; }
fi

# The interpreted guests (scripts/build-interpreted-guests.sh) need Python's venv and Node.js.
if ! command -v npm >/dev/null; then
  echo "setup: installing Node.js and npm for the JavaScript guest" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: installing Python's venv for the Python guest" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
fi
