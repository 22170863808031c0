#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for FUZZ_SECONDS each (default 20), from
# its seed corpus under fuzz/corpus/ (new inputs go to a scratch copy, so the tree
# is not changed). Installs cargo-fuzz from crates.io when it is missing; the stable
# toolchain builds the sanitizer runtime with RUSTC_BOOTSTRAP=1. A crash, a leak, an
# allocation over 256 MiB or a process over 512 MiB fails the run, and the input is
# kept under $FUZZ_ARTIFACTS (default: a scratch directory, printed).
# The sanitizer build goes to $FUZZ_TARGET_DIR (default ~/.cache/vigil-fuzz/target),
# outside the clone: CI runs in a fresh clone, and rebuilding every dependency with
# the sanitizer flags took 15-25 of its minutes; cargo's fingerprints rebuild what
# changed (the two crates themselves, whenever their sources do) and nothing else.
# Usage: scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-20}"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/vigil-fuzz/target}"
mkdir -p "$target_dir"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz 0.13.2 from crates.io"
    cargo install cargo-fuzz --locked --version 0.13.2
fi
mapfile -t targets < <(if [ $# -gt 0 ]; then printf '%s\n' "$@"; else (cd fuzz && cargo fuzz list); fi)
scratch="$(mktemp -d)"
artifacts="${FUZZ_ARTIFACTS:-$scratch/artifacts}"
mkdir -p "$artifacts"
trap 'rm -rf "$scratch/corpus"' EXIT
echo "==> building ${#targets[@]} fuzz targets"
(cd fuzz && CARGO_TARGET_DIR="$target_dir" cargo fuzz build -O)
for t in "${targets[@]}"; do
    echo "==> fuzzing $t for ${seconds}s"
    mkdir -p "$scratch/corpus/$t"
    (cd fuzz && CARGO_TARGET_DIR="$target_dir" cargo fuzz run -O "$t" "$scratch/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=256 \
        -artifact_prefix="$artifacts/$t-" -print_final_stats=1 2>&1) \
        | grep -E '^(stat::|SUMMARY|==[0-9]+==ERROR|#[0-9]+[[:space:]]+DONE)|panicked|artifact' || true
    if ls "$artifacts/$t-"* >/dev/null 2>&1; then
        echo "fuzz target $t failed; inputs kept in $artifacts" >&2
        exit 1
    fi
done
echo "==> fuzzing passed"
