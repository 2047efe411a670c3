"""Reads `bertkit bench` JSON lines (bench/unpadded.sh) and prints each run, then the packed /
padded ratio per setting as a docs/benchmarks.md table (medians; ratios per interleaved pair)."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(lambda: defaultdict(list))
for line in sys.stdin:
    r = json.loads(line)
    key = (r["workload"], r["batch_size"], r["seq_len"], r["min_len"], round(r["padding"], 3))
    runs[key][r["unpad"]].append(r["tokens_per_s"])
    print(f"{r['workload']:9s} B={r['batch_size']:<3d} L={r['min_len']}..{r['seq_len']:<4d} "
          f"padding {r['padding']:.0%}  unpad {r['unpad']:6s} {r['tokens_per_s']:8.0f} real tok/s", flush=True)
print()
print("| workload | batch | lengths | padding | padded tok/s | packed tok/s | packed / padded (per pair) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for (w, b, l, m, p), r in runs.items():
    pairs = [a / n for a, n in zip(r["always"], r["never"])]
    print(f"| {w} | {b} | {m}-{l} | {p:.0%} | {statistics.median(r['never']):.0f} | "
          f"{statistics.median(r['always']):.0f} | **{statistics.median(pairs):.2f}x** ({min(pairs):.2f}-{max(pairs):.2f}) |")
