#!/usr/bin/env bash
# Runs the whole thing on this machine: PostgreSQL and Redis (the ones already
# answering on their ports, or our own under .dev/), the Watch Together server and
# Vigil watching it. Prints where /status is; Ctrl-C stops what this script started.
#
# Settings (environment): PG_PORT (5432), REDIS_PORT (6379), APP_PORT (3000),
# VIGIL_PORT (9464), MOTO_PORT (4566, the local AWS), SINK_PORT (4567, the webhook
# sink), CW_PORT (4568, CloudWatch's CBOR protocol in front of moto), DATABASE_URL
# and REDIS_URL (derived from the ports), VIGIL_API_TOKEN (for silences; a random
# one is made and printed when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
APP_PORT=${APP_PORT:-3000}
VIGIL_PORT=${VIGIL_PORT:-9464}
MOTO_PORT=${MOTO_PORT:-4566}
SINK_PORT=${SINK_PORT:-4567}
CW_PORT=${CW_PORT:-4568}
DEV=$(pwd)/.dev
mkdir -p "$DEV"

ensure_packages
ensure_moto

started_pg=""
pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "==> Stopping what dev-start started"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$started_pg" ]; then stop_postgres "$DEV/postgres"; fi
}
trap cleanup EXIT INT TERM

for port in "$APP_PORT" "$VIGIL_PORT" "$MOTO_PORT" "$SINK_PORT" "$CW_PORT"; do
    if port_open "$port"; then
        echo "error: port $port is taken; stop what uses it or set APP_PORT / VIGIL_PORT / MOTO_PORT / SINK_PORT / CW_PORT" >&2
        exit 1
    fi
done

if port_open "$PG_PORT"; then
    echo "==> Using the PostgreSQL already answering on port $PG_PORT"
else
    echo "==> Starting PostgreSQL on port $PG_PORT (data in .dev/postgres)"
    start_postgres "$DEV/postgres" "$PG_PORT"
    started_pg=1
fi
if port_open "$REDIS_PORT"; then
    echo "==> Using the Redis already answering on port $REDIS_PORT"
else
    echo "==> Starting Redis on port $REDIS_PORT (in .dev/redis, nothing persisted)"
    start_redis "$REDIS_PORT" "$DEV/redis"
    pids+=("$REDIS_PID")
fi

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:$PG_PORT/watch_together}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
if ! psql "${DATABASE_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'watch_together'" | grep -q 1; then
    echo "==> Creating the database watch_together"
    psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE watch_together"
fi

echo "==> Starting the local AWS (moto_server) on port $MOTO_PORT (log: .dev/moto.log)"
start_moto "$MOTO_PORT" "$DEV/moto.log"
pids+=("$MOTO_PID")
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_EC2_METADATA_DISABLED=true
echo "==> Starting the CloudWatch adapter on port $CW_PORT (log: .dev/cw-adapter.log)"
start_cw_adapter "$CW_PORT" "$MOTO_PORT" "$DEV/cw-adapter.log"
pids+=("$CW_ADAPTER_PID")
export AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:$CW_PORT AWS_REGION=${AWS_REGION:-us-east-1}
VIGIL_SNS_CRITICAL_TOPIC_ARN=$(moto_create_topic "$MOTO_PORT" vigil-critical us-east-1)
VIGIL_SNS_WARNING_TOPIC_ARN=$(moto_create_topic "$MOTO_PORT" vigil-warning us-east-1)
export VIGIL_SNS_CRITICAL_TOPIC_ARN VIGIL_SNS_WARNING_TOPIC_ARN

echo "==> Starting the webhook sink for the Watchdog's heartbeat on port $SINK_PORT (log: .dev/webhooks.log)"
.venv/bin/python scripts/webhook-sink.py "$SINK_PORT" >"$DEV/webhooks.log" 2>&1 &
pids+=($!)
wait_port "$SINK_PORT" 30 "the webhook sink"
export VIGIL_HEARTBEAT_URL=http://127.0.0.1:$SINK_PORT/heartbeat
export VIGIL_LEASE_REDIS_URL=$REDIS_URL
export VIGIL_API_TOKEN=${VIGIL_API_TOKEN:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}

echo "==> Building the app and Vigil"
cargo build -q -p watch-together -p vigil

echo "==> Pushing the dashboards to the local CloudWatch"
target/debug/vigil dashboards push --env dev --region "$AWS_REGION" --account-id 123456789012 | sed 's/^/    /'

echo "==> Starting the Watch Together server on port $APP_PORT (log: .dev/app.log)"
PORT=$APP_PORT BIND_LOCALHOST=1 LOG_FORMAT=json target/debug/watch-together >"$DEV/app.log" 2>&1 &
pids+=($!)
wait_port "$APP_PORT" 60 "the Watch Together server" || { tail -n 20 "$DEV/app.log"; exit 1; }

echo "==> Starting Vigil on port $VIGIL_PORT (log: .dev/vigil.log)"
APP_URL=http://127.0.0.1:$APP_PORT VIGIL_LISTEN=127.0.0.1:$VIGIL_PORT \
    target/debug/vigil run --config vigil.example.yaml --log-format json >"$DEV/vigil.log" 2>&1 &
pids+=($!)
wait_port "$VIGIL_PORT" 60 Vigil || { tail -n 20 "$DEV/vigil.log"; exit 1; }

cat <<MSG

  Vigil /status:  http://127.0.0.1:$VIGIL_PORT/status   (JSON; a browser gets HTML)
                  http://127.0.0.1:$VIGIL_PORT/status?format=text
                  target/debug/vigil status --url http://127.0.0.1:$VIGIL_PORT
  Vigil metrics:  http://127.0.0.1:$VIGIL_PORT/metrics
  The app:        http://127.0.0.1:$APP_PORT/api/health  (and /metrics)
  Pages (SNS):    curl -s http://127.0.0.1:$MOTO_PORT/moto-api/data.json   (sns.Topic[].sent_notifications)
  Heartbeats:     .dev/webhooks.log
  CloudWatch:     every 60 s into namespace PlexWatchTogether; /status says when it last
                  published, .dev/cw-adapter.log lists every PutMetricData call
  Silences:       VIGIL_API_TOKEN=$VIGIL_API_TOKEN target/debug/vigil silence list --url http://127.0.0.1:$VIGIL_PORT

  Ctrl-C stops everything this script started.
MSG
# Stop everything when either process dies, and say which.
wait -n "${pids[@]}" || true
echo "==> A process stopped (Ctrl-C, or a crash: see .dev/app.log and .dev/vigil.log)" >&2
