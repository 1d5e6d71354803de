#!/usr/bin/env python3
"""A process's resident memory by mapping, from a copy of /proc/PID/smaps.

    python3 bench/proxy/smaps_summary.py FILE [MIN_KB]

One row per mapped file (by its name) and per kind of anonymous mapping ([anon], [heap],
[stack], ...), largest first: Rss, the anonymous part of it, private clean and dirty, shared
clean, in kB. Rows under MIN_KB (100) are added up as "(others)". `bench/proxy/run.sh`'s PROBE
can take the copies during a benchmark (docs/benchmarks.md, "Memory").
"""
import collections
import re
import sys

FIELDS = ("Rss", "Anonymous", "Private_Clean", "Private_Dirty", "Shared_Clean")
MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")


def summarize(path):
    totals = collections.defaultdict(collections.Counter)
    name = None
    with open(path) as smaps:
        for line in smaps:
            mapping = MAPPING.match(line)
            if mapping:
                name = mapping.group(1).strip() or "[anon]"
                name = name.rsplit("/", 1)[-1]
                continue
            field, _, value = line.partition(":")
            if field in FIELDS:
                totals[name][field] += int(value.split()[0])
    return totals


def main():
    totals = summarize(sys.argv[1])
    min_kb = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    everything, others = collections.Counter(), collections.Counter()
    rows = []
    for name, counts in sorted(totals.items(), key=lambda item: -item[1]["Rss"]):
        everything.update(counts)
        if counts["Rss"] >= min_kb:
            rows.append((name, counts))
        else:
            others.update(counts)
    print(f"{'mapping':40} {'Rss':>7} {'Anon':>7} {'PrivCl':>7} {'PrivDi':>7} {'ShCl':>7}")
    for name, counts in [("TOTAL", everything)] + rows + [("(others)", others)]:
        print(f"{name[:40]:40} " + " ".join(f"{counts[f]:7}" for f in FIELDS))


if __name__ == "__main__":
    main()
