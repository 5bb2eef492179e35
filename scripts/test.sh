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
# The feature boundaries (Cargo.toml [features]): the library alone, each feature
# alone, then everything, so a module that reaches past its feature fails here.
cargo clippy --workspace --lib --no-default-features -- -D warnings
for feature in redis api quic-server; do
    cargo clippy --workspace --lib --no-default-features --features "$feature" -- -D warnings
done
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The API documentation as docs.rs builds it (all features): no broken or private link.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
# The multi-process crawl test runs the crawl example's binary; `cargo test` builds
# examples only as test harnesses.
cargo build --workspace --examples --all-features
cargo test --workspace --all-targets --all-features
# The examples in the API documentation run too (`--all-targets` leaves them out).
cargo test --workspace --doc --all-features
# schemathesis against the `mummer` binary `cargo test` just built (about 80 s).
bash scripts/schemathesis.sh "$CARGO_TARGET_DIR/debug/mummer"
# Every fuzz target for 10 s, built without a sanitizer in its own target directory
# (about 5 min from empty, 3.5 min to run; scripts/fuzz.sh says why).
CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/mummer-fuzz-target}" FUZZ_SANITIZER=none \
    bash scripts/fuzz.sh 10
