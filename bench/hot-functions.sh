#!/usr/bin/env bash
# Writes link/hot-functions.txt: the daemon's functions that run, hottest first, which
# build.rs hands the linker as its symbol ordering file, so that they sit side by side
# at the start of the code instead of spread over all of it (bench/README.md,
# footprint). Runs the release daemon under callgrind (valgrind) three times: for
# CORE_DURATION seconds (default 60) with bench/footprint.sh's config, then with it
# publishing as `PUBLISH=1 bench/footprint.sh` does, then for DURATION seconds (default
# 150) with the shipped configuration (vigil.example.yaml: every probe kind
# the deployment runs, the journey included, the shipped rules, publishing to
# CloudWatch through PutMetricData, paging through SNS, the Watchdog's heartbeat and
# the lease) against what scripts/dev-start.sh runs it against — PostgreSQL, Redis,
# the app, moto_server — plus one critical rule that always fires, so a page goes out
# through SNS. Meanwhile it asks the HTTP endpoints and reloads the config once; then
# it keeps the functions of the binary that ran at least one instruction: the first
# run's, then those the second added, then the third's, so that a daemon configured
# as small as an earlier run keeps the later runs' code out of its pages.
#
#   bench/hot-functions.sh              # then rebuild, and bench/footprint.sh to see it
#   CORE_DURATION=120 DURATION=300 bench/hot-functions.sh
#
# Run it again when the code has changed much (bench/footprint.sh says how many of the
# listed names the build still holds): a function missing from the list still works,
# it only lies among the cold code; a stale name is ignored by the linker. Build with
# the same packages as this script and the Dockerfile (`-p vigil -p watch-together`):
# with another set, features unify differently and every symbol's hash changes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${DURATION:-150}
CORE_DURATION=${CORE_DURATION:-60}

ensure_packages
ensure_venv
ensure_moto
command -v valgrind >/dev/null 2>&1 || install_debs valgrind
echo "==> Building release binaries"
cargo build -q --release -p vigil -p watch-together

work=$(mktemp -d /tmp/vigil-hot.XXXXXX)
source bench/targets.sh
start_targets "$work"

moto_port=$(free_port)
start_moto "$moto_port" "$work/moto.log"
pids+=("$MOTO_PID")
cw_port=$(free_port)
start_cw_adapter "$cw_port" "$moto_port" "$work/cw-adapter.log"
pids+=("$CW_ADAPTER_PID")
sink_port=$(free_port)
.venv/bin/python scripts/webhook-sink.py "$sink_port" >"$work/webhooks.log" 2>&1 &
pids+=($!)
wait_port "$sink_port" 30 "the webhook sink"

# The shipped config, its files named from here, one more rule file: a critical alert
# that always fires, so that a page is sent through SNS.
cat >"$work/page.yaml" <<'YAML'
groups:
  - name: profile
    rules:
      - alert: ProfilePage
        expr: vector(1)
        labels:
          severity: critical
        annotations:
          summary: "Always firing while bench/hot-functions.sh profiles the daemon"
YAML
sed -e "s|^  - rules/|  - $(pwd)/rules/|" -e "s|^routing: alerts/|routing: $(pwd)/alerts/|" \
    -e "s|^rule_files:|rule_files:\n  - $work/page.yaml|" vigil.example.yaml >"$work/shipped.yaml"

export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev
export AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:$cw_port
VIGIL_SNS_CRITICAL_TOPIC_ARN=$(moto_create_topic "$moto_port" vigil-critical us-east-1)
VIGIL_SNS_WARNING_TOPIC_ARN=$(moto_create_topic "$moto_port" vigil-warning us-east-1)
export VIGIL_SNS_CRITICAL_TOPIC_ARN VIGIL_SNS_WARNING_TOPIC_ARN
export VIGIL_HEARTBEAT_URL=http://127.0.0.1:$sink_port/heartbeat VIGIL_LEASE_REDIS_URL=redis://127.0.0.1:$redis_port/0
export VIGIL_API_TOKEN=profile VIGIL_LISTEN=127.0.0.1:0 VIGIL_STATE_DIR=$work/shipped-state VIGIL_ENVIRONMENT=profile
export APP_URL=http://$app JOURNEY_URL=http://$app
export DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres REDIS_URL=redis://127.0.0.1:$redis_port/0

# profile NAME CONFIG SECONDS: runs the daemon under callgrind with CONFIG for SECONDS,
# asking its endpoints every 5 s and reloading it once; the profile is $work/NAME.out.
profile() {
    local name=$1 config=$2 seconds=$3 vigil addr i
    valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
        --compress-strings=no --compress-pos=no --demangle=no --dump-line=no \
        target/release/vigil run --config "$config" --log-format json \
        >"$work/$name-vigil.out" 2>"$work/$name-vigil.log" &
    vigil=$!
    pids+=("$vigil")
    addr=$(listening_addr "$work/$name-vigil.log" 300)
    echo "==> Profiling vigil with $name's config (pid $vigil) for ${seconds}s"
    for ((i = 0; i < seconds; i += 5)); do
        for path in /status '/status?format=html' /metrics /api/alerts /badge/cache/status.svg \
            /badge/cache/uptime/30d.svg; do
            curl -fsS -o /dev/null --max-time 60 "http://$addr$path" || echo "warning: GET $path failed" >&2
        done
        # One reload, a third of the way in: what a config change runs.
        if ((i == seconds / 15 * 5)); then kill -HUP "$vigil"; fi
        sleep 5
    done
    kill -TERM "$vigil"
    wait "$vigil" || true
}

# First what bench/footprint.sh runs, then with PUBLISH=1, then the shipped config.
# Every 2 s, with 1.9 s for a check: under callgrind the daemon runs some 50 times
# slower, and a check given 900 ms would time out, profiling only the failure path.
sed -e 's/interval: 1s/interval: 2s/' -e 's/timeout: 900ms/timeout: 1900ms/' "$work/vigil.yaml" >"$work/footprint.yaml"
cp "$work/footprint.yaml" "$work/publish.yaml"
add_publishing "$work/publish.yaml"
profile footprint "$work/footprint.yaml" "$CORE_DURATION"
profile publish "$work/publish.yaml" "$CORE_DURATION"
profile shipped "$work/shipped.yaml" "$DURATION"
pages=$(curl -fsS "http://127.0.0.1:$moto_port/moto-api/data.json" | grep -o ProfilePage | wc -l)
[ "$pages" -gt 0 ] || echo "warning: no page reached SNS while profiling; see $work/shipped-vigil.log" >&2
# Written aside first: a failed run leaves the committed list as it was.
python3 bench/hot_functions.py target/release/vigil "$work/footprint.out" "$work/publish.out" "$work/shipped.out" \
    >"$work/hot-functions.txt"
mv "$work/hot-functions.txt" link/hot-functions.txt
total=$(nm --defined-only target/release/vigil | grep -c ' [tT] ')
echo "==> link/hot-functions.txt: $(wc -l <link/hot-functions.txt) of the binary's $total functions ran (SNS got $pages mentions of the page)"
