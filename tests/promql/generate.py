#!/usr/bin/env python3
"""Writes the PromQL and template corpus's answers from promtool.

    .venv/bin/python tests/promql/generate.py [--check] [tests/promql/src/NAME.yaml ...]

Each source under tests/promql/src/ is a promtool unit-test file whose
promql_expr_test entries have no exp_samples and whose alert_rule_test entries
have no exp_alerts. This script runs `promtool test rules` on it, reads what
promtool answered (its failure report prints every result it got), and writes
tests/promql/NAME.yaml with those answers as the expectations. scripts/test.sh
then runs the written files through promtool (they must pass: the answers are
its own) and through `vigil test rules` (they must pass: Vigil answers the same).
With --check it writes nothing and fails when a written file is not what its
source gives now (a source edited without regenerating).

promtool 2.42 compares sample values exactly, so NaN never equals NaN: a source
expression whose answer holds a NaN is refused here; write it so that the NaN is
seen another way (`x != x`, `count(...)`, `... == bool ...`).
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def go_unquote(s, i):
    """Reads a Go-quoted string starting at s[i] == '"'; returns (text, next index)."""
    assert s[i] == '"', s[i:]
    out = []
    i += 1
    while s[i] != '"':
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\",
                      "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
            if n in simple:
                out.append(simple[n])
                i += 2
            elif n == "x":
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
            elif n == "u":
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
            elif n == "U":
                out.append(chr(int(s[i + 2:i + 10], 16)))
                i += 10
            else:
                raise ValueError(f"unknown escape \\{n} in {s!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out), i + 1


def read_labels(s, i):
    """Reads `{a="1", b="2"}` at s[i]; returns (dict, next index)."""
    assert s[i] == "{", s[i:]
    i += 1
    labels = {}
    while s[i] != "}":
        m = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=').match(s, i)
        if not m:
            raise ValueError(f"cannot read labels at {s[i:]!r}")
        value, i = go_unquote(s, m.end())
        labels[m.group(1)] = value
        if s.startswith(", ", i):
            i += 2
    return labels, i + 1


def series_text(labels):
    """A label set as promtool's exp_samples take it."""
    def q(v):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    name = labels.get("__name__")
    rest = ", ".join(f"{k}={q(v)}" for k, v in sorted(labels.items()) if k != "__name__")
    if name is not None:
        return f"{name}{{{rest}}}" if rest else name
    return "{" + rest + "}"


def read_samples(s):
    """Reads `{a="1"} 3E+00, {b="2"} NaN` into [(labels, float)]."""
    out = []
    i = 0
    while i < len(s):
        labels, i = read_labels(s, i)
        m = re.compile(r" (\S+?)(, |$)").match(s, i)
        if not m:
            raise ValueError(f"cannot read a value at {s[i:]!r}")
        out.append((labels, float(m.group(1))))
        i = m.end()
    return out


def duration_text(d):
    return d if isinstance(d, str) else f"{d}s"


def run_promtool(path):
    p = subprocess.run(["promtool", "test", "rules", path], capture_output=True, text=True)
    return p.stdout + p.stderr


def expr_answers(report):
    """{(expr, time): [(labels, value)]} for every expression promtool reported."""
    answers = {}
    lines = report.splitlines()
    for n, line in enumerate(lines):
        m = re.match(r'\s+expr: (".*"), time: (\S+?),(.*)$', line)
        if not m:
            continue
        expr, _ = go_unquote(m.group(1), 0)
        if m.group(3).strip().startswith("err:"):
            raise SystemExit(f"promtool could not evaluate {expr!r}: {m.group(3).strip()}")
        got = lines[n + 2].strip()
        assert got.startswith("got: "), got
        answers[(expr, m.group(2))] = read_samples(got[len("got: "):])
    return answers


def alert_answers(report):
    """{(alertname, time): [(labels, annotations)]} for every alert test reported."""
    answers = {}
    current = None
    in_got = False
    for line in report.splitlines():
        m = re.match(r"\s+alertname: (\S+), time: (\S+?), $", line)
        if m:
            current = (m.group(1), m.group(2))
            answers[current] = []
            in_got = False
            continue
        if line.strip().startswith("got:"):
            in_got = True
            continue
        if current and in_got:
            t = line.strip()
            if t.startswith("Labels:"):
                labels, _ = read_labels(t, len("Labels:"))
                answers[current].append([labels, None])
            elif t.startswith("Annotations:"):
                ann, _ = read_labels(t, len("Annotations:"))
                answers[current][-1][1] = ann
    return answers


def show_duration(text):
    """promtool's spelling of an eval_time (model.Duration's String)."""
    ms = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text):
        total += int(num) * ms.get(unit, 0)
    if total == 0:
        return "0s"
    out = ""
    # Years and weeks only when they divide exactly, as model.Duration writes them.
    for unit, size, exact in [("y", 365 * 86_400_000, True), ("w", 7 * 86_400_000, True),
                              ("d", 86_400_000, False), ("h", 3_600_000, False),
                              ("m", 60_000, False), ("s", 1000, False), ("ms", 1, False)]:
        if exact and total % size:
            continue
        if total >= size:
            out += f"{total // size}{unit}"
            total %= size
    return out


def yaml_value(v):
    if v != v:
        return None
    if v == float("inf"):
        return float("inf")
    if v == float("-inf"):
        return float("-inf")
    return v


def generate(src, check=False):
    with open(src) as f:
        text = f.read()
    doc = yaml.safe_load(text)
    # Rule files are named relative to the written file (tests/promql/), so promtool
    # runs a copy there.
    with tempfile.NamedTemporaryFile("w", suffix=".tmp", dir=HERE, delete=False) as t:
        yaml.safe_dump(doc, t, sort_keys=False)
    try:
        report = run_promtool(t.name)
    finally:
        os.unlink(t.name)
    if not re.search(r"^\s+(expr|alertname): ", report, re.M) and "SUCCESS" not in report:
        raise SystemExit(f"{src}: promtool did not run the tests:\n{report}")
    exprs = expr_answers(report)
    alerts = alert_answers(report)
    for group in doc.get("tests", []):
        for e in group.get("promql_expr_test", []):
            got = exprs.get((e["expr"], show_duration(str(e["eval_time"]))), [])
            if any(v != v for _, v in got):
                raise SystemExit(f"{src}: {e['expr']!r} at {e['eval_time']} answers NaN, "
                                 "which promtool never finds equal; write it another way")
            e["exp_samples"] = [{"labels": series_text(l), "value": yaml_value(v)}
                                for l, v in got]
        for a in group.get("alert_rule_test", []):
            got = alerts.get((a["alertname"], show_duration(str(a["eval_time"]))), [])
            a["exp_alerts"] = [
                {"exp_labels": {k: v for k, v in sorted(l.items()) if k != "alertname"},
                 "exp_annotations": dict(sorted((ann or {}).items()))}
                for l, ann in got]
    header = [line for line in text.splitlines() if line.startswith("#")]
    name = os.path.basename(src)
    out = os.path.join(HERE, name)
    version = subprocess.run(["promtool", "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    body = "".join(line + "\n" for line in header)
    body += f"# Answers written by tests/promql/generate.py from src/{name} with {version}.\n"
    body += "# Edit the source and regenerate; do not edit by hand.\n"
    body += yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
    if check:
        with open(out) as f:
            if f.read() != body:
                raise SystemExit(f"{out} is not what src/{name} gives: run "
                                 "tests/promql/generate.py and commit what it writes")
        print(f"{out}: up to date")
        return
    with open(out, "w") as f:
        f.write(body)
    print(f"{out}: {sum(len(g.get('promql_expr_test', [])) for g in doc.get('tests', []))} "
          f"expressions, {sum(len(g.get('alert_rule_test', [])) for g in doc.get('tests', []))} "
          "alert checks")


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    srcs = args or sorted(
        os.path.join(HERE, "src", f) for f in os.listdir(os.path.join(HERE, "src"))
        if f.endswith(".yaml"))
    for s in srcs:
        generate(s, check)


if __name__ == "__main__":
    main()
