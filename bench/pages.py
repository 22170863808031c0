#!/usr/bin/env python3
"""Where a running process's resident pages come from.

  bench/pages.py PID [TOP]

Reads /proc/PID/smaps for the resident and anonymous kilobytes of every mapping, then
/proc/PID/pagemap for which pages of the executable's own mappings are resident (needs
root, as the benches run), and attributes them:
- to the ELF sections they hold (`readelf -SW`): code, read-only data, relocations,
  unwind tables;
- the code pages to the crate of the function they hold (`nm -n --demangle` of the
  binary's symbols, the crate being the first path segment of the name, generic
  instances included under the crate whose function was instantiated).
Prints the TOP crates (default 25) by resident code pages.
"""

import collections
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def mappings(pid):
    """[(start, end, perms, offset, path, rss_kib, anon_kib)] from smaps."""
    out, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$", line)
            if head:
                cur = [int(head[1], 16), int(head[2], 16), head[3], int(head[4], 16), head[5].strip(), 0, 0]
                out.append(cur)
            elif line.startswith("Rss:"):
                cur[5] = int(line.split()[1])
            elif line.startswith("Anonymous:"):
                cur[6] = int(line.split()[1])
    return out


def resident_pages(pid, start, end):
    """The addresses of the resident pages in [start, end)."""
    n = (end - start) // PAGE
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read(n * 8)
    return [start + i * PAGE for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)) if entry >> 63]


def sections(binary):
    """[(name, file_offset, size, address)] of the allocated sections."""
    out = []
    for line in subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        # NOBITS sections (.bss, .tbss) hold no bytes of the file.
        if m and "A" in m[6] and m[2] != "NOBITS":
            out.append((m[1], int(m[4], 16), int(m[5], 16), int(m[3], 16)))
    return out


def crate_of(name):
    name = name.lstrip("<&*")
    if name.startswith("_"):
        return "(unmangled or C)"
    crate = re.split(r"::|<| ", name, maxsplit=1)[0]
    return crate or "(unknown)"


def symbols(binary):
    """Sorted [(address, crate)] of the code symbols."""
    out = []
    nm = subprocess.run(["nm", "-n", "--demangle", "--defined-only", binary], capture_output=True, text=True).stdout
    for line in nm.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            out.append((int(parts[0], 16), crate_of(parts[2])))
    return out


def main():
    pid = int(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    binary = os.readlink(f"/proc/{pid}/exe")
    exe = f"/proc/{pid}/exe"  # readable even when the file was since replaced or deleted
    maps = mappings(pid)

    by_file = collections.Counter()
    anon = 0
    for _, _, _, _, path, rss, an in maps:
        anon += an
        by_file[path or "[anonymous]"] += rss - an
    print(f"resident: {sum(m[5] for m in maps) / 1024:.1f} MiB, of which {anon / 1024:.1f} MiB anonymous")
    print("file-backed, by file:")
    for path, kib in by_file.most_common(8):
        if kib:
            print(f"  {kib / 1024:7.2f} MiB  {path}")

    own = [m for m in maps if m[4] == binary]
    if not own:
        raise SystemExit(f"no mapping of {binary} in /proc/{pid}/smaps")
    base = min(m[0] - m[3] for m in own)  # the load bias: address = base + file offset
    secs = sections(exe)
    by_section = collections.Counter()
    code_pages = []
    for start, end, perms, off, _, _, _ in own:
        for addr in resident_pages(pid, start, end):
            file_off = off + (addr - start)
            names = [n for n, o, size, _ in secs if o < file_off + PAGE and file_off < o + size] or ["(between sections)"]
            for n in names:
                by_section[n] += PAGE / len(names) / 1024
            if "x" in perms:
                code_pages.append(addr - base)
    print(f"the binary's resident pages by section ({binary}):")
    for name, kib in by_section.most_common():
        if kib >= 16:
            print(f"  {kib / 1024:7.2f} MiB  {name}")

    syms = symbols(exe)
    addrs = [a for a, _ in syms]
    by_crate = collections.Counter()
    import bisect
    text = next(((o, a) for n, o, _, a in secs if n == ".text"), None)
    for page in code_pages:
        # Symbols are by virtual address; the code pages are by load-bias offset, which
        # for the text segment equals the virtual address of a PIE (or base 0).
        counted = collections.Counter()
        i = bisect.bisect_right(addrs, page) - 1
        while i < len(syms) and (i < 0 or syms[i][0] < page + PAGE):
            if i >= 0:
                lo = max(syms[i][0], page)
                hi = min(syms[i + 1][0] if i + 1 < len(syms) else page + PAGE, page + PAGE)
                if hi > lo:
                    counted[syms[i][1]] += hi - lo
            i += 1
        total = sum(counted.values()) or 1
        for crate, n in counted.items():
            by_crate[crate] += PAGE * n / total / 1024
    if text:
        print(f"the binary's resident code pages by crate (top {top}):")
        for crate, kib in by_crate.most_common(top):
            print(f"  {kib / 1024:7.2f} MiB  {crate}")


if __name__ == "__main__":
    main()
