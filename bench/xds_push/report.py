#!/usr/bin/env python3
"""Prints the xDS push benchmark's results (JSON lines from run.sh) as a Markdown table, medians
over repeated runs per (server, streams) for times and CPU, the first run's figures for memory
(a server process keeps what earlier runs left), and the ratios meshpilot / each reference."""
import json
import statistics
import sys

METRICS = [  # column, path in a result, how repeats combine
    ("sync p50 ms", ("sync", "p50_ms"), statistics.median, 0),
    ("sync p99 ms", ("sync", "p99_ms"), statistics.median, 0),
    ("sync all ms", ("sync", "all_ms"), statistics.median, 0),
    ("push p50 ms", ("change", "p50_ms"), statistics.median, 0),
    ("push p99 ms", ("change", "p99_ms"), statistics.median, 0),
    ("push max ms", ("change", "max_ms"), statistics.median, 0),
    # Memory is cumulative within a server process: the first run's figure is the clean one.
    ("RSS MiB", ("server_rss_ready_mib",), lambda values: values[0], 1),
    ("peak RSS MiB", ("server_hwm_mib",), lambda values: values[0], 1),
    ("RSS closed MiB", ("server_rss_closed_mib",), lambda values: values[0], 1),
    ("server CPU s", ("server_cpu_s",), statistics.median, 2),
]
RATIOS = ["sync all ms", "sync p99 ms", "push p99 ms", "RSS MiB", "peak RSS MiB", "server CPU s"]


def get(result, path):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def main():
    results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    groups = {}
    for r in results:
        groups.setdefault((r["label"], r["streams"]), []).append(r)
    summary = {}
    for key, runs in groups.items():
        row = {"runs": len(runs), "ok": all(r.get("ok") for r in runs)}
        for column, path, combine, _ in METRICS:
            values = [v for v in (get(r, path) for r in runs) if v is not None]
            row[column] = combine(values) if values else None
        summary[key] = row

    columns = ["server", "streams", "runs"] + [m[0] for m in METRICS] + ["ok"]
    rows = []
    for (label, streams), row in summary.items():
        cells = [label, str(streams), str(row["runs"])]
        for column, _, _, digits in METRICS:
            value = row[column]
            cells.append("-" if value is None else f"{value:.{digits}f}")
        cells.append("yes" if row["ok"] else "NO")
        rows.append(cells)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for cells in rows:
        print("| " + " | ".join(v.rjust(w) if i else v.ljust(w)
                                for i, (v, w) in enumerate(zip(cells, widths))) + " |")

    references = sorted({label for label, _ in summary if label != "meshpilot"})
    for reference in references:
        print(f"\nmeshpilot / {reference} (below 1: meshpilot is faster, smaller or cheaper)")
        for streams in sorted({s for _, s in summary}):
            mine, ref = summary.get(("meshpilot", streams)), summary.get((reference, streams))
            if not mine or not ref:
                continue
            parts = []
            for column in RATIOS:
                a, b = mine[column], ref[column]
                parts.append(f"{column.replace(' ms', '').replace(' MiB', '').replace(' s', '')} "
                             + (f"{a / b:.2f}" if a is not None and b else "-"))
            print(f"  {streams:>5} streams: " + ", ".join(parts))


if __name__ == "__main__":
    main()
