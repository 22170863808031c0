"""Time from killing Redis to the SNS publish, and from its return to the resolve.

Vigil probes Redis every second (rule `for: 0s`, as a 1 s Prometheus setup would
be) and pages through moto_server's SNS; this script kills redis-server with
SIGKILL, polls moto every 2 ms until the ALARM is there, restarts Redis, and polls
until the OK is there. Prints each round and the medians.

Run: bench/paging.sh (builds Vigil, installs moto, then runs this with the venv).
"""

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
    moto_port, redis_port, vigil_port = free_port(), free_port(), free_port()
    procs = []

    def start_redis():
        p = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(redis_port)
        return p

    try:
        procs.append(subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(moto_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(moto_port)
        auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=x"
        post(f"http://127.0.0.1:{moto_port}/", "Action=CreateTopic&Name=critical&Version=2010-03-31",
             {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})
        arn = "arn:aws:sns:us-east-1:123456789012:critical"
        redis = start_redis()
        with open(os.path.join(work, "rules.yaml"), "w") as f:
            f.write("""groups:
  - name: critical
    rules:
      - alert: CacheDown
        expr: vigil_probe_success{probe="cache"} == 0
        labels: {severity: critical, component: cache}
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
  - name: cache
    interval: 1s
    timeout: 500ms
    redis:
      url: redis://127.0.0.1:{redis_port}/0
""")
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto_port}", AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
        procs.append(subprocess.Popen([VIGIL, "run", "--log-format", "json", "--config",
                                       os.path.join(work, "vigil.yaml")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "vigil.log"), "w")))
        wait_port(vigil_port)
        time.sleep(4)  # warm-up: the first probe and evaluation
        pages, resolves = [], []
        for i in range(ROUNDS):
            n = len(sns_messages(moto_port, arn))
            time.sleep(random.random())  # a random phase against the probe's ticks
            t0 = time.monotonic()
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            t1 = wait_for_count(moto_port, arn, n + 1)
            time.sleep(1.5 + random.random())  # an outage of one or two probe intervals
            t2 = time.monotonic()
            redis = start_redis()
            t3 = wait_for_count(moto_port, arn, n + 2)
            pages.append(t1 - t0)
            resolves.append(t3 - t2)
            print(f"round {i + 1}: page {t1 - t0:.3f} s, resolve {t3 - t2:.3f} s", flush=True)
            time.sleep(1.5)
        print(f"page:    median {statistics.median(pages):.3f} s (min {min(pages):.3f}, max {max(pages):.3f})")
        print(f"resolve: median {statistics.median(resolves):.3f} s (min {min(resolves):.3f}, max {max(resolves):.3f})")
        print(f"messages: {len(sns_messages(moto_port, arn))} for {ROUNDS} rounds (expected {2 * ROUNDS})")
        redis.kill()
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
