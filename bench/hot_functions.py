#!/usr/bin/env python3
"""The functions of one binary that callgrind runs executed, hottest first.

  bench/hot_functions.py BINARY CALLGRIND_OUT... >link/hot-functions.txt
  bench/hot_functions.py --found LIST BINARY   # how many of LIST's names BINARY holds

Reads callgrind profiles written with `--compress-strings=no --compress-pos=no
--demangle=no` and prints the raw (mangled) symbol names of the functions of BINARY
(the object named by `ob=`) that ran at least one instruction: those of the first
profile by the instructions they ran themselves, most first (ties by name, so the same
profiles give the same list), then those of the second that the first did not run, and
so on. This is the symbol ordering file that build.rs hands the linker: the functions
the daemon runs end up side by side at the start of `.text`, instead of scattered
through 17 MB of code with 64 KiB of neighbours faulted in around each; and those that
only a fuller configuration runs come after, so that a daemon which never runs them
does not have them among its pages (bench/README.md, footprint).
"""

import collections
import os
import re
import subprocess
import sys

# Names callgrind gives code it has no symbol for: "0x0000000000a1b2c3".
ADDRESS = re.compile(r"^0x[0-9a-f]+$")
# What callgrind appends to a function's name at each level of recursion: "'2".
RECURSION = re.compile(r"'\d+$")


def hot_functions(lines, binary):
    """{symbol: instructions run in it} for the functions of `binary` in a callgrind profile."""
    binary = os.path.realpath(binary)
    positions = 1
    cost = collections.Counter()
    ob = fn = None
    skip_next = False  # the line after `calls=` is the call's inclusive cost, not fn's own
    for line in lines:
        line = line.rstrip("\n")
        if skip_next:
            skip_next = False
            continue
        if line.startswith("positions:"):
            positions = len(line.split()) - 1
        elif line.startswith("ob="):
            ob = os.path.realpath(line[3:]) if line[3:] else None
        elif line.startswith("fn="):
            name = RECURSION.sub("", line[3:])
            # "(below main)" and the like are callgrind's, not symbols
            fn = name if ob == binary and not ADDRESS.match(name) and not name.startswith("(") else None
            if fn is not None:
                cost[fn] += 0  # ran, even if every instruction was in a call
        elif line.startswith("calls="):
            skip_next = True
        elif line and (line[0].isdigit() or line[0] in "+-*") and fn is not None:
            fields = line.split()
            if len(fields) > positions:
                cost[fn] += int(fields[positions])
    return cost


def found(listed, binary):
    """How many of the names in the file `listed` are functions of `binary` (`nm`)."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}
    with open(listed) as f:
        wanted = [line.strip() for line in f if line.strip()]
    return sum(w in names for w in wanted), len(wanted)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--found":
        n, total = found(sys.argv[2], sys.argv[3])
        # 94 % found cost 2.5 MiB of resident memory (bench/README.md, 2026-12-07).
        print(f"{n} of the {total} functions of {sys.argv[2]} are in {sys.argv[3]}"
              + ("" if n >= 0.99 * total else ": the list is stale, run bench/hot-functions.sh"))
        return
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    binary, listed = sys.argv[1], set()
    for profile in sys.argv[2:]:
        with open(profile, errors="replace") as f:
            cost = hot_functions(f, binary)
        if not cost:
            sys.exit(f"{profile}: no function of {binary} in the profile")
        for name, _ in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0])):
            if name not in listed:
                listed.add(name)
                print(name)


if __name__ == "__main__":
    main()
