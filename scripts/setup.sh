#!/usr/bin/env bash
# Installs the system packages mummer needs: the BoringSSL build tools, Chromium for
# the fingerprint conformance test, redis-server for the session-store tests, curl and
# python3 for the message API tests (the proxy test and the Python example) and, with
# python3-venv, schemathesis against the served OpenAPI document, tinyproxy and
# dante-server for the proxy-pool tests (HTTP CONNECT and SOCKS5 exits). Idempotent; skips apt when everything is present.
set -euo pipefail
need=()
for pkg in cmake libclang-dev git build-essential chromium iproute2 util-linux redis-server curl python3 python3-venv tinyproxy dante-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# Rust (Cargo.toml's rust-version is newer than Debian's packaged rustc): rustup's
# stable toolchain with rustfmt and clippy, only when no cargo is installed.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --component rustfmt,clippy
fi
