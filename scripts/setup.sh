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
