"""Time from killing Redis or PostgreSQL to the SNS publish, and from its return to
the resolve.

Vigil probes the target every INTERVAL (default 1s; rule `for: 0s`, as a Prometheus
setup at that interval would be) and pages through moto_server's SNS; this script
kills the server (redis-server with SIGKILL, PostgreSQL with `pg_ctl stop -m
immediate`, a crash's SIGQUIT), polls moto every 2 ms until the ALARM is there,
restarts it, and polls until the OK is there. Prints each round and the medians.
TARGET=redis (default) or postgres; ROUNDS (default 15).

Run: bench/paging.sh (builds Vigil, installs moto, then runs this with the venv).
"""

import glob
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "15"))
VIGIL = os.environ.get("VIGIL", "target/release/vigil")
MOTO = os.environ.get("MOTO", ".venv/bin/moto_server")
INTERVAL = os.environ.get("INTERVAL", "1s")
TARGET = os.environ.get("TARGET", "redis")
PG_BIN = os.environ.get("PG_BIN") or sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]


def seconds(duration):
    """`500ms`, `1s`, `10s` as seconds."""
    return float(duration[:-2]) / 1000 if duration.endswith("ms") else float(duration[:-1])


class Redis:
    """A throw-away redis-server; kill() is SIGKILL."""

    probe = "cache"

    def __init__(self, work, port):
        self.port, self.proc = port, None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc:
            self.proc.kill()

    def spec(self):
        return f"redis:\n      url: redis://127.0.0.1:{self.port}/0"


class Postgres:
    """A throw-away cluster; kill() is `pg_ctl stop -m immediate`, as a crash."""

    probe = "database"

    def __init__(self, work, port):
        self.port, self.data = port, os.path.join(work, "pg")
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        self.runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.runas:
            os.chmod(work, 0o777)
        subprocess.run([*self.runas, f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres",
                        "--auth=trust"], check=True, stdout=subprocess.DEVNULL)

    def pg_ctl(self, *args, check=True):
        return subprocess.run([*self.runas, f"{PG_BIN}/pg_ctl", "-D", self.data, "-s", *args],
                              check=check, stdout=subprocess.DEVNULL,
                              stderr=None if check else subprocess.DEVNULL)

    def start(self):
        while self.pg_ctl("status", check=False).returncode == 0:  # the stop is under way
            time.sleep(0.01)
        self.pg_ctl("-w", "-l", os.path.join(self.data, "server.log"), "-o",
                    f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")
        wait_port(self.port)

    def kill(self):
        # -W: pg_ctl's own wait polls every 100 ms, which the measurement would include.
        self.pg_ctl("-W", "-m", "immediate", "stop")

    def stop(self):
        self.pg_ctl("-m", "immediate", "stop", check=False)

    def spec(self):
        return f"postgres:\n      dsn: postgres://postgres@127.0.0.1:{self.port}/postgres"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def post(url, data, headers):
    req = urllib.request.Request(url, data=data.encode(), headers=headers, method="POST")
    return urllib.request.urlopen(req, timeout=10).read()


def sns_messages(moto_port, arn):
    data = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/moto-api/data.json", timeout=10).read())
    for t in data["sns"]["Topic"]:
        if t["arn"] == arn:
            return t["sent_notifications"]
    return []


def wait_for_count(moto_port, arn, n):
    while True:
        if len(sns_messages(moto_port, arn)) >= n:
            return time.monotonic()
        time.sleep(0.002)


def main():
    work = tempfile.mkdtemp(prefix="vigil-bench-paging-")
    moto_port, target_port, vigil_port = free_port(), free_port(), free_port()
    target = {"redis": Redis, "postgres": Postgres}[TARGET](work, target_port)
    interval = seconds(INTERVAL)
    procs = []

    try:
        procs.append(subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port)
        auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=x"
        post(f"http://127.0.0.1:{moto_port}/", "Action=CreateTopic&Name=critical&Version=2010-03-31",
             {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
        arn = "arn:aws:sns:us-east-1:123456789012:critical"
        target.start()
        with open(os.path.join(work, "rules.yaml"), "w") as f:
            f.write("""groups:
  - name: critical
    rules:
      - alert: ComponentDown
        expr: vigil_probe_success == 0
        labels: {severity: critical}
""")
        # group_interval 1s: every round is a new incident of the same alert; the
        # shipped 5m damps only a re-fire within 5 minutes of the previous page.
        with open(os.path.join(work, "routing.yaml"), "w") as f:
            f.write(f"""receivers:
  - name: critical
    sns: {{topic_arn: {arn}}}
route:
  receiver: critical
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
""")
        with open(os.path.join(work, "vigil.yaml"), "w") as f:
            f.write(f"""listen: 127.0.0.1:{vigil_port}
state_dir: state
environment: bench
rule_files: [rules.yaml]
routing: routing.yaml
evaluation_interval: 1s
probes:
  - name: {target.probe}
    interval: {INTERVAL}
    timeout: 500ms
    {target.spec()}
""")
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}", AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
        procs.append(subprocess.Popen([VIGIL, "run", "--log-format", "json", "--config",
                                       os.path.join(work, "vigil.yaml")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vigil.log"), "w")))
        wait_port(vigil_port)
        time.sleep(4)  # warm-up: the first probe (within 1 s) and evaluation
        pages, resolves = [], []
        print(f"{TARGET} probed every {INTERVAL}, {ROUNDS} rounds", flush=True)
        for i in range(ROUNDS):
            n = len(sns_messages(moto_port, arn))
            time.sleep(random.random() * interval)  # a random phase against the probe's ticks
            t0 = time.monotonic()
            target.kill()
            t1 = wait_for_count(moto_port, arn, n + 1)
            time.sleep(1.5 + random.random())  # an outage of a second or two
            t2 = time.monotonic()
            target.start()
            t3 = wait_for_count(moto_port, arn, n + 2)
            pages.append(t1 - t0)
            resolves.append(t3 - t2)
            print(f"round {i + 1}: page {t1 - t0:.3f} s, resolve {t3 - t2:.3f} s", flush=True)
            time.sleep(1.5)
        print(f"page:    median {statistics.median(pages):.3f} s (min {min(pages):.3f}, max {max(pages):.3f})")
        print(f"resolve: median {statistics.median(resolves):.3f} s (min {min(resolves):.3f}, max {max(resolves):.3f})")
        print(f"messages: {len(sns_messages(moto_port, arn))} for {ROUNDS} rounds (expected {2 * ROUNDS})")
    finally:
        target.stop()
        for p in procs:
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
