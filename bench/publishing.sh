#!/usr/bin/env bash
# PutMetricData calls and bytes a minute for 100, 1 000 and 10 000 series, against
# the floor of ⌈datums / 1 000⌉ calls, the same flush as EMF lines, and the monthly
# cost at CloudWatch's published prices. Needs moto and the CBOR adapter's cbor2
# (installed into .venv/ here when missing). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_moto
cargo bench -q --bench publish_calls
