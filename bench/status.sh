#!/usr/bin/env bash
# /status under load: the release daemon probing the app, PostgreSQL, Redis and a disk
# every second (bench/targets.sh), with 90 days of history and 100 incidents behind it
# (bench/seed_history.py), answers wrk for DURATION seconds (default 60) per endpoint:
# /status as JSON and as HTML, a badge, /metrics. Prints, per endpoint, the requests
# per second, the latency percentiles, and Vigil's CPU and resident memory meanwhile;
# then what the history costs on disk.
#
#   bench/status.sh               # 60 s per endpoint
#   DURATION=10 bench/status.sh
#   CONNECTIONS=8 bench/status.sh # default 4, on one wrk thread
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${DURATION:-60}
CONNECTIONS=${CONNECTIONS:-4}

ensure_packages
command -v wrk >/dev/null 2>&1 || {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends wrk
}
echo "==> Building release binaries"
cargo build -q --release -p vigil -p watch-together

work=$(mktemp -d /tmp/vigil-status.XXXXXX)
source bench/targets.sh
start_targets "$work"
python3 bench/seed_history.py "$work/state" app database cache disk
started=$(date +%s%N)
target/release/vigil run --config "$work/vigil.yaml" --log-format json >"$work/vigil.out" 2>"$work/vigil.log" &
vigil=$!
pids+=("$vigil")
addr=$(listening_addr "$work/vigil.log" 60)
echo "listening after $(( ($(date +%s%N) - started) / 1000000 )) ms"
# Let every probe report and the rules run before measuring.
sleep 5
grep -o '"message":"History read\.".*"seconds":[0-9.e-]*' "$work/vigil.log" | sed 's/.*"seconds":/90 days of history read (in its own stage) in /; s/$/ s/'

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$vigil/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$vigil/status"; }

printf '%-28s %9s %8s %8s %8s %8s %9s %9s\n' endpoint "req/s" p50 p90 p99 max "CPU %" "RSS MiB"
for path in "/status" "/status?format=html" "/badge/cache/status.svg" "/badge/cache/uptime/30d.svg" "/metrics"; do
    t0=$(cpu_ticks)
    rss_peak=0
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$addr$path" >"$work/wrk.txt" &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        r=$(rss_kib)
        [ "$r" -gt "$rss_peak" ] && rss_peak=$r
        sleep 1
    done
    wait "$wrk_pid"
    t1=$(cpu_ticks)
    awk -v path="$path" -v t0="$t0" -v t1="$t1" -v clk="$clk" -v dur="$DURATION" -v rss="$rss_peak" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /^ +Latency +[0-9]/ { max = ms($4) }
        /^Requests\/sec/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        END {
            printf "%-28s %9.0f %7.2fms %7.2fms %7.2fms %7.1fms %8.1f%% %9.1f%s\n", path, rps, p50, p90, p99, max,
                100 * (t1 - t0) / clk / dur, rss / 1024, (bad ? "  (" bad " non-2xx)" : "")
        }' "$work/wrk.txt"
done

echo
echo "history on disk (4 components, 90 days, 100 incidents):"
du -sb "$work/state/history/minutes" "$work/state/history/incidents" | awk '{printf "  %-12s %10d bytes\n", gensub(/.*\//, "", "g", $2), $1}'
full=$(find "$work/state/history/minutes" -name '*.bin' -size +46000c -print -quit)
echo "  one full day of one component: $(stat -c %s "$full") bytes"
