#!/usr/bin/env bash
# The whole test suite. A cargo target directory outside the clone keeps BoringSSL's
# build between runs; it still works from empty.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-target}"
cargo test --workspace --all-targets
