#!/usr/bin/env bash
# Vigil against the Prometheus stack and the VictoriaMetrics stack, on the same targets
# with the same rules in the same run (bench/compare/compare.py says what and how).
# Installs what it needs from Debian's packages, builds the release binaries, runs.
#
#   bench/compare/run.sh             # about half an hour: the workload, then both cadences at once, 5 rounds each
#   QUICK=1 bench/compare/run.sh     # a few minutes: 1 s cadence, 2 rounds
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

missing=()
for pair in prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
    prometheus-blackbox-exporter:prometheus-blackbox-exporter \
    prometheus-postgres-exporter:prometheus-postgres-exporter \
    prometheus-redis-exporter:prometheus-redis-exporter \
    prometheus-node-exporter:prometheus-node-exporter victoria-metrics:vmalert; do
    command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
done
# The packages' own services must not start (on their default ports, taking CPU beside
# the run): a policy that refuses them while this script installs, removed at exit.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
fi
ensure_packages
install_debs "${missing[@]}"

echo "==> Building the release binaries"
cargo build -q --release -p vigil -p watch-together
python3 bench/compare/compare.py
