# What bench/footprint.sh and bench/status.sh run Vigil against, sourced by them
# (after scripts/lib.sh): throw-away PostgreSQL and Redis on free ports, the app, and a
# Vigil config probing all of them and a disk every second, scraping the app's
# /metrics and evaluating the shipped rules every second.
#
#   start_targets DIR    # sets pg_port, redis_port, app and pids; writes DIR/vigil.yaml;
#                        # at exit stops everything in pids and removes DIR
start_targets() {
    targets_dir=$1
    chmod 755 "$targets_dir"
    pg_port=$(free_port)
    redis_port=$(free_port)
    pids=()
    trap stop_targets EXIT

    start_postgres "$targets_dir/pg" "$pg_port"
    start_redis "$redis_port" "$targets_dir/redis"
    pids+=("$REDIS_PID")

    PORT=0 BIND_LOCALHOST=1 LOG_FORMAT=json \
        DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres" \
        REDIS_URL="redis://127.0.0.1:$redis_port/0" \
        target/release/watch-together >"$targets_dir/app.log" 2>&1 &
    pids+=($!)
    app=$(listening_addr "$targets_dir/app.log" 60)

    cat >"$targets_dir/vigil.yaml" <<YAML
listen: 127.0.0.1:0
state_dir: state
defaults:
  interval: 1s
  timeout: 900ms
rule_files: [$(pwd)/rules/critical.yaml, $(pwd)/rules/warning.yaml]
evaluation_interval: 1s
scrape:
  - job: app
    url: http://$app/metrics
    interval: 1s
probes:
  - name: app
    http:
      url: http://$app/api/health
  - name: database
    postgres:
      dsn: postgres://postgres@127.0.0.1:$pg_port/postgres
  - name: cache
    redis:
      url: redis://127.0.0.1:$redis_port/0
  - name: disk
    disk:
      paths: [/]
YAML
}

# add_publishing FILE: adds to a config written by start_targets what the shipped
# config publishes, every 10 s, as EMF lines on stdout (the same aggregation and queue
# as PutMetricData, without needing an AWS), and the recording rules it reads.
add_publishing() {
    {
        echo "publish:"
        echo "  cloudwatch:"
        echo "    mode: emf"
        echo "    interval: 10s"
        sed -n '/^    metrics:/,$p' vigil.example.yaml
    } >>"$1"
    sed -i 's|^rule_files: \[\(.*\)\]|rule_files: [\1, '"$(pwd)"'/rules/recording.yaml]|' "$1"
}

# Stops what start_targets started (and whatever else is in pids), removes its directory.
stop_targets() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_postgres "$targets_dir/pg"
    rm -rf "$targets_dir"
}
