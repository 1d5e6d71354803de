"""Prints the proxy benchmark's table and meshproxy's ratios against nginx and haproxy.

    report.py RESULTS.jsonl [FLOOR.json]

One JSON line per measurement (run.sh): target, proto (h1, h2), load (a rate or "max"),
rps, p50_us/p99_us/p999_us, failed, proxy_cpu/origin_cpu (cores busy), rss_kib; or error.
FLOOR.json (run.sh, wakeup.c): latency percentiles of the four wake-ups across CPUs that a
proxy on its own CPU adds to every request ("across") and of the two on one CPU of a direct
request ("within"), at 1,000 requests/s.
"req/s per core" divides requests/s by the cores the proxy (for direct: the origin) kept busy:
the figure that other load on the machine disturbs least.
With several rounds (run.sh ROUNDS), the table gives each measurement's median over the
rounds, and meshproxy's per-core ratio at saturation is taken in each round (measurements
seconds apart) and then its median.
"""

import json
import statistics
import sys

MEDIAN_FIELDS = ("rps", "p50_us", "p99_us", "p999_us", "proxy_cpu", "origin_cpu")


def medians(rows):
    """One row per (target, proto, load): the median of each figure over the rounds (failed
    requests: their sum; RSS: the largest)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["target"], r["proto"], r["load"]), []).append(r)
    merged = []
    for group in groups.values():
        row = dict(group[-1])
        ok = [r for r in group if "error" not in r]
        if ok:
            row.pop("error", None)
            for field in MEDIAN_FIELDS:
                values = [r[field] for r in ok if r.get(field) is not None]
                row[field] = statistics.median(values) if values else None
            row["failed"] = sum(r["failed"] for r in ok)
            row["rss_kib"] = max(r["rss_kib"] for r in group)
        merged.append(row)
    return merged


def efficiency(r):
    """Requests/s per busy core, or None."""
    if r is None or "error" in r or not r.get("proxy_cpu"):
        return None
    return r["rps"] / r["proxy_cpu"]


def ms(us):
    return f"{us / 1000:.3f}" if us is not None else "-"


def per_core(r):
    cores = r["origin_cpu"] if r["target"] == "direct" else r["proxy_cpu"]
    return f'{r["rps"] / cores:,.0f}' if cores > 0 else "-"


def main(path, floor_path=None):
    floor = json.load(open(floor_path)) if floor_path else None
    measured = [json.loads(line) for line in open(path) if line.strip()]
    rounds = max((r.get("round", 1) for r in measured), default=1)
    rows = medians(measured)
    by_key = {(r["target"], r["proto"], r["load"]): r for r in rows}
    if rounds > 1:
        print(f"medians over {rounds} rounds")
    print("| target | proto | load | req/s | p50 ms | p99 ms | p99.9 ms | failed | proxy CPU | origin CPU | req/s per core | RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        load = "saturation" if r["load"] == "max" else f'{int(r["load"]):,} rps'
        if "error" in r:
            print(f'| {r["target"]} | {r["proto"]} | {load} | {r["error"]} | | | | | | | | '
                  f'{r["rss_kib"] / 1024:.1f} |')
            continue
        print(f'| {r["target"]} | {r["proto"]} | {load} | {r["rps"]:,.0f} | {ms(r.get("p50_us"))} | '
              f'{ms(r.get("p99_us"))} | {ms(r.get("p999_us"))} | {r["failed"]} | '
              f'{r["proxy_cpu"]:.2f} | {r["origin_cpu"]:.2f} | {per_core(r)} | {r["rss_kib"] / 1024:.1f} |')

    round_ratios = {}
    if rounds > 1:
        print()
        print("meshproxy's req/s per core at saturation over the reference's, round by round:")
        in_round = {(r["target"], r["proto"], r["load"], r.get("round", 1)): r for r in measured}
        for ref in ("nginx", "haproxy"):
            for proto in ("h1", "h2"):
                ratios = []
                for n in range(1, rounds + 1):
                    ours = efficiency(in_round.get(("meshproxy", proto, "max", n)))
                    theirs = efficiency(in_round.get((ref, proto, "max", n)))
                    if ours and theirs:
                        ratios.append(ours / theirs)
                if ratios:
                    round_ratios[(ref, proto)] = statistics.median(ratios)
                    print(f"- {ref} {proto}: " + ", ".join(f"{x:.2f}" for x in ratios)
                          + f"; median {statistics.median(ratios):.2f}")

    def get(target, proto, load, field):
        r = by_key.get((target, proto, load))
        return None if r is None or "error" in r else r.get(field)

    def ratio(a, b):
        return f"{a / b:.2f}" if a is not None and b else "-"

    loads = sorted({r["load"] for r in rows if r["load"] != "max"}, key=int)
    low = loads[0] if loads else None
    print()
    print("| meshproxy / | proto | saturation req/s | saturation req/s per core | p99 at saturation | "
          f"p99 at {int(low):,} rps | p99 added over direct at {int(low):,} rps (ms, meshproxy vs it) | RSS |"
          if low else "| meshproxy / | proto | saturation req/s | saturation req/s per core | p99 at saturation | RSS |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for ref in ("nginx", "haproxy"):
        for proto in ("h1", "h2"):
            if (ref, proto, "max") not in by_key:
                continue
            rates = [efficiency(by_key.get((t, proto, "max"))) for t in ("meshproxy", ref)]
            per_core_cell = (f"{round_ratios[(ref, proto)]:.2f}" if (ref, proto) in round_ratios
                             else ratio(*rates))
            cells = [ratio(get("meshproxy", proto, "max", "rps"), get(ref, proto, "max", "rps")),
                     per_core_cell,
                     ratio(get("meshproxy", proto, "max", "p99_us"), get(ref, proto, "max", "p99_us"))]
            if low:
                direct = get("direct", proto, low, "p99_us")
                added = [None if get(t, proto, low, "p99_us") is None or direct is None
                         else get(t, proto, low, "p99_us") - direct for t in ("meshproxy", ref)]
                cells.append(ratio(get("meshproxy", proto, low, "p99_us"), get(ref, proto, low, "p99_us")))
                cells.append(" vs ".join(ms(a) for a in added))
            cells.append(ratio(get("meshproxy", proto, "max", "rss_kib"), get(ref, proto, "max", "rss_kib")))
            print(f"| {ref} | {proto} | " + " | ".join(cells) + " |")

    print()
    sat, sat_nginx = get("meshproxy", "h1", "max", "rps"), get("nginx", "h1", "max", "rps")
    if ("nginx", "h1") in round_ratios:
        ratio_ = round_ratios[("nginx", "h1")]
        print(f"target: HTTP/1.1 throughput at or above nginx's: per busy core, median of {rounds} "
              f"rounds {ratio_:.2f} of nginx's -> {'met' if ratio_ >= 1 else 'NOT met'}")
    elif sat and sat_nginx:
        # On a shared machine the proxies get different shares of their core: requests per
        # busy core decide, raw requests/s are shown beside them.
        cpu, cpu_nginx = get("meshproxy", "h1", "max", "proxy_cpu"), get("nginx", "h1", "max", "proxy_cpu")
        verdict = (sat / cpu >= sat_nginx / cpu_nginx) if cpu and cpu_nginx else sat >= sat_nginx
        busy_core = (f"; per busy core {sat / cpu:,.0f} vs {sat_nginx / cpu_nginx:,.0f}"
                    if cpu and cpu_nginx else "")
        print(f"target: HTTP/1.1 throughput at or above nginx's: {sat:,.0f} vs {sat_nginx:,.0f} req/s"
              f"{busy_core} -> {'met' if verdict else 'NOT met'}")
    if low and get("meshproxy", "h1", low, "p99_us") is not None and get("direct", "h1", low, "p99_us"):
        added = (get("meshproxy", "h1", low, "p99_us") - get("direct", "h1", low, "p99_us")) / 1000
        others = [f"{ref} {(get(ref, 'h1', low, 'p99_us') - get('direct', 'h1', low, 'p99_us')) / 1000:.3f}"
                  for ref in ("nginx", "haproxy") if get(ref, "h1", low, "p99_us") is not None]
        print(f"target: added p99 at {int(low):,} rps under 0.2 ms: {added:.3f} ms "
              f"-> {'met' if added < 0.2 else 'NOT met'}"
              + (f" (same run: {', '.join(others)} ms)" if others else ""))
    if floor:
        across, within = floor["across"], floor["within"]
        print(f"floor of this machine: 4 wake-ups between the load's CPU and the proxy's p50 {ms(across['p50_us'])} p99 "
              f"{ms(across['p99_us'])} ms, 2 on one CPU p50 {ms(within['p50_us'])} p99 "
              f"{ms(within['p99_us'])} ms (p99 difference {ms(across['p99_us'] - within['p99_us'])} ms: "
              f"what a proxy there adds before it does any work)")
    rss = max((r["rss_kib"] for r in rows if r["target"] == "meshproxy"), default=None)
    if rss:
        print(f"meshproxy RSS after load: {rss / 1024:.1f} MiB (target with the demo config: < 20 MB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
