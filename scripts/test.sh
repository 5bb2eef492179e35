#!/usr/bin/env bash
# The whole test suite: formatting, lints, every unit, integration and conformance
# test, then the API against its document (schemathesis) and every fuzz target on its
# checked-in corpus for 10 s. Cargo target directories outside the clone keep
# BoringSSL's build between runs; they still work from empty.
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
# schemathesis against the `mummer` binary `cargo test` just built (about 80 s).
bash scripts/schemathesis.sh "$CARGO_TARGET_DIR/debug/mummer"
# Every fuzz target for 10 s, built without a sanitizer in its own target directory
# (about 5 min from empty, 3.5 min to run; scripts/fuzz.sh says why).
CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/mummer-fuzz-target}" FUZZ_SANITIZER=none \
    bash scripts/fuzz.sh 10
