#!/usr/bin/env python3
"""Writes 90 days of per-minute history (the format of src/history/minutes.rs) and an
incident log into a Vigil state directory, so that bench/status.sh measures /status
with a full history behind it.

    bench/seed_history.py STATE_DIR COMPONENT...
"""
import datetime
import json
import os
import random
import struct
import sys
import time
import zlib

DAYS = 90


def record(minute, checks, failures, down_ms, known_ms, lat):
    head = struct.pack("<IHHHH4f", minute, checks, failures, down_ms, known_ms, *lat)
    return head + struct.pack("<I", zlib.crc32(head))


def main():
    state, components = sys.argv[1], sys.argv[2:]
    rng = random.Random(15)
    now_min = int(time.time()) // 60
    today = now_min // 1440
    for c in components:
        d = os.path.join(state, "history", "minutes", f"p-{c}")
        os.makedirs(d, exist_ok=True)
        for day in range(today - DAYS + 1, today + 1):
            date = datetime.date.fromtimestamp(day * 86400).isoformat()
            end = min((day + 1) * 1440, now_min)
            with open(os.path.join(d, f"{date}.bin"), "wb") as f:
                for m in range(day * 1440, end):
                    down = 60_000 if rng.random() < 0.001 else 0
                    p50 = rng.uniform(0.5, 3.0)
                    f.write(record(m, 60, 60 if down else 0, down, 60_000,
                                   (p50 * 0.5, p50, p50 * 3, p50 * 10)))
    inc = os.path.join(state, "history", "incidents")
    os.makedirs(inc, exist_ok=True)
    for i in range(100):
        at = time.time() - rng.uniform(0, DAYS * 86400)
        t = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
        r = t + datetime.timedelta(minutes=rng.uniform(1, 30))
        alarm = f"bench-CacheDown-{i:08x}"
        lines = [
            {"at": t.isoformat(), "alarm": alarm, "event": "fired", "alertname": "CacheDown",
             "severity": "critical", "summary": "Redis does not answer"},
            {"at": t.isoformat(), "alarm": alarm, "event": "page", "target": "critical/sns",
             "firing": True, "delivered": True},
            {"at": r.isoformat(), "alarm": alarm, "event": "resolved"},
            {"at": r.isoformat(), "alarm": alarm, "event": "page", "target": "critical/sns",
             "firing": False, "delivered": True},
        ]
        path = os.path.join(inc, f"{t.date().isoformat()}.jsonl")
        with open(path, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")


main()
