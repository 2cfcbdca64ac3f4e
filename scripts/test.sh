#!/usr/bin/env bash
# Runs membrane's whole test suite, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo test --workspace

