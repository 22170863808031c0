# Shared by scripts/dev-start.sh, scripts/test.sh and bench/*.sh: install what is
# missing, and start throw-away PostgreSQL and Redis servers. Source it; do not run it.

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The directory holding initdb and pg_ctl (Debian keeps them off PATH), or nothing.
pg_bin_dir() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# install_debs PACKAGE...: installs the named Debian packages (none: nothing to do).
install_debs() {
    [ $# -gt 0 ] || return 0
    echo "==> Installing $* (Debian packages)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

# Installs the Debian packages the tests and the local run need, when missing.
ensure_packages() {
    local missing=()
    [ -n "$(pg_bin_dir)" ] && [ -x "$(pg_bin_dir)/initdb" ] || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    # promtool, the reference the rule tests and the PromQL corpus are checked against.
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    # jq, for scripts/deploy.sh (and its tests).
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    install_debs "${missing[@]}"
}

# The image tests (scripts/test-images.sh): Debian's docker.io (dockerd with BuildKit
# built in) and debootstrap, which makes their base images.
ensure_image_tools() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    install_debs "${missing[@]}"
}

# The browser tests (tests/browser.rs): Debian's chromium (headless), Node.js, and
# playwright-core from npm into tests/browser/node_modules, pinned by its lock file.
ensure_browser() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    install_debs "${missing[@]}"
    if [ ! -d tests/browser/node_modules/playwright-core ] \
        || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
        echo "==> Installing playwright-core into tests/browser/node_modules (npm ci)"
        (cd tests/browser && npm ci --no-audit --no-fund --silent)
    fi
}

# Creates the Python venv under .venv/ (ignored by git) for the tools later checks use.
ensure_venv() {
    if [ ! -x .venv/bin/python ]; then
        echo "==> Creating the Python venv in .venv/"
        if ! python3 -m venv .venv 2>/dev/null; then
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv
            python3 -m venv .venv
        fi
        .venv/bin/python -m pip install -q --upgrade pip
    fi
}

# The local AWS: moto_server (PyPI moto[server]) in the venv. Tests start their own
# on free ports; dev-start.sh starts one for the laptop.
MOTO_VERSION=5.2.5
# cbor2 for scripts/cw-adapter.py, which puts CloudWatch's CBOR protocol in front of moto.
CBOR2_VERSION=6.3.0
# The AWS CLI, which scripts/deploy.sh drives (and its tests, against moto).
AWSCLI_VERSION=1.46.3
ensure_moto() {
    ensure_venv
    if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/aws ] \
        || ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION' or m.version('cbor2') != '$CBOR2_VERSION' or m.version('awscli') != '$AWSCLI_VERSION')" 2>/dev/null; then
        echo "==> Installing moto[server]==$MOTO_VERSION, cbor2==$CBOR2_VERSION and awscli==$AWSCLI_VERSION into .venv/"
        .venv/bin/python -m pip install -q "moto[server]==$MOTO_VERSION" "cbor2==$CBOR2_VERSION" "awscli==$AWSCLI_VERSION"
    fi
}

# Starts the CloudWatch CBOR adapter on 127.0.0.1:$1 in front of the moto at port $2
# (log in $3); sets CW_ADAPTER_PID.
start_cw_adapter() {
    .venv/bin/python scripts/cw-adapter.py --port "$1" --upstream "http://127.0.0.1:$2" >"$3" 2>&1 &
    CW_ADAPTER_PID=$!
    wait_port "$1" 30 "the CloudWatch adapter"
}

# Starts moto_server on 127.0.0.1:$1 (log in $2); sets MOTO_PID.
start_moto() {
    .venv/bin/moto_server -H 127.0.0.1 -p "$1" >"$2" 2>&1 &
    MOTO_PID=$!
    wait_port "$1" 60 moto_server
}

# Creates SNS topic $2 in region $3 on the moto at port $1 and prints its ARN.
moto_create_topic() {
    curl -sf -X POST "http://127.0.0.1:$1/" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/$3/sns/aws4_request, SignedHeaders=host, Signature=x" \
        --data "Action=CreateTopic&Name=$2&Version=2010-03-31" >/dev/null
    echo "arn:aws:sns:$3:123456789012:$2"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits until 127.0.0.1:$1 accepts connections, up to $2 seconds; names it $3 on failure.
wait_port() {
    local port=$1 seconds=$2 what=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        port_open "$port" && return 0
        sleep 0.1
    done
    echo "error: $what did not start listening on port $port within ${seconds}s" >&2
    return 1
}

# A TCP port nothing listens on.
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        port_open "$p" || { echo "$p"; return; }
    done
}

# Runs a PostgreSQL binary, as the postgres user when we are root (PostgreSQL
# refuses to run as root).
pg_run() {
    local bin
    bin="$(pg_bin_dir)/$1"; shift
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$bin" "$@"; else "$bin" "$@"; fi
}

# Starts a PostgreSQL server with its data in $1 on port $2 (initdb first if needed),
# trust authentication, listening on 127.0.0.1 only.
start_postgres() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; chmod 0700 "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        pg_run initdb -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    fi
    pg_run pg_ctl -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    wait_port "$port" 30 PostgreSQL
}

# Stops the PostgreSQL server whose data lives in $1.
stop_postgres() {
    pg_run pg_ctl -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Starts a throw-away redis-server on port $1 in directory $2 as a child of this
# shell; sets REDIS_PID.
start_redis() {
    local port=$1 dir=$2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port "$port" 30 Redis
}

# Reads the address from the first JSON "Listening." log line in file $1, waiting up
# to $2 seconds.
listening_addr() {
    local file=$1 seconds=$2 i addr
    for ((i = 0; i < seconds * 10; i++)); do
        addr=$(grep -m1 '"message":"Listening."' "$file" 2>/dev/null | sed -E 's/.*"addr":"([^"]+)".*/\1/')
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        sleep 0.1
    done
    echo "error: no Listening. line in $file after ${seconds}s:" >&2
    tail -n 20 "$file" >&2
    return 1
}
