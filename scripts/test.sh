#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every unit, integration and
# conformance test. A cargo target directory outside the clone keeps BoringSSL's build
# between runs; it still works from empty.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where rustup puts cargo on a machine that scripts/setup.sh just set up.
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The multi-process crawl test runs the crawl example's binary; `cargo test` builds
# examples only as test harnesses.
cargo build --workspace --examples
cargo test --workspace --all-targets
