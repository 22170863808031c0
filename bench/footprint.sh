#!/usr/bin/env bash
# Vigil's footprint at 1 s probing: runs the release daemon for DURATION seconds
# (default 60) probing the app, PostgreSQL, Redis and a disk every second, scraping the
# app's /metrics every second and evaluating the shipped rules (rules/*.yaml) every
# second, and prints peak and steady resident memory and CPU time. Starts its own
# PostgreSQL, Redis and app on free ports; stops them when done.
#
#   bench/footprint.sh            # 60 s
#   DURATION=20 bench/footprint.sh
#   PUBLISH=1 bench/footprint.sh  # also publishing the shipped metrics (as EMF, every 10 s)
#   VIGIL=path/to/vigil bench/footprint.sh   # another build of the daemon
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${DURATION:-60}

ensure_packages
echo "==> Building release binaries"
cargo build -q --release -p vigil -p watch-together

work=$(mktemp -d /tmp/vigil-footprint.XXXXXX)
source bench/targets.sh
start_targets "$work"
# PUBLISH=1: also publish what the shipped config publishes, every 10 s, as EMF lines
# (the same aggregation and queue as PutMetricData, without needing an AWS).
if [ "${PUBLISH:-0}" = 1 ]; then
    add_publishing "$work/vigil.yaml"
fi
"${VIGIL:-target/release/vigil}" run --config "$work/vigil.yaml" --log-format json >"$work/vigil.out" 2>"$work/vigil.log" &
vigil=$!
pids+=("$vigil")
vigil_addr=$(listening_addr "$work/vigil.log" 30)

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$vigil/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$vigil/status"; }

echo "==> Sampling vigil (pid $vigil) for ${DURATION}s"
start_ticks=$(cpu_ticks)
samples=()
for ((i = 0; i < DURATION; i++)); do
    sleep 1
    samples+=("$(rss_kib)")
done
end_ticks=$(cpu_ticks)
peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$vigil/status")
# Of the resident memory: the heap and stacks (anonymous) and the binary's and
# libraries' pages (file-backed: clean, shared, reclaimable under pressure).
anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$vigil/status")
file=$(awk '/^RssFile:/ {print $2}' "/proc/$vigil/status")
checks=$(exec 3<>"/dev/tcp/${vigil_addr%:*}/${vigil_addr##*:}" && \
    printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && grep '^vigil_probe_checks_total' <&3 | tr '\n' ' ')
# Steady: the median of the second half of the samples.
steady=$(printf '%s\n' "${samples[@]:$((DURATION / 2))}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

awk -v peak="$peak" -v steady="$steady" -v t0="$start_ticks" -v t1="$end_ticks" \
    -v clk="$clk" -v dur="$DURATION" -v checks="$checks" -v anon="$anon" -v file="$file" 'BEGIN {
    cpu = (t1 - t0) / clk
    printf "duration          %d s, 4 probes, 1 scrape and 12 rules every 1 s\n", dur
    printf "checks run        %s\n", checks
    printf "peak RSS          %.1f MiB\n", peak / 1024
    printf "steady RSS        %.1f MiB (median of the second half)\n", steady / 1024
    printf "  of which        %.1f MiB anonymous (heap, stacks), %.1f MiB file-backed (the binary, libc)\n", anon / 1024, file / 1024
    printf "CPU               %.2f s = %.3f %% of one core\n", cpu, 100 * cpu / dur
}'
# Where the resident pages come from: files, the binary's sections, crates.
as_root python3 bench/pages.py "$vigil" "${TOP:-20}"
# The code's layout: whether the build's symbol ordering file still names its functions.
python3 bench/hot_functions.py --found link/hot-functions.txt "${VIGIL:-target/release/vigil}"
if [ "${PUBLISH:-0}" = 1 ]; then
    echo "EMF lines         $(wc -l <"$work/vigil.out") ($(wc -c <"$work/vigil.out") bytes) in ${DURATION} s"
fi
