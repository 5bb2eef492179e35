#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) and runs each for SECONDS (default 60) under
# libFuzzer; exits non-zero if any target crashes, panics, overflows, times out on one
# input or runs out of memory, or if a target found nothing to run.
#
#   scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
#
# The test command (scripts/test.sh) runs it as `FUZZ_SANITIZER=none scripts/fuzz.sh 10`:
# every target for 10 s on its checked-in corpus. Longer runs search for new inputs.
#
# The targets are one-liners over mummer::fuzzing (src/fuzzing.rs); tests/fuzz_corpus.rs
# replays the checked-in seeds (fuzz/corpus/<target>/) through the same functions on
# stable `cargo test`.
#
# How it builds: one binary, fuzz/fuzz_targets/all.rs, holds every target
# (MUMMER_FUZZ_TARGET picks one per run), built by plain `cargo build` with the flags
# cargo-fuzz would pass: libFuzzer's coverage instrumentation (-Cpasses=sancov-module
# and its -Cllvm-args), `--cfg fuzzing`, `--target` so that build scripts and proc
# macros are not instrumented, and fuzz/Cargo.toml's release profile, which keeps
# overflow checks and debug assertions (an integer overflow is a panic, a panic is a
# crash to libFuzzer). No cargo-fuzz to install, and one link instead of nineteen.
# The per-target binaries stay for `cargo fuzz run <target>` by hand.
#
# Sanitizer: AddressSanitizer (the default) is -Zsanitizer=address, a nightly flag; the
# build runs under RUSTC_BOOTSTRAP=1, which lets stable rustc take it, and the stable
# toolchain ships the runtime, so ASan links and works. Besides memory errors in the
# FFI around BoringSSL, it gives libFuzzer its -malloc_limit_mb, which catches a single
# huge allocation (a hostile length field) that never shows up as RSS.
# FUZZ_SANITIZER=none builds on plain stable, about twice as fast; panics and integer
# overflows are still found (Rust's own checks) and -rss_limit_mb still holds.
#
# Cost on the 2-core machine is in docs/benchmarks.md ("Fuzzing").
#
# Limits per run: -max_total_time=SECONDS, -rss_limit_mb=2048, -timeout=10 s for any
# one input, -max_len per target (below). New inputs go to a working corpus beside the
# build ($CARGO_TARGET_DIR/corpus/<target>), never into the checked-in seeds; crashes
# go to fuzz/artifacts/<target>/ (git-ignored). To keep one, copy it to
# fuzz/artifacts-found/<target>/ and report it; once fixed, move it into
# fuzz/corpus/<target>/ as a regression seed.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/mummer-fuzz-target; kept apart from
# the main build's, whose flags differ), FUZZ_SANITIZER (address | none),
# FUZZ_CODEGEN_UNITS (default 16, the fastest build; 1 makes faster fuzzing code).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-fuzz-target}"
seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]{0,5}$ ]]; then
    echo "fuzz: SECONDS-PER-TARGET must be a whole number from 1 to 999999, not '$seconds'" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-address}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

rustflags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Ccodegen-units="${FUZZ_CODEGEN_UNITS:-16}"
)
case "$sanitizer" in
    none) ;;
    address)
        export RUSTC_BOOTSTRAP=1
        rustflags+=(-Zsanitizer=address)
        ;;
    *)
        echo "fuzz: FUZZ_SANITIZER is address or none, not '$sanitizer'" >&2
        exit 2
        ;;
esac

# The longest input worth trying, per target: a little over the largest seed.
max_len() {
    case "$1" in
        profile_json) echo 16384 ;;
        snapshot_decode | session_from_snapshot | h1_response | robots_txt) echo 8192 ;;
        resolve_override | connect_to | proxy_url) echo 512 ;;
        *) echo 4096 ;;
    esac
}

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(ls fuzz/corpus)
fi
for t in "${targets[@]}"; do
    if [[ ! -f "fuzz/fuzz_targets/$t.rs" || ! -d "fuzz/corpus/$t" ]]; then
        echo "fuzz: no target '$t' (fuzz/fuzz_targets/$t.rs and fuzz/corpus/$t/)" >&2
        exit 2
    fi
done

build_start=$(date +%s)
RUSTFLAGS="${rustflags[*]}" cargo build --manifest-path fuzz/Cargo.toml --release \
    --target "$triple" --bin all
echo "fuzz: build (sanitizer $sanitizer) took $(($(date +%s) - build_start)) s"
bin="$CARGO_TARGET_DIR/$triple/release/all"

passed=0
failed=()
summary=()
run_start=$(date +%s)
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/corpus/$t"
    artifacts="$root/fuzz/artifacts/$t/"
    log="$CARGO_TARGET_DIR/logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    set +e
    MUMMER_FUZZ_TARGET="$t" "$bin" "$work" "fuzz/corpus/$t" \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -max_len="$(max_len "$t")" \
        -artifact_prefix="$artifacts" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -oE '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
    if [[ $rc -eq 0 && "${execs:-0}" -gt 0 ]]; then
        passed=$((passed + 1))
        summary+=("$(printf '%-24s ok     %10s execs  cov %s' "$t" "$execs" "${cov:-?}")")
    else
        failed+=("$t")
        summary+=("$(printf '%-24s FAILED %10s execs  (exit %s; %s)' "$t" "${execs:-?}" "$rc" "$log")")
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written|names no target' -A2 "$log" | head -20 >&2 || true
    fi
done
printf '%s\n' "${summary[@]}"
echo "fuzz: ${passed} passed, ${#failed[@]} failed, ${seconds} s each, $(($(date +%s) - run_start)) s in all"
[[ ${#failed[@]} -eq 0 ]]
