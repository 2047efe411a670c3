"""Throughput at equal p99 latency, from serve_load.sh's results: for each concurrency level of
bertkit, the most requests/s the reference served with a p99 no higher: the better of its best
level at or under that p99 and the linear interpolation between its two levels around it (its
curve need not rise with concurrency); none when the reference never answers that fast. One
JSON line per bertkit level.

Usage: python3 bench/serve_equal_p99.py RESULTS.jsonl [--ours bertkit] [--reference transformers+fastapi]
"""
import argparse
import json

p = argparse.ArgumentParser()
p.add_argument("results")
p.add_argument("--ours", default="bertkit")
p.add_argument("--reference", default="transformers+fastapi")
args = p.parse_args()
rows = [json.loads(line) for line in open(args.results) if line.strip()]
ours = sorted((r for r in rows if r["server"] == args.ours), key=lambda r: r["concurrency"])
curve = sorted(((r["p99_ms"], r["requests_per_s"]) for r in rows if r["server"] == args.reference))
if not ours or not curve:
    raise SystemExit(f"{args.results}: needs runs of both {args.ours} and {args.reference}")


def reference_at(p99):
    """The reference's requests/s at this p99: interpolated, its best beyond its curve."""
    if p99 < curve[0][0]:
        return None
    best = max(rps for lat, rps in curve if lat <= p99)
    for (l0, r0), (l1, r1) in zip(curve, curve[1:]):
        if l0 <= p99 <= l1 and l1 > l0:
            best = max(best, r0 + (r1 - r0) * (p99 - l0) / (l1 - l0))
    return best


for r in ours:
    ref = reference_at(r["p99_ms"])
    print(json.dumps({"concurrency": r["concurrency"], "p99_ms": r["p99_ms"], "requests_per_s": r["requests_per_s"],
                      "reference_requests_per_s_at_that_p99": None if ref is None else round(ref, 2),
                      "ratio": None if ref is None else round(r["requests_per_s"] / ref, 2)}))
