#!/usr/bin/env bash
# Builds the two images of the Dockerfile and runs them as the ECS task runs them,
# where no image registry can be reached (README.md, "Deploying"):
#
# - The bases are made locally:
#   - a Debian 12 root filesystem by debootstrap, from Debian's package archive,
#     cached under ~/.cache/vigil-images/ (VIGIL_IMAGE_CACHE), since CI runs in a
#     fresh clone;
#   - from it, a distroless-like runtime (glibc, libgcc, CA certificates, the nonroot
#     user 65532, no shell) as RUNTIME_IMAGE;
#   - a test-only image with PostgreSQL and Redis for the app to talk to.
# - The binaries are built outside (cargo, this checkout's target/) and reach the
#   runtime stages through the BINARIES build argument. The Rust builder stages are
#   not built here: Docker Hub's rust image cannot be pulled.
# - The task: app and vigil share one network namespace (as awsvpc does), on an
#   internal network of the test's own with the database and cache. Both run as uid
#   65532 with a read-only root filesystem; Vigil has a volume at its state
#   directory; the images' own HEALTHCHECKs (the binaries' `healthcheck`) are the
#   health checks.
# - What is checked:
#   - each container turns healthy;
#   - Vigil's /status reports app, postgres and redis up;
#   - its state is written to the volume;
#   - `docker stop` (SIGTERM, then SIGKILL after ECS's 30 s) finds each container
#     drained and exited 0.
#
#   scripts/test-images.sh            (PROFILE=release for release binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PROFILE=${PROFILE:-debug}
CACHE=${VIGIL_IMAGE_CACHE:-$HOME/.cache/vigil-images}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STOP_TIMEOUT=30 # ECS's stopTimeout default: SIGKILL 30 s after SIGTERM
RUN_ID=vigil-img-$$
DOCKER=${DOCKER:-docker}
mkdir -p "$CACHE"
# Scratch directories, removed at the end however it ends.
SCRATCH=$(mktemp -d)

# The Docker engine: Debian's docker.io (its dockerd has BuildKit built in), started
# here when none answers.
ensure_docker() {
    ensure_image_tools
    # Debian's client speaks to Debian's daemon; another docker earlier on PATH may
    # lack the BuildKit client this build needs.
    [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
    if ! "$DOCKER" info >/dev/null 2>&1; then
        echo "==> Starting dockerd (log in $CACHE/dockerd.log; stopped at the end)"
        mkdir -p "$CACHE"
        # Not through as_root (a function): $! must be dockerd's own pid, or sudo's,
        # which passes the signal on.
        if [ "$(id -u)" -eq 0 ]; then
            dockerd >"$CACHE/dockerd.log" 2>&1 &
        else
            sudo dockerd >"$CACHE/dockerd.log" 2>&1 &
        fi
        DOCKERD_PID=$!
        local i
        for i in $(seq 1 60); do
            "$DOCKER" info >/dev/null 2>&1 && return 0
            sleep 1
        done
        echo "error: dockerd did not answer within 60 s (see $CACHE/dockerd.log)" >&2
        exit 1
    fi
}

# A root filesystem of Debian 12 with the given extra packages, made once per name.
rootfs() {
    local name=$1 include=$2 dir="$CACHE/$1"
    if [ ! -f "$dir/.complete" ]; then
        echo "==> debootstrap $SUITE ($name: $include) into $dir" >&2
        as_root rm -rf "$dir"
        as_root debootstrap --variant=minbase --include="$include" "$SUITE" "$dir" "$MIRROR" >"$CACHE/$name.log" 2>&1 \
            || { tail -20 "$CACHE/$name.log" >&2; exit 1; }
        as_root touch "$dir/.complete"
    fi
    printf '%s\n' "$dir"
}

# The distroless-like runtime: what gcr.io/distroless/cc-debian12:nonroot holds that
# the binaries use (the loader, libc, libm, libgcc_s, the NSS modules, CA
# certificates, /etc/passwd with nonroot 65532, /tmp), taken from the Debian rootfs.
runtime_image() {
    local src=$1 out=$SCRATCH/runtime
    mkdir -p "$out/lib/x86_64-linux-gnu" "$out/lib64" "$out/etc/ssl/certs" "$out/tmp" "$out/home/nonroot"
    local lib
    for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1 \
        libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        cp -L "$src/lib/x86_64-linux-gnu/$lib" "$out/lib/x86_64-linux-gnu/"
    done
    ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$out/lib64/ld-linux-x86-64.so.2"
    cp -L "$src/etc/ssl/certs/ca-certificates.crt" "$out/etc/ssl/certs/"
    cp "$src/etc/nsswitch.conf" "$out/etc/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
    chmod 1777 "$out/tmp"
    # Root owns everything but /home/nonroot, as in distroless.
    tar -C "$out" --owner=0 --group=0 --exclude=./home/nonroot -c . >"$SCRATCH/runtime.tar"
    tar -C "$out" --owner=65532 --group=65532 -rf "$SCRATCH/runtime.tar" ./home/nonroot
    "$DOCKER" import -c 'USER 65532:65532' "$SCRATCH/runtime.tar" "$RUNTIME_IMAGE" >/dev/null
}

# The binaries, under /out as the builder stage leaves them.
binaries_image() {
    local out=$SCRATCH/binaries
    install -D -m 0755 "target/$PROFILE/watch-together" "$out/out/usr/local/bin/watch-together"
    install -D -m 0755 "target/$PROFILE/vigil" "$out/out/usr/local/bin/vigil"
    install -d -m 0700 "$out/out/var/lib/vigil"
    tar -C "$out" --owner=0 --group=0 -c out | "$DOCKER" import - "$BINARIES_IMAGE" >/dev/null
}

DOCKERD_PID=""
cleanup() {
    "$DOCKER" rm -f "$RUN_ID-vigil" "$RUN_ID-app" "$RUN_ID-deps" >/dev/null 2>&1 || true
    "$DOCKER" network rm "$RUN_ID" >/dev/null 2>&1 || true
    "$DOCKER" volume rm "$RUN_ID-state" >/dev/null 2>&1 || true
    "$DOCKER" rmi "$BINARIES_IMAGE" >/dev/null 2>&1 || true
    # Each run re-tags the runtime and the two test images: drop what it untagged.
    "$DOCKER" image prune -f >/dev/null 2>&1 || true
    rm -rf "$SCRATCH"
    # The daemon this script started (the images stay in its store for the next run).
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
}

fail() {
    echo "FAIL  $*" >&2
    local c
    for c in app vigil deps; do
        echo "---- $RUN_ID-$c's log (last 30 lines)" >&2
        "$DOCKER" logs --tail 30 "$RUN_ID-$c" >&2 2>&1 || true
    done
    exit 1
}

# wait_healthy CONTAINER: until Docker's health check (the image's HEALTHCHECK) says
# healthy; fails if it says unhealthy or the container exits.
wait_healthy() {
    local i state
    for i in $(seq 1 120); do
        state=$("$DOCKER" inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1") \
            || fail "cannot inspect $1"
        case "$state" in
            "running healthy") echo "ok    $1 is healthy (its image's health check)"; return 0 ;;
            *unhealthy) fail "$1 is unhealthy" ;;
            exited* | dead*) fail "$1 exited" ;;
        esac
        sleep 1
    done
    fail "$1 was not healthy within 120 s"
}

RUNTIME_IMAGE=vigil-local/cc-debian12:nonroot
BINARIES_IMAGE=vigil-local/binaries:$RUN_ID
DEPS_IMAGE=vigil-local/test-deps:$SUITE
trap cleanup EXIT
ensure_docker
cargo build -q $([ "$PROFILE" = release ] && echo --release) -p vigil -p watch-together

base=$(rootfs bookworm-minbase ca-certificates)
runtime_image "$base"
deps=$(rootfs bookworm-deps postgresql-15,redis-server)
if ! "$DOCKER" image inspect "$DEPS_IMAGE" >/dev/null 2>&1; then
    as_root tar -C "$deps" -c . | "$DOCKER" import - "$DEPS_IMAGE" >/dev/null
fi
binaries_image

echo "==> docker build (the runtime stages, from the local bases and binaries)"
for target in app vigil; do
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --target "$target" \
        --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" --build-arg BINARIES="$BINARIES_IMAGE" \
        --build-arg REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        -t "vigil-local/$target:test" . >/dev/null
    user=$("$DOCKER" image inspect -f '{{.Config.User}}' "vigil-local/$target:test")
    health=$("$DOCKER" image inspect -f '{{json .Config.Healthcheck.Test}}' "vigil-local/$target:test")
    [ "$user" = 65532:65532 ] || fail "$target runs as '$user', not 65532:65532"
    case "$target" in
        app) [ "$health" = '["CMD","/usr/local/bin/watch-together","healthcheck"]' ] || fail "app's health check is $health" ;;
        vigil) [ "$health" = '["CMD","/usr/local/bin/vigil","healthcheck"]' ] || fail "vigil's health check is $health" ;;
    esac
    echo "ok    $target: built, user 65532:65532, health check $health"
done

echo "==> The task, on an internal network of its own"
"$DOCKER" network create --internal "$RUN_ID" >/dev/null
"$DOCKER" volume create "$RUN_ID-state" >/dev/null
# The database and the cache (test-only: on the internal network, nothing published).
"$DOCKER" run -d --name "$RUN_ID-deps" --network "$RUN_ID" --network-alias deps "$DEPS_IMAGE" sh -c '
    set -e
    install -d -o postgres -g postgres /tmp/pg
    su postgres -c "/usr/lib/postgresql/15/bin/initdb -D /tmp/pg -A trust -U postgres >/dev/null"
    su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D /tmp/pg -o \"-c listen_addresses=* -k /tmp\" -w start >/dev/null"
    echo "host all all 0.0.0.0/0 trust" >> /tmp/pg/pg_hba.conf
    su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D /tmp/pg reload >/dev/null"
    su postgres -c "psql -h /tmp -c \"CREATE DATABASE watch_together\" >/dev/null"
    exec redis-server --bind 0.0.0.0 --protected-mode no --save "" --appendonly no' >/dev/null

# The app runs its migrations at start and exits when it cannot (ECS would replace
# the task): start it once both answer.
for i in $(seq 1 60); do
    "$DOCKER" exec "$RUN_ID-deps" sh -c 'psql -h 127.0.0.1 -U postgres -d watch_together -c "SELECT 1" && redis-cli ping' \
        >/dev/null 2>&1 && break
    [ "$i" -lt 60 ] || fail "PostgreSQL and Redis did not answer within 60 s"
    sleep 1
done

DATABASE_URL=postgres://postgres@deps:5432/watch_together
REDIS_URL=redis://deps:6379/0
# The app as its container definition runs it; its own HEALTHCHECK, checked every 2 s.
"$DOCKER" run -d --name "$RUN_ID-app" --network "$RUN_ID" --read-only --user 65532:65532 \
    --health-interval 2s --health-start-period 60s \
    -e LOG_FORMAT=json -e PORT=3000 -e DATABASE_URL="$DATABASE_URL" -e REDIS_URL="$REDIS_URL" \
    vigil-local/app:test >/dev/null
# Vigil in the app's network namespace (awsvpc: 127.0.0.1 is the task's), its state on
# a volume. No AWS is reachable: it publishes EMF lines, and pages stay in its outbox.
"$DOCKER" run -d --name "$RUN_ID-vigil" --network "container:$RUN_ID-app" --read-only --user 65532:65532 \
    --health-interval 2s --health-start-period 30s \
    -v "$RUN_ID-state:/var/lib/vigil" \
    -e APP_URL=http://127.0.0.1:3000 -e JOURNEY_URL=http://127.0.0.1:3000 -e AWS_REGION=us-west-2 \
    -e AWS_ACCESS_KEY_ID=testing -e AWS_SECRET_ACCESS_KEY=testing \
    -e LOG_FORMAT=json -e VIGIL_ENVIRONMENT=dev -e VIGIL_PUBLISH_MODE=emf \
    -e VIGIL_SNS_CRITICAL_TOPIC_ARN=arn:aws:sns:us-west-2:123456789012:dev-critical \
    -e VIGIL_SNS_WARNING_TOPIC_ARN=arn:aws:sns:us-west-2:123456789012:dev-warning \
    -e VIGIL_HEARTBEAT_URL=http://127.0.0.1:9/heartbeat -e VIGIL_API_TOKEN=image-test-token \
    -e DATABASE_URL="$DATABASE_URL" -e REDIS_URL="$REDIS_URL" -e VIGIL_LEASE_REDIS_URL="$REDIS_URL" \
    vigil-local/vigil:test >/dev/null

wait_healthy "$RUN_ID-app"
wait_healthy "$RUN_ID-vigil"

# /status, read as on-call reads it inside the task: `vigil status` in the container.
# Every probe the image's config carries must be up, the journey through the app's
# WebSockets too.
want='["app","app-cache","app-database","cache","database","disk","journey"]'
ok=0
for i in $(seq 1 90); do
    out=$("$DOCKER" exec "$RUN_ID-vigil" /usr/local/bin/vigil status --json 2>&1 || true)
    up=$(jq -c '[.components[] | select(.status == "ok") | .name] | sort' <<<"$out" 2>/dev/null || true)
    if [ "$up" = "$want" ]; then
        ok=1
        break
    fi
    sleep 1
done
[ "$ok" = 1 ] || fail "/status did not report $want up; it reports $up: $out"
echo "ok    /status answers, with every probe up: $up"

# The state directory, on the volume and owned by the runtime user.
state=$("$DOCKER" run --rm -v "$RUN_ID-state:/s" "$DEPS_IMAGE" sh -c 'stat -c "%u:%g" /s; ls -A /s | head -5')
[ "$(head -1 <<<"$state")" = 65532:65532 ] || fail "the state volume is owned by $(head -1 <<<"$state")"
[ "$(wc -l <<<"$state")" -gt 1 ] || fail "Vigil wrote nothing to its state volume"
echo "ok    state on the volume, owned by 65532: $(tail -n +2 <<<"$state" | tr '\n' ' ')"

# SIGTERM, as ECS stops a task: each container drains and exits 0 before the SIGKILL.
for c in vigil app; do
    "$DOCKER" stop -t "$STOP_TIMEOUT" "$RUN_ID-$c" >/dev/null
    code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$RUN_ID-$c")
    [ "$code" = 0 ] || fail "$c exited $code on SIGTERM (137 is the SIGKILL after ${STOP_TIMEOUT}s)"
    echo "ok    $c drained on SIGTERM and exited 0"
done
echo "==> The images build from local bases and run as the task runs them"
