#!/usr/bin/env python3
"""Counts, per PromQL function, the inputs where Vigil's answer differs from promtool's.

    .venv/bin/python tests/promql/math_sweep.py target/debug/vigil

Arithmetic, rounding, sqrt and the aggregations are exact in IEEE 754 and answer the
same in both. The transcendental functions are not: Go's `math` package computes them
with its own (Cephes- and FreeBSD-derived) code, and Vigil with the platform's libm
(glibc here). This sweep evaluates each over 130 inputs from 1e-3 to 1e3 (both signs)
and 130 in [-1, 1], and prints how many answers differ, and by how many units in the
last place at most.
"""

import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402

FUNCS = ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
         "acosh", "atanh", "exp", "ln", "log2", "log10", "sqrt", "deg", "rad", "abs",
         "ceil", "floor", "round", "sgn"]
BINARY = ["v ^ u", "abs(v) ^ u", "v % u", "v atan2 u", "v * u", "v / u"]


def ulps(a, b):
    ia = struct.unpack("<q", struct.pack("<d", a))[0]
    ib = struct.unpack("<q", struct.pack("<d", b))[0]
    return abs(ia - ib)


def main():
    vigil = sys.argv[1] if len(sys.argv) > 1 else "target/debug/vigil"
    rnd = random.Random(7)
    v = [rnd.choice([-1, 1]) * 10 ** rnd.uniform(-3, 3) for _ in range(130)]
    u = [rnd.uniform(-1, 1) for _ in range(130)]
    exprs = [f"{f}({s})" for f in FUNCS for s in ("v", "u")] + BINARY
    lines = ["evaluation_interval: 1m", "tests:", "- interval: 1m", "  input_series:",
             f"  - series: v\n    values: '{' '.join(repr(x) for x in v)}'",
             f"  - series: u\n    values: '{' '.join(repr(x) for x in u)}'",
             "  promql_expr_test:"]
    for e in exprs:
        for t in range(len(v)):
            # `== itself` drops NaN answers, which promtool never finds equal.
            lines.append(f"  - expr: ({e}) == ({e})\n    eval_time: {t}m")
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "sweep.yaml")
        with open(src, "w") as f:
            f.write("\n".join(lines) + "\n")
        got = generate.expr_answers(generate.run_promtool(src))
        # Every expression fails against empty expectations: promtool's report
        # holds all its answers. Vigil's report holds its own the same way.
        report = subprocess.run([vigil, "test", "rules", src], capture_output=True,
                                text=True).stdout
        mine = {}
        for m in re.finditer(r'expr: (".*"), time: (\S+?),\n\s+exp: .*\n\s+got: \[(.*)\]',
                             report):
            expr, _ = generate.go_unquote(m.group(1), 0)
            vals = re.findall(r"\} (\S+?)(?= \{|$)", m.group(3))
            mine[(expr, m.group(2))] = [float(x) for x in vals]
        print(f"{'expression':<16} {'inputs':>6} {'differ':>6} {'max ulps':>8}")
        for e in exprs:
            n = differ = worst = 0
            for t in range(len(v)):
                key = (f"({e}) == ({e})", generate.show_duration(f"{t}m"))
                theirs = [x for _, x in got.get(key, [])]
                ours = mine.get(key, [])
                if not theirs and not ours:
                    continue
                n += 1
                if theirs != ours:
                    differ += 1
                    if len(theirs) == len(ours):
                        worst = max(worst, max(ulps(a, b) for a, b in zip(theirs, ours)))
                    else:
                        worst = max(worst, 1 << 62)
            print(f"{e:<16} {n:>6} {differ:>6} {worst:>8}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
