#!/usr/bin/env python3
"""The rule-evaluation workload of bench/rules.sh, for Vigil and Prometheus alike.

  rules_workload.py rules FILE     writes 1 000 alerting rules in one group:
                                   400 error-ratio, 300 threshold, 200 histogram-quantile,
                                   100 up/absent
  rules_workload.py serve PORT     serves /metrics with 10 000 series whose counters grow
                                   at every scrape (100 services x (20 request counters +
                                   60 latency buckets) + 2 000 gauges)
  rules_workload.py configs DIR TARGET_PORT VIGIL_PORT
                                   writes DIR/rules.yaml, and DIR/vigil.yaml and
                                   DIR/prometheus.yml scraping the target and evaluating
                                   those rules every 10 s (VIGIL_PORT 0: any free port)
"""
import http.server
import random
import sys
import threading

SERVICES = 100
ROUTES = [f"/r{i}" for i in range(5)]
CODES = ["200", "404", "500", "503"]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2", "2.5", "5", "+Inf"]
GAUGES = 2000


def write_rules(path):
    rules = []
    for i in range(400):
        s = f"s{i % SERVICES}"
        rules.append((f"ErrorRatio{i}",
                      f'sum(rate(app_requests_total{{svc="{s}",code=~"5.."}}[5m])) / sum(rate(app_requests_total{{svc="{s}"}}[5m])) > 0.05'))
    for i in range(300):
        rules.append((f"Threshold{i}", f'app_gauge{{g="g{i % GAUGES}"}} > 0.{(i % 9) + 1}'))
    for i in range(200):
        s = f"s{i % SERVICES}"
        rules.append((f"Latency{i}",
                      f'histogram_quantile(0.95, sum by (le) (rate(app_latency_seconds_bucket{{svc="{s}"}}[5m]))) > 2'))
    for i in range(100):
        if i % 2:
            rules.append((f"Up{i}", 'up{job="bench"} == 0'))
        else:
            rules.append((f"Absent{i}", f'absent(app_gauge{{g="missing{i}"}})'))
    with open(path, "w") as f:
        f.write("groups:\n  - name: bench\n    rules:\n")
        for name, expr in rules:
            f.write(f"      - alert: {name}\n        expr: '{expr}'\n        for: 1m\n        labels:\n          severity: warning\n")


def write_configs(directory, target_port, vigil_port):
    write_rules(f"{directory}/rules.yaml")
    with open(f"{directory}/vigil.yaml", "w") as f:
        f.write(f"""listen: 127.0.0.1:{vigil_port}
state_dir: vigil-state
rule_files: [rules.yaml]
evaluation_interval: 10s
store:
  retention: 10m
  max_series: 50000
scrape:
  - job: bench
    url: http://127.0.0.1:{target_port}/metrics
    interval: 10s
probes:
  - name: target
    interval: 10s
    tcp:
      address: 127.0.0.1:{target_port}
""")
    with open(f"{directory}/prometheus.yml", "w") as f:
        f.write(f"""global:
  scrape_interval: 10s
  evaluation_interval: 10s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: bench
    static_configs:
      - targets: ['127.0.0.1:{target_port}']
""")


class State:
    lock = threading.Lock()
    scrapes = 0


def page():
    with State.lock:
        State.scrapes += 1
        n = State.scrapes
    rnd = random.Random(n)
    out = []
    for s in range(SERVICES):
        for r in ROUTES:
            for c in CODES:
                rate = 100 if c == "200" else (7 if s % 10 == 0 else 2)
                out.append(f'app_requests_total{{svc="s{s}",route="{r}",code="{c}"}} {n * rate}')
            for i, le in enumerate(BUCKETS):
                out.append(f'app_latency_seconds_bucket{{svc="s{s}",route="{r}",le="{le}"}} {n * (10 * (i + 1))}')
    for g in range(GAUGES):
        out.append(f'app_gauge{{g="g{g}"}} {rnd.random():.4f}')
    return ("\n".join(out) + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = page()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if sys.argv[1] == "rules":
        write_rules(sys.argv[2])
    elif sys.argv[1] == "configs":
        write_configs(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
