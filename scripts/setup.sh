#!/usr/bin/env bash
# Installs what building membrane and its guest components needs on a fresh machine.
# Sourced by the demo and test scripts; safe to run again.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: installing the wasm32-wasip2 Rust target for the guest components" >&2
  rustup target add wasm32-wasip2
fi
