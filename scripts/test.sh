#!/usr/bin/env bash
# Everything CI checks, on a fresh machine too: installs what is missing (PostgreSQL,
# Redis and promtool from Debian's packages, a Python venv under .venv/), then
# formatting, lints, every test, and the rule tests through both promtool and vigil.
# The tests start their own PostgreSQL and Redis servers on free ports; the machine's
# shared ones are neither needed nor touched.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
ensure_venv

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
echo "==> rule tests and the PromQL corpus, through promtool and through vigil"
rule_tests=(rules/tests/*.yaml tests/promql/*.yaml)
promtool check rules rules/*.yaml
promtool test rules "${rule_tests[@]}"
cargo run -q -p vigil -- test rules "${rule_tests[@]}"
echo "==> vigil check vigil.example.yaml"
cargo run -q -p vigil -- check --config vigil.example.yaml
echo "==> all checks passed"
