#!/usr/bin/env bash
# Rule evaluation, Vigil against Prometheus in the same run: 1 000 alerting rules
# (400 error-ratio, 300 threshold, 200 histogram-quantile, 100 up/absent) over 10 000
# series scraped every 10 s from the same target (bench/rules_workload.py). Both
# evaluate every 10 s; the script reads Vigil's vigil_rule_evaluation_duration_seconds
# and Prometheus's prometheus_rule_group_last_duration_seconds after each round in the
# second half of the run and prints medians, their ratio, and each process's memory
# and CPU.
#
#   bench/rules.sh               # DURATION=180 by default
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${DURATION:-180}

ensure_packages
command -v prometheus >/dev/null || { as_root apt-get install -y -qq prometheus; }
echo "==> Building the release binary"
cargo build -q --release -p vigil

work=$(mktemp -d /tmp/vigil-rules-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

target_port=$(free_port)
prom_port=$(free_port)
python3 bench/rules_workload.py configs "$work" "$target_port" 0
python3 bench/rules_workload.py serve "$target_port" &
pids+=($!)
wait_port "$target_port" 30 "the workload target"

target/release/vigil run --config "$work/vigil.yaml" --log-format json >"$work/vigil.log" 2>&1 &
vigil=$!
pids+=("$vigil")
vigil_addr=$(listening_addr "$work/vigil.log" 30)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom=$!
pids+=("$prom")
wait_port "$prom_port" 60 Prometheus

metric() { # host:port name-prefix -> first value
    local addr=$1 name=$2 page
    page=$(exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" && printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3) || true
    awk -v n="$name" 'index($0, n) == 1 && !done {print $NF; done = 1}' <<<"$page"
}
cpu_seconds() { awk -v clk="$(getconf CLK_TCK)" '{print ($14 + $15) / clk}' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

echo "==> Running both for ${DURATION}s"
half=$((DURATION / 2))
sleep "$half"
v_cpu0=$(cpu_seconds "$vigil"); p_cpu0=$(cpu_seconds "$prom")
v=(); p=()
for ((i = 0; i < half / 10; i++)); do
    sleep 10
    v+=("$(metric "$vigil_addr" vigil_rule_evaluation_duration_seconds)")
    p+=("$(metric "127.0.0.1:$prom_port" 'prometheus_rule_group_last_duration_seconds{rule_group=')")
done
v_cpu1=$(cpu_seconds "$vigil"); p_cpu1=$(cpu_seconds "$prom")
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
vm=$(median "${v[@]}"); pm=$(median "${p[@]}")
series=$(metric "$vigil_addr" vigil_store_series)
alerts=$(metric "$vigil_addr" 'vigil_alerts{state="firing"}')
echo "samples (s)       vigil: ${v[*]}"
echo "                  prometheus: ${p[*]}"
awk -v vm="$vm" -v pm="$pm" -v series="$series" -v alerts="$alerts" \
    -v vr="$(rss_mib "$vigil")" -v pr="$(rss_mib "$prom")" \
    -v v0="$v_cpu0" -v v1="$v_cpu1" -v p0="$p_cpu0" -v p1="$p_cpu1" -v t="$half" 'BEGIN {
    vc = v1 - v0; pc = p1 - p0
    printf "series in the store     %d (firing alerts: %d)\n", series, alerts
    printf "one evaluation of 1000 rules, median:  vigil %.1f ms   prometheus %.1f ms   ratio %.1fx\n", vm * 1000, pm * 1000, pm / vm
    printf "per rule:                              vigil %.3f ms  prometheus %.3f ms\n", vm, pm
    printf "resident memory:                       vigil %.1f MiB  prometheus %.1f MiB\n", vr, pr
    printf "CPU over the last %ds:                 vigil %.2f %%   prometheus %.2f %% of one core\n", t, 100 * vc / t, 100 * pc / t
}'
