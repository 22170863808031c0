#!/usr/bin/env bash
# Everything CI checks, on a fresh machine too: installs what is missing (PostgreSQL,
# Redis and promtool from Debian's packages, a Python venv under .venv/ with
# moto_server, the local AWS, and cbor2 for its CloudWatch adapter), then
# formatting, lints, every test, the rule tests through both promtool and vigil, and
# the deployment's static checks (scripts/check-infrastructure.sh, with its own venv),
# terraform validate and plan of each environment against moto_server
# (scripts/plan-infrastructure.sh, with the machine's terraform and AWS provider),
# the two images built from locally made Debian 12 bases and run as the task runs them
# (scripts/test-images.sh: Debian's docker.io and debootstrap, bases cached under
# ~/.cache/vigil-images/),
# and a short run of every fuzz target (scripts/fuzz.sh; cargo-fuzz from crates.io).
# The tests start their own PostgreSQL and Redis servers on free ports; the machine's
# shared ones are neither needed nor touched. The browser tests (tests/browser.rs)
# use Debian's chromium and playwright-core from npm (tests/browser/), and leave
# screenshots of the status page under target/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# What a new machine needs, installed where it is missing (also what a developer runs
# once: the runbook's scripts/dev-setup.sh).
scripts/dev-setup.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
# The fuzz crate is outside the workspace (scripts/fuzz.sh builds it with sanitizers).
rustfmt --edition 2024 --check fuzz/src/*.rs fuzz/fuzz_targets/*.rs
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
echo "==> the scripts' own tests: the CloudWatch CBOR adapter, and deploy.sh against moto_server"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m unittest discover -s scripts -p 'test_*.py'
echo "==> rule tests and the PromQL corpus, through promtool and through vigil"
rule_tests=(rules/tests/*.yaml tests/promql/*.yaml)
promtool check rules rules/*.yaml tests/promql/rules/*.yaml
# The corpus's answers are promtool's own (tests/promql/generate.py wrote them from
# tests/promql/src/); --check fails when a source changed and they were not rewritten.
.venv/bin/python tests/promql/generate.py --check
promtool test rules "${rule_tests[@]}"
cargo run -q -p vigil -- test rules "${rule_tests[@]}"
echo "==> vigil check vigil.example.yaml"
VIGIL_SNS_CRITICAL_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:vigil-critical \
VIGIL_SNS_WARNING_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:vigil-warning \
VIGIL_HEARTBEAT_URL=http://127.0.0.1:9/heartbeat \
    cargo run -q -p vigil -- check --config vigil.example.yaml
echo "==> the deployment: hadolint, checkov, terraform fmt and the structure tests"
scripts/check-infrastructure.sh
echo "==> terraform init, validate and plan of every environment against moto_server"
scripts/plan-infrastructure.sh
echo "==> the images: built from locally made bases and run as the ECS task runs them"
scripts/test-images.sh
echo "==> fuzzing: every target for ${FUZZ_SECONDS:-20}s from its seed corpus"
scripts/fuzz.sh
echo "==> vigil dashboards render"
cargo run -q -p vigil -- dashboards render --env production --region us-east-1 --account-id 123456789012 >/dev/null
echo "==> all checks passed"
