"""Vigil against the Prometheus stack and the VictoriaMetrics stack, side by side in one run.

Run it through bench/compare/run.sh, which installs the Debian packages and builds the
release binaries first. On loopback and free ports, it starts throw-away targets —
PostgreSQL, Redis and the Watch Together server — and, for each cadence, three stacks
watching them with the repository's own rules (rules/critical.yaml and warning.yaml,
their `for:` set to 0s so that the figures are the pipelines', not the hold time each
stack would add alike):

  prometheus  Prometheus + Alertmanager + node, postgres, redis and blackbox exporters
  victoria    VictoriaMetrics single-node scraping its own four exporters + vmalert +
              Alertmanager
  vigil       Vigil probing the app, PostgreSQL, Redis and the disk, scraping the app

Every stack notifies a webhook receiver in this process, which timestamps arrivals.
Per cadence it measures each stack's resident memory (the sum over its processes, the
median of one sample a second) and CPU over a window, then kills Redis (SIGKILL) ROUNDS
times: kill to the CacheDown page, and Redis's return to the resolve, per stack.

The cadences run at once, each on its own targets (its own PostgreSQL, Redis and app)
and receiver, the second's stacks started once the first's footprint window is over: a
10 s round has to wait out Alertmanager's 5 minute group_interval, and the 1 s rounds
fit in those waits. The 10 s rounds run on two lanes, each lane a copy of the three
stacks on targets of its own, its rounds one after the other (a lane's first outage
meets fresh Alertmanager groups, its later ones the groups the earlier left); only the
first lane's footprint is measured, and the second lane starts once every footprint
window is over. Each stack's CPU is its own processes' (from /proc), so the other
stacks show only as contention for the two cores.

Before them, and alone (its CPU would disturb the rounds), a part evaluates
bench/rules_workload.py's 1 000 rules over 10 000 series on all three at once (10 s
scrape and evaluation): Prometheus's prometheus_rule_group_last_duration_seconds,
vmalert's vmalert_iteration_duration_seconds and Vigil's
vigil_rule_evaluation_duration_seconds.

Environment: QUICK=1 (a few minutes: 1 s cadence only, 2 rounds, 20 s windows, 60 s of
workload), ROUNDS (5 per cadence, split evenly over its lanes, rounded up: 6 at 10 s),
LANES ("10s=2": lanes per cadence, 1 where not named), WINDOW (60 s), CADENCES
("10s 1s"), WORKLOAD_SECONDS (180),
PARTS ("paging workload"), VIGIL and APP (the release binaries), KEEP=1 (keep the work
directory: every process's log and configuration, the Alertmanagers' at debug level,
which logs each flush of a group).
"""

import http.server
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from paging import Postgres, Redis, free_port, wait_port  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
ROUNDS = int(os.environ.get("ROUNDS", "2" if QUICK else "5"))
WINDOW = int(os.environ.get("WINDOW", "20" if QUICK else "60"))
CADENCES = os.environ.get("CADENCES", "1s" if QUICK else "10s 1s").split()
LANES = {c: int(n) for c, n in (pair.split("=") for pair in os.environ.get("LANES", "10s=2").split())}
WORKLOAD_SECONDS = int(os.environ.get("WORKLOAD_SECONDS", "60" if QUICK else "180"))
PARTS = os.environ.get("PARTS", "paging workload").split()
KEEP = os.environ.get("KEEP") == "1"
VIGIL = os.path.abspath(os.environ.get("VIGIL", os.path.join(ROOT, "target/release/vigil")))
APP = os.path.abspath(os.environ.get("APP", os.path.join(ROOT, "target/release/watch-together")))
STACKS = ("prometheus", "victoria", "vigil")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, flush=True)


# Every Processes of the run, and every target's stop: what main stops at the end, also
# when a cadence's thread failed or a SIGTERM came. Once STOPPING is set, nothing more
# starts: a cadence's thread that would start a process raises instead.
STARTED = []
STOPPING = threading.Event()


def seconds(duration):
    return float(duration[:-2]) / 1000 if duration.endswith("ms") else float(duration[:-1])


# ------------------------------------------------------------------ processes


class Processes:
    """Every process this run starts, by stack; stopped by PID, also on failure."""

    def __init__(self, work):
        self.work = work
        self.by_stack = {}
        self.lock = threading.Lock()
        STARTED.append(self)

    def start(self, stack, name, argv, env=None, port=None):
        logfile = open(os.path.join(self.work, f"{stack}-{name}.log"), "wb")
        with self.lock:
            if STOPPING.is_set():
                raise SystemExit(f"not starting {stack}/{name}: the run is stopping")
            proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, **(env or {})), cwd=self.work)
            self.by_stack.setdefault(stack, []).append((name, proc))
        if port is not None:
            try:
                wait_port(port, 60)
            except SystemExit:
                raise SystemExit(f"{stack}/{name} did not listen on {port}; its log: {logfile.name}")
        return proc

    def pids(self, stack):
        return [p.pid for _, p in self.by_stack.get(stack, [])]

    def check_alive(self):
        for stack, procs in self.by_stack.items():
            for name, p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"{stack}/{name} exited with {p.returncode}; "
                                     f"its log: {os.path.join(self.work, f'{stack}-{name}.log')}")

    def stop(self, stack=None):
        with self.lock:
            self._stop(stack)

    def _stop(self, stack):
        stacks = [stack] if stack else list(self.by_stack)
        for s in stacks:
            for _, p in self.by_stack.get(s, []):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for _, p in self.by_stack.pop(s, []):
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def footprint(processes, window):
    """Each stack's median summed RSS (MiB) and CPU (% of one core) over `window` s."""
    cpu0 = {s: sum(cpu_seconds(p) for p in processes.pids(s)) for s in STACKS}
    t0 = time.monotonic()
    samples = {s: [] for s in STACKS}
    while time.monotonic() - t0 < window:
        for s in STACKS:
            samples[s].append(sum(rss_kib(p) for p in processes.pids(s)) / 1024)
        time.sleep(1)
    elapsed = time.monotonic() - t0
    processes.check_alive()
    return {s: (statistics.median(samples[s]),
                100 * (sum(cpu_seconds(p) for p in processes.pids(s)) - cpu0[s]) / elapsed,
                len(processes.pids(s))) for s in STACKS}


# ------------------------------------------------------------------ the receiver


class Sink:
    """One webhook receiver for every stack: POST /<stack> with an Alertmanager
    payload; each arrival is kept with its monotonic time."""

    def __init__(self):
        self.events = []  # (monotonic, stack, [(alertname, status)])
        self.cond = threading.Condition()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                try:
                    payload = json.loads(body)
                    alerts = payload if isinstance(payload, list) else payload.get("alerts", [])
                    seen = [(a.get("labels", {}).get("alertname"), a.get("status", "firing")) for a in alerts]
                except ValueError:
                    seen = []
                with sink.cond:
                    sink.events.append((now, self.path.strip("/").split("/")[0], seen))
                    sink.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, stacks, since, alertname, status, timeout):
        """The first arrival after `since` per stack saying `alertname` is `status`."""
        found = {}
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, stack, seen in self.events:
                    if stack in stacks and stack not in found and t > since and (alertname, status) in seen:
                        found[stack] = t
                if len(found) == len(stacks) or time.monotonic() >= deadline:
                    return found
                self.cond.wait(min(1.0, max(0.01, deadline - time.monotonic())))


# ------------------------------------------------------------------ configuration

BRIDGE = """groups:
  # What Vigil measures itself, from the exporters' series (Prometheus and vmalert only).
  - name: bridge
    rules:
      # As Vigil and df count it: used / (used + available to users), root's reserve left out.
      - record: vigil_disk_used_ratio
        expr: >-
          (node_filesystem_size_bytes{mountpoint="/"} - node_filesystem_free_bytes{mountpoint="/"})
          / (node_filesystem_size_bytes{mountpoint="/"} - node_filesystem_free_bytes{mountpoint="/"}
             + node_filesystem_avail_bytes{mountpoint="/"})
      - record: vigil_postgres_longest_query_seconds
        expr: max(pg_stat_activity_max_tx_duration)
"""


def rename(source, target, probe=None):
    """metric_relabel_configs turning an exporter's series into the one Vigil's rules read."""
    rules = []
    if probe:
        rules.append({"source_labels": ["__name__"], "regex": source, "target_label": "probe", "replacement": probe})
    rules.append({"source_labels": ["__name__"], "regex": source, "target_label": "__name__", "replacement": target})
    return rules


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def shipped_rules(work):
    """rules/critical.yaml and warning.yaml with every `for:` at 0s."""
    paths = []
    for name in ("critical.yaml", "warning.yaml"):
        with open(os.path.join(ROOT, "rules", name)) as f:
            text = re.sub(r"(?m)^(\s+for:\s*)\S+", r"\g<1>0s", f.read())
        paths.append(write(os.path.join(work, name), text))
    return paths


def start_exporters(processes, stack, targets):
    """node, postgres, redis and blackbox exporters for one stack: its scrape configs."""
    ports = {k: free_port() for k in ("node", "postgres", "redis", "blackbox")}
    work = processes.work
    processes.start(stack, "node-exporter", ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ports['node']}"],
                    port=ports["node"])
    processes.start(stack, "postgres-exporter", ["prometheus-postgres-exporter",
                                                 f"--web.listen-address=127.0.0.1:{ports['postgres']}"],
                    env={"DATA_SOURCE_NAME": f"postgresql://postgres@127.0.0.1:{targets['pg']}/postgres?sslmode=disable"},
                    port=ports["postgres"])
    processes.start(stack, "redis-exporter", ["prometheus-redis-exporter", f"--redis.addr=redis://127.0.0.1:{targets['redis']}",
                                              f"--web.listen-address=127.0.0.1:{ports['redis']}"], port=ports["redis"])
    blackbox = write(os.path.join(work, f"{stack}-blackbox.yml"),
                     "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    processes.start(stack, "blackbox-exporter", ["prometheus-blackbox-exporter", f"--config.file={blackbox}",
                                                 f"--web.listen-address=127.0.0.1:{ports['blackbox']}"], port=ports["blackbox"])
    return [
        {"job_name": "app", "static_configs": [{"targets": [targets["app"]]}]},
        {"job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
         "static_configs": [{"targets": [f"http://{targets['app']}/api/health"]}],
         "relabel_configs": [
             {"source_labels": ["__address__"], "target_label": "__param_target"},
             {"source_labels": ["__param_target"], "target_label": "instance"},
             {"target_label": "__address__", "replacement": f"127.0.0.1:{ports['blackbox']}"}],
         "metric_relabel_configs": rename("probe_success", "vigil_probe_success", "app")
         + rename("probe_duration_seconds", "vigil_probe_duration_seconds", "app")},
        {"job_name": "postgres", "static_configs": [{"targets": [f"127.0.0.1:{ports['postgres']}"]}],
         "metric_relabel_configs": rename("pg_up", "vigil_probe_success", "database")},
        {"job_name": "redis", "static_configs": [{"targets": [f"127.0.0.1:{ports['redis']}"]}],
         "metric_relabel_configs": rename("redis_up", "vigil_probe_success", "cache")
         + rename("redis_keyspace_(hits|misses)_total", "vigil_redis_keyspace_${1}_total")},
        {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{ports['node']}"]}]},
    ]


def alertmanager(processes, stack, sink, cadence):
    """An Alertmanager sending to the sink, one group per alert as Vigil's routing has
    it (with no group_by, whatever fires all along — CacheHitRatioLow on an idle cache,
    its `for:` at 0s — holds every new alert of the one group to the next
    group_interval); its default timers at 10 s (group_wait 30s, group_interval 5m),
    group_wait 0s and group_interval 1s at 1 s."""
    port = free_port()
    route = "" if cadence != "1s" else "  group_wait: 0s\n  group_interval: 1s\n"
    config = write(os.path.join(processes.work, f"{stack}-alertmanager.yml"), f"""route:
  receiver: sink
  group_by: ['...']
{route}receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:{sink.port}/{stack}
        send_resolved: true
""")
    processes.start(stack, "alertmanager", ["prometheus-alertmanager", f"--config.file={config}",
                                            f"--storage.path={processes.work}/{stack}-am-data-{cadence}",
                                            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                            f"--log.level={'debug' if KEEP else 'warn'}"], port=port)
    return port


def group_interval_seconds(cadence):
    """Vigil's and Alertmanager's group_interval at this cadence."""
    return 1.0 if cadence == "1s" else 300.0


def timeout_for(cadence):
    return "900ms" if cadence == "1s" else "2s"


def start_prometheus(processes, targets, sink, cadence, rules):
    scrape = start_exporters(processes, "prometheus", targets)
    am = alertmanager(processes, "prometheus", sink, cadence)
    config = {
        "global": {"scrape_interval": cadence, "evaluation_interval": cadence,
                   "scrape_timeout": "900ms" if cadence == "1s" else "10s"},
        "rule_files": rules,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]},
        "scrape_configs": scrape,
    }
    path = write(os.path.join(processes.work, "prometheus.yml"), json.dumps(config, indent=1))
    port = run_prometheus(processes, path, f"{processes.work}/prometheus-data-{cadence}")
    return {"prometheus": port, "alertmanager": am}


def run_prometheus(processes, config, data):
    port = free_port()
    processes.start("prometheus", "prometheus", ["prometheus", f"--config.file={config}",
                                                 f"--storage.tsdb.path={data}",
                                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], port=port)
    return port


def run_victoria(processes, scrape_config, data, *flags):
    port = free_port()
    processes.start("victoria", "victoria-metrics", ["victoria-metrics", f"-promscrape.config={scrape_config}",
                                                     f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                                                     "-retentionPeriod=1d", "-loggerLevel=WARN", *flags], port=port)
    return port


def run_vmalert(processes, rules, vm, notifier, cadence, *flags):
    port = free_port()
    processes.start("victoria", "vmalert", ["vmalert", *[f"-rule={r}" for r in rules],
                                            f"-datasource.url=http://127.0.0.1:{vm}",
                                            f"-notifier.url=http://127.0.0.1:{notifier}",
                                            f"-evaluationInterval={cadence}", f"-httpListenAddr=127.0.0.1:{port}",
                                            "-loggerLevel=WARN", *flags], port=port)
    return port


def run_vigil(processes, config, port):
    processes.start("vigil", "vigil", [VIGIL, "run", "--log-format", "json", "--config", config],
                    env={"RUST_LOG": "warn"}, port=port)


def latency_offset(cadence):
    """VictoriaMetrics hides the last -search.latencyOffset (30 s by default) of samples
    from queries, vmalert's included: kept at 10 s, set to the cadence at 1 s, as
    anyone running it at 1 s would."""
    return [] if cadence != "1s" else [f"-search.latencyOffset={cadence}"]


def start_victoria(processes, targets, sink, cadence, rules):
    scrape = start_exporters(processes, "victoria", targets)
    am = alertmanager(processes, "victoria", sink, cadence)
    config = {"global": {"scrape_interval": cadence, "scrape_timeout": "900ms" if cadence == "1s" else "10s"},
              "scrape_configs": scrape}
    path = write(os.path.join(processes.work, "victoria-scrape.yml"), json.dumps(config, indent=1))
    vm = run_victoria(processes, path, f"{processes.work}/victoria-data-{cadence}", *latency_offset(cadence))
    # the bridge's recording rules are written back to VictoriaMetrics
    vmalert = run_vmalert(processes, rules, vm, am, cadence, f"-remoteWrite.url=http://127.0.0.1:{vm}")
    return {"victoria-metrics": vm, "vmalert": vmalert, "alertmanager": am}


def start_vigil(processes, targets, sink, cadence, rules):
    port = free_port()
    work = processes.work
    group_interval = "1s" if cadence == "1s" else "5m"  # at 10 s, the shipped routing's
    routing = write(os.path.join(work, "vigil-routing.yaml"), f"""receivers:
  - name: sink
    webhook:
      url: http://127.0.0.1:{sink.port}/vigil
route:
  receiver: sink
  group_by: ['...']
  group_wait: 0s
  group_interval: {group_interval}
  repeat_interval: 4h
""")
    config = write(os.path.join(work, "vigil.yaml"), f"""listen: 127.0.0.1:{port}
state_dir: vigil-state-{cadence}
environment: bench
defaults:
  interval: {cadence}
  timeout: {timeout_for(cadence)}
rule_files: [{", ".join(rules)}]
evaluation_interval: {cadence}
routing: {routing}
scrape:
  - job: app
    url: http://{targets['app']}/metrics
    interval: {cadence}
probes:
  - name: app
    http:
      url: http://{targets['app']}/api/health
  - name: database
    postgres:
      dsn: postgres://postgres@127.0.0.1:{targets['pg']}/postgres
  - name: cache
    redis:
      url: redis://127.0.0.1:{targets['redis']}/0
  - name: disk
    disk:
      paths: [/]
""")
    run_vigil(processes, config, port)
    return {"vigil": port}


# ------------------------------------------------------------------ reading /metrics


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def values(text, prefix):
    """(labels, value) of every sample whose line starts with `prefix`."""
    out = []
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            name_labels, _, value = line.rpartition(" ")
            out.append((name_labels, float(value)))
    return out


def get_json(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError) as e:
        return f"{path}: {e}"


def labels_of(alert):
    labels = alert.get("labels", {})
    return labels if isinstance(labels, dict) else dict(labels)


def holdings(apis, alertname):
    """What a silent stack's parts hold of `alertname`: the rule evaluator's alerts (state,
    active since) and Alertmanager's (state, starts, ends, updated), to say which part
    kept the page."""
    out = []
    for part, port in apis.items():
        if part in ("prometheus", "vmalert"):
            body = get_json(port, "/api/v1/alerts")
            alerts = body.get("data", {}).get("alerts", []) if isinstance(body, dict) else body
            if isinstance(alerts, list):
                alerts = [f"{a.get('state')} since {a.get('activeAt')}" for a in alerts
                          if labels_of(a).get("alertname") == alertname]
            out.append(f"{part}: {alerts or 'no alert'}")
        elif part == "alertmanager":
            body = get_json(port, f"/api/v2/alerts?filter=alertname%3D%22{alertname}%22")
            if isinstance(body, list):
                body = [f"{a.get('status', {}).get('state')} {a.get('startsAt')}..{a.get('endsAt')} "
                        f"updated {a.get('updatedAt')}" for a in body]
            # its API leaves out what has ended: received and resolved, or never received
            out.append(f"alertmanager: {body or 'nothing unresolved'}")
        elif part == "victoria-metrics":
            body = get_json(port, "/api/v1/query?query=vigil_probe_success%7Bprobe%3D%22cache%22%7D")
            if isinstance(body, dict):
                body = [r.get("value") for r in body.get("data", {}).get("result", [])]
            out.append(f"victoria-metrics: cache probe {body}")
        elif part == "vigil":
            body = get_json(port, "/api/alerts")
            if isinstance(body, dict):
                body = [f"{a.get('state')} active {a.get('active_at')} fired {a.get('fired_at')} "
                        f"resolved {a.get('resolved_at')}" for a in body.get("alerts", [])
                        if labels_of(a).get("alertname") == alertname]
            out.append(f"vigil: {body or 'no alert'}")
    return "; ".join(out)


# ------------------------------------------------------------------ part 1


def fmt_s(xs, rounds):
    """Median (min-max) of the arrivals, and how many of the `rounds` had none."""
    missing = f"none in {rounds - len(xs)} of {rounds} rounds" if len(xs) < rounds else ""
    if not xs:
        return missing or "none arrived"
    return f"{statistics.median(xs):.3f} s ({min(xs):.3f}-{max(xs):.3f})" + (f"; {missing}" if missing else "")


def start_targets(work):
    """Throw-away PostgreSQL, Redis and the app for one cadence: (targets, redis)."""
    pg = Postgres(work, free_port())
    STARTED.append(pg)
    pg.start()
    redis = Redis(work, free_port())
    STARTED.append(redis)
    redis.start()
    app_port = free_port()
    Processes(work).start("target", "app", [APP], env={
        "PORT": str(app_port), "BIND_LOCALHOST": "1", "LOG_FORMAT": "json",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pg.port}/postgres",
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}, port=app_port)
    return {"pg": pg.port, "redis": redis.port, "app": f"127.0.0.1:{app_port}"}, redis


class Lane:
    """One copy of the three stacks of a cadence, on targets of its own, and its rounds."""

    def __init__(self, cadence, number, rounds, measure):
        self.cadence, self.number, self.rounds, self.measure = cadence, number, rounds, measure
        self.name = cadence if number == 1 else f"{cadence}-lane{number}"  # its directory
        self.label = cadence if LANES.get(cadence, 1) == 1 else f"{cadence} lane {number}"
        self.measured = threading.Event()  # its footprint window is over (or not to be taken)
        self.result = None  # (footprint or None, pages, resolves), or what it failed with


def lanes():
    """Every cadence's lanes, in the order they start: each cadence's first lane, whose
    footprint is measured, then the others once every footprint window is over."""
    first, rest = [], []
    for cadence in CADENCES:
        n = LANES.get(cadence, 1)
        per_lane = -(-ROUNDS // n)  # rounded up: at least ROUNDS in all
        first.append(Lane(cadence, 1, per_lane, True))
        rest += [Lane(cadence, i, per_lane, False) for i in range(2, n + 1)]
    return first + rest


def paging(work, lane, after):
    """One lane on its own targets and receiver: the footprint (when it is the lane to
    measure), then its rounds of outages. Its stacks start once `after` (an Event, or
    None) is set; `lane.measured` is set when its footprint window is over."""
    cadence, label = lane.cadence, lane.label
    work = os.path.join(work, lane.name)  # each lane's configurations, data and logs
    os.makedirs(work)
    os.chmod(work, 0o777)
    processes = Processes(work)
    interval = seconds(cadence)
    try:
        targets, redis = start_targets(work)
        sink = Sink()
        if after:
            after.wait()
        if STOPPING.is_set():
            raise SystemExit(f"{label}: the run is stopping")
        started = time.monotonic()
        rules = shipped_rules(work)
        bridge = write(os.path.join(work, "bridge.yaml"), BRIDGE)
        apis = {"prometheus": start_prometheus(processes, targets, sink, cadence, rules + [bridge]),
                "victoria": start_victoria(processes, targets, sink, cadence, rules + [bridge]),
                "vigil": start_vigil(processes, targets, sink, cadence, rules)}
        warmup = max(30, 6 * interval)
        log(f"==> {label}: the three stacks started; {warmup:.0f} s of warm-up"
            + (f", then {WINDOW} s measured" if lane.measure else ""))
        time.sleep(warmup)
        with sink.cond:
            for s in STACKS:
                firing = sorted({a for t, stack, seen in sink.events
                                 if stack == s and t > started for a, st in seen if st == "firing"})
                log(f"    {label}: {s} has notified, before any kill: {', '.join(firing) or 'nothing'}")
        fp = footprint(processes, WINDOW) if lane.measure else None
        lane.measured.set()
        log(f"==> {label}: {'footprint measured; ' if lane.measure else ''}{lane.rounds} rounds")
        pages = {s: [] for s in STACKS}
        resolves = {s: [] for s in STACKS}
        t0 = None
        for i in range(lane.rounds):
            # A new outage, not a flap: the last kill at least a group interval ago (5 min
            # at 10 s, where Vigil's and Alertmanager's routes would hold a re-fire back).
            if t0 is not None:
                time.sleep(max(0.0, t0 + group_interval_seconds(cadence) + 1 - time.monotonic()))
            time.sleep(random.random() * interval)  # a random phase against every tick
            t0 = time.monotonic()
            redis.kill()
            got = sink.wait(STACKS, t0, "CacheDown", "firing", 120 + 10 * interval)
            for s in STACKS:
                if s not in got:  # asked now, while Redis is still down
                    log(f"    {label}: {s} has not paged; what it holds: {holdings(apis[s], 'CacheDown')}")
            time.sleep(1.0 + random.random())
            t2 = time.monotonic()  # Redis's return: its start-up counts, as in bench/paging.py
            if STOPPING.is_set():
                raise SystemExit(f"{label}: the run is stopping")
            redis.start()
            # a stack that never paged has nothing to resolve: not waited for
            back = sink.wait([s for s in STACKS if s in got], t2, "CacheDown", "resolved", 420 + 10 * interval)
            line = []
            for s in STACKS:
                if s in got:
                    pages[s].append(got[s] - t0)
                if s in back:
                    resolves[s].append(back[s] - t2)
                line.append(f"{s} page {got[s] - t0:.3f} s" if s in got else f"{s} page none")
                line.append(f"resolve {back[s] - t2:.3f} s" if s in back else "resolve none")
            log(f"  {label} round {i + 1}: " + ", ".join(line))
            for s in STACKS:
                if s in got and s not in back:
                    log(f"    {label}: {s} has not resolved; what it holds: {holdings(apis[s], 'CacheDown')}")
            processes.check_alive()
            time.sleep(2 * interval)  # every stack sees Redis up before the next kill
        return fp, pages, resolves
    finally:
        lane.measured.set()  # a lane that failed holds no other back
        processes.stop()


def median(xs):
    return statistics.median(xs) if xs else None


def ratio(theirs, ours, better, worse):
    """'12.3x better' when theirs is the larger, '2.0x worse' when ours is."""
    if not theirs or not ours:
        return "-"
    return f"{theirs / ours:.1f}x {better}" if theirs >= ours else f"{ours / theirs:.1f}x {worse}"


def paging_table(cadence, fp, pages, resolves, rounds, n_lanes):
    title = ("10 s scrape and evaluation, each tool's default timers (Alertmanager's group_wait 30s, "
             "group_interval 5m), one group per alert" if cadence == "10s"
             else f"{cadence} scrape and evaluation, group_wait 0s (group_interval 1s; VictoriaMetrics's "
                  f"-search.latencyOffset {cadence})")
    v_mem, v_cpu, _ = fp["vigil"]
    lines = [f"### {title}", "",
             f"{rounds} rounds" + (f", on {n_lanes} lanes (the footprint from the first)" if n_lanes > 1 else "")
             + ".", "",
             "| stack | processes | resident memory | CPU (% of one core) | Redis killed -> page | Redis back -> resolve |",
             "| --- | --- | --- | --- | --- | --- |"]
    names = {"prometheus": "Prometheus + Alertmanager + 4 exporters",
             "victoria": "VictoriaMetrics + vmalert + Alertmanager + 4 exporters", "vigil": "Vigil"}
    for s in STACKS:
        mem, cpu, n = fp[s]
        lines.append(f"| {names[s]} | {n} | {mem:.1f} MiB | {cpu:.2f} % | {fmt_s(pages[s], rounds)} | "
                     f"{fmt_s(resolves[s], rounds)} |")
    lines.append("")
    for s in ("prometheus", "victoria"):
        mem, cpu, _ = fp[s]
        lines.append(f"Vigil against {names[s]}: {ratio(mem, v_mem, 'less memory', 'more memory')}, "
                     f"{ratio(cpu, v_cpu, 'less CPU', 'more CPU')}, "
                     f"page {ratio(median(pages[s]), median(pages['vigil']), 'sooner', 'later')}, "
                     f"resolve {ratio(median(resolves[s]), median(resolves['vigil']), 'sooner', 'later')} (medians).")
    return "\n".join(lines)


# ------------------------------------------------------------------ part 2


def workload(work):
    """bench/rules_workload.py's rules, target and configurations, in their own directory."""
    here = os.path.join(work, "workload")
    os.makedirs(here)
    processes = Processes(here)
    target, vigil = free_port(), free_port()
    subprocess.run([sys.executable, os.path.join(BENCH, "rules_workload.py"), "configs", here, str(target), str(vigil)],
                   check=True)
    rules = os.path.join(here, "rules.yaml")
    try:
        processes.start("target", "workload", [sys.executable, os.path.join(BENCH, "rules_workload.py"), "serve",
                                               str(target)], port=target)
        prom = run_prometheus(processes, os.path.join(here, "prometheus.yml"), os.path.join(here, "prometheus-data"))
        path = write(os.path.join(here, "victoria.yml"), json.dumps(
            {"global": {"scrape_interval": "10s"},
             "scrape_configs": [{"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}]}))
        vm = run_victoria(processes, path, os.path.join(here, "victoria-data"))
        sink = Sink()  # vmalert needs somewhere to send; nothing reads it here
        # Only changes are sent, inside its iteration; the other two send nothing here.
        vmalert = run_vmalert(processes, [rules], vm, sink.port, "10s", "-rule.resendDelay=24h")
        run_vigil(processes, os.path.join(here, "vigil.yaml"), vigil)
        half = WORKLOAD_SECONDS // 2
        log(f"==> the rule workload: 1 000 rules over 10 000 series, every 10 s, {WORKLOAD_SECONDS} s "
            f"(the second half measured)")
        time.sleep(half)
        cpu0 = {s: sum(cpu_seconds(p) for p in processes.pids(s)) for s in STACKS}
        t0 = time.monotonic()
        took = {s: [] for s in STACKS}
        last = None
        mem = {s: [] for s in STACKS}
        for _ in range(max(1, half // 10)):
            time.sleep(10)
            processes.check_alive()
            took["vigil"] += [v for _, v in values(scrape(vigil), "vigil_rule_evaluation_duration_seconds")][:1]
            took["prometheus"] += [v for _, v in values(scrape(prom), "prometheus_rule_group_last_duration_seconds")][:1]
            # vmalert's is a summary per group: this round's iterations from its sum and count.
            text = scrape(vmalert)
            total = (sum(v for _, v in values(text, "vmalert_iteration_duration_seconds_sum")),
                     sum(v for _, v in values(text, "vmalert_iteration_duration_seconds_count")))
            if last and total[1] > last[1]:
                took["victoria"].append((total[0] - last[0]) / (total[1] - last[1]))
            last = total
            for s in STACKS:
                mem[s].append(sum(rss_kib(p) for p in processes.pids(s)) / 1024)
        elapsed = time.monotonic() - t0
        cpu = {s: 100 * (sum(cpu_seconds(p) for p in processes.pids(s)) - cpu0[s]) / elapsed for s in STACKS}
        series = values(scrape(vigil), "vigil_store_series")
        return took, {s: statistics.median(mem[s]) for s in STACKS}, cpu, series[0][1] if series else 0
    finally:
        processes.stop()


def workload_table(took, mem, cpu, series):
    names = {"prometheus": "Prometheus", "victoria": "VictoriaMetrics + vmalert", "vigil": "Vigil"}
    v = statistics.median(took["vigil"]) if took["vigil"] else float("nan")
    lines = ["### 1 000 alerting rules over 10 000 series, 10 s scrape and evaluation", "",
             f"Series in Vigil's store: {series:.0f}.", "",
             "| evaluator | one evaluation of all rules, median (min-max) | per rule | Vigil faster by | "
             "resident memory | CPU (% of one core) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in STACKS:
        xs = took[s]
        if not xs:
            lines.append(f"| {names[s]} | no figure | | | {mem[s]:.1f} MiB | {cpu[s]:.2f} % |")
            continue
        m = statistics.median(xs)
        lines.append(f"| {names[s]} | {1000 * m:.1f} ms ({1000 * min(xs):.1f}-{1000 * max(xs):.1f}) | "
                     f"{m:.3f} ms | {'' if s == 'vigil' else ratio(m, v, 'faster', 'slower')} | {mem[s]:.1f} MiB | {cpu[s]:.2f} % |")
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def versions():
    out = []
    for argv in (["prometheus", "--version"], ["prometheus-alertmanager", "--version"],
                 ["prometheus-node-exporter", "--version"], ["prometheus-postgres-exporter", "--version"],
                 ["prometheus-blackbox-exporter", "--version"], [VIGIL, "--version"]):
        r = subprocess.run(argv, capture_output=True, text=True)
        first = (r.stdout + r.stderr).strip().splitlines()
        out.append(first[0] if first else f"{argv[0]}: no version printed")
    # Debian's redis exporter and VictoriaMetrics print no version of their own.
    pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "prometheus-redis-exporter",
                          "victoria-metrics"], capture_output=True, text=True).stdout.strip().splitlines()
    return out + pkg


def main():
    # A SIGTERM (a CI timeout, a kill) unwinds through every `finally`: nothing is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="vigil-compare-")
    os.chmod(work, 0o777)
    log(f"==> {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores; work in {work}")
    for v in versions():
        log(f"    {v}")
    results = []
    try:
        # The rule workload first and alone: its CPU would disturb the rounds' timing.
        if "workload" in PARTS:
            table = workload_table(*workload(work))
            log(table)
            results.append(table)
        if "paging" in PARTS:
            all_lanes, threads, after = lanes(), [], None
            for lane in all_lanes:
                def part(lane=lane, after=after):
                    try:
                        lane.result = paging(work, lane, after)
                        log(f"==> {lane.label}: done")
                    except BaseException as e:  # told to main, which stops everything
                        lane.result = e
                        log(f"==> {lane.label} failed: {e}")

                threads.append(threading.Thread(target=part, daemon=True))
                threads[-1].start()
                after = lane.measured
            for t in threads:
                while t.is_alive() and not any(isinstance(l.result, BaseException) for l in all_lanes):
                    t.join(1)
                for lane in all_lanes:
                    if isinstance(lane.result, BaseException):
                        raise lane.result
            for cadence in CADENCES:
                mine = [lane for lane in all_lanes if lane.cadence == cadence]
                pages = {s: [x for lane in mine for x in lane.result[1][s]] for s in STACKS}
                resolves = {s: [x for lane in mine for x in lane.result[2][s]] for s in STACKS}
                table = paging_table(cadence, mine[0].result[0], pages, resolves,
                                     sum(lane.rounds for lane in mine), len(mine))
                log(table)
                results.append(table)
    finally:
        # Nothing starts from here on; a second SIGTERM does not cut the stopping short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOPPING.set()
        for started in reversed(list(STARTED)):
            started.stop()
    log("\n==> the tables, for bench/README.md\n")
    log("\n\n".join(results))
    if KEEP:
        log(f"==> every process's log kept in {work}")
    else:
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
