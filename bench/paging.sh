#!/usr/bin/env bash
# Page and resolve latency: Redis killed and restarted under a Vigil that probes it
# every second and pages through moto_server's SNS. See bench/paging.py.
# VIGIL=target/debug/vigil bench/paging.sh measures a debug build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_packages
ensure_moto
if [ -z "${VIGIL:-}" ]; then
    cargo build -q --release -p vigil
    export VIGIL=target/release/vigil
fi
exec .venv/bin/python bench/paging.py
