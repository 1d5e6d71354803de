"""h2load's result as one JSON line: requests/s and latency percentiles (microseconds) from its
per-request log (--log-file: start time in us since the epoch, status, duration in us).

    h2load_report.py STDOUT_FILE LOG_FILE WARMUP_S

Rows that started during the warm-up are dropped; requests/s is over the measured rows' span.
"""

import json
import re
import sys


def percentile(sorted_values, p):
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def main(stdout_path, log_path, warmup_s):
    text = open(stdout_path, errors="replace").read()
    rows = []
    try:
        with open(log_path) as log:
            for line in log:
                fields = line.split("\t")
                if len(fields) >= 3:
                    rows.append((int(fields[0]), int(fields[1]), int(fields[2])))
    except FileNotFoundError:
        pass
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
    if not rows:
        last = text.strip().splitlines()[-1:] or ["no output"]
        print(json.dumps({"error": f"h2load: no request completed ({last[0]})"}))
        return
    start = min(r[0] for r in rows) + int(float(warmup_s) * 1e6)
    measured = [r for r in rows if r[0] >= start] or rows
    ok = sorted(d for _, status, d in measured if 200 <= status < 300)
    span_us = max(s + d for s, _, d in measured) - min(s for s, _, _ in measured)
    result = {"requests": len(measured), "failed": len(measured) - len(ok),
              "rps": round(len(measured) / (span_us / 1e6), 1) if span_us > 0 else 0.0}
    if counts:
        result["h2load_failed"] = int(counts.group(5)) + int(counts.group(6))
    if ok:
        result.update(p50_us=percentile(ok, 50), p99_us=percentile(ok, 99),
                      p999_us=percentile(ok, 99.9))
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
