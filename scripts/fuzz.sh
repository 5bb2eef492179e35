#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for SECONDS (default 60) under
# libFuzzer; exits non-zero if any target crashes, panics, overflows, times out on one
# input or runs out of memory.
#
#   scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
#
# The targets are one-liners over mummer::fuzzing (src/fuzzing.rs); tests/fuzz_corpus.rs
# replays the checked-in seeds (fuzz/corpus/<target>/) through the same functions on
# stable `cargo test`, so this script is only needed to search for new inputs.
#
# Toolchain: the machine has one toolchain, stable (1.95), and no nightly can be
# fetched. cargo-fuzz's coverage instrumentation is all stable flags (-Cpasses=sancov-
# module, -Cllvm-args=...), but AddressSanitizer is -Zsanitizer=address, nightly-only:
# with a sanitizer the build runs under RUSTC_BOOTSTRAP=1, which lets stable rustc take
# -Z flags, and the stable toolchain ships the runtimes (librustc-stable_rt.asan.a), so
# ASan links and works. ASan is the default: besides memory errors in the FFI around
# BoringSSL, it gives libFuzzer its -malloc_limit_mb, which catches a single huge
# allocation (a hostile length field) that never shows up as RSS.
# FUZZ_SANITIZER=none builds on plain stable (no RUSTC_BOOTSTRAP), about twice as fast
# from empty; panics and integer overflows are still found (Rust's own checks).
# cargo-fuzz itself comes from crates.io (`cargo install cargo-fuzz`) when missing.
#
# Cost on the 2-core machine, measured: from an empty target dir, 20 min to build all
# targets with ASan and one codegen unit (the default), 11 min with FUZZ_SANITIZER=none
# FUZZ_CODEGEN_UNITS=16; after a change to src/, about 6 min (ASan, 1 unit). Running
# every target for 10 s takes about 4 min.
#
# Overflow checks and debug assertions are on (fuzz/Cargo.toml's [profile.release]), so
# an integer overflow is a panic, and a panic is a crash to libFuzzer.
#
# Limits per run: -max_total_time=SECONDS, -rss_limit_mb=2048 (and so malloc_limit_mb),
# -timeout=10 s for any one input, -max_len per target (below). New inputs go to a
# working corpus beside the build ($CARGO_TARGET_DIR/corpus/<target>), never into the
# checked-in seeds; crashes go to fuzz/artifacts/<target>/ (git-ignored). To keep one,
# copy it to fuzz/artifacts-found/<target>/ and report it; once fixed, move it into
# fuzz/corpus/<target>/ as a regression seed.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/mummer-fuzz-target; keep it apart
# from the main build's), FUZZ_SANITIZER (address | none), FUZZ_CODEGEN_UNITS (cargo
# fuzz's default is 1, the fastest fuzzing code and the slowest build; 16 builds faster).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-fuzz-target}"
seconds="${1:-60}"
shift || true
sanitizer="${FUZZ_SANITIZER:-address}"
if [[ "$sanitizer" != none ]]; then
    export RUSTC_BOOTSTRAP=1
fi
build_flags=(-O --sanitizer "$sanitizer")
if [[ -n "${FUZZ_CODEGEN_UNITS:-}" ]]; then
    build_flags+=(--codegen-units "$FUZZ_CODEGEN_UNITS")
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

# The longest input worth trying, per target: a little over the largest seed.
max_len() {
    case "$1" in
        profile_json) echo 16384 ;;
        snapshot_decode | session_from_snapshot | h1_response | robots_txt) echo 8192 ;;
        resolve_override | connect_to | proxy_url) echo 512 ;;
        *) echo 4096 ;;
    esac
}

cd fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
    if [[ ${#targets[@]} -eq 0 ]]; then
        echo "fuzz: cargo fuzz list found no targets" >&2
        exit 1
    fi
fi
build_start=$(date +%s)
if [[ $# -eq 0 ]]; then
    cargo fuzz build "${build_flags[@]}"
else
    for t in "${targets[@]}"; do
        cargo fuzz build "${build_flags[@]}" "$t"
    done
fi
echo "fuzz: build took $(($(date +%s) - build_start)) s"

bin_dir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
passed=0
failed=()
summary=()
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/corpus/$t"
    artifacts="$root/fuzz/artifacts/$t/"
    log="$CARGO_TARGET_DIR/logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    echo "fuzz: $t for ${seconds} s"
    set +e
    "$bin_dir/$t" "$work" "corpus/$t" \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -max_len="$(max_len "$t")" \
        -artifact_prefix="$artifacts" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -oE '(DONE|pulse|NEW|REDUCE) +cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        summary+=("$(printf '%-24s ok     %10s execs  cov %s' "$t" "${execs:-?}" "${cov:-?}")")
    else
        failed+=("$t")
        summary+=("$(printf '%-24s FAILED %10s execs  (exit %s; %s)' "$t" "${execs:-?}" "$rc" "$log")")
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written' -A2 "$log" | head -20 || true
    fi
done
printf '%s\n' "${summary[@]}"
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]
