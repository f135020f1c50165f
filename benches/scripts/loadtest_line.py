"""Summarises one pairdb-loadtest --json report: python3 loadtest_line.py LABEL CPU_NS RSS_MB < report."""
import json
import sys

r = json.load(sys.stdin)
label, cpu_ns, rss = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ops = max(r["ok"], 1)
sched = r.get("schedule") or {}
late = f", late sends {sched['late']} (max lag {sched['max_lag_us']} us)" if sched else ""
print(f"{label}: {r['ok_per_sec']:.0f} ok/s, errors {r['errors']}{late}, "
      f"coordinator {cpu_ns / ops / 1000:.1f} us CPU/op, RSS {rss} MB")
for name, op in r["operations"].items():
    if op["count"] == 0:
        continue
    l = op["latency"]
    print(f"   {name:6} {op['ok_per_sec']:.0f}/s  p50 {l['p50_us'] / 1000:.3f}  p95 {l['p95_us'] / 1000:.3f}"
          f"  p99 {l['p99_us'] / 1000:.3f}  p99.9 {l['p999_us'] / 1000:.3f}  max {l['max_us'] / 1000:.3f} ms")
