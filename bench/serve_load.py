"""Sustained load on a /predict server: C concurrent clients, each sending the next request as
soon as its answer comes, for T seconds; one JSON line with throughput, p50/p99 latency and the
server's peak resident memory (VmHWM of --pid). With --rerank N, a /rerank server: each request
one text as the query and the next N as its passages (TEI's shape); with --openai, a
/v1/embeddings server (OpenAI's shape, one text per request).

Usage: python3 bench/serve_load.py --url http://127.0.0.1:8080/predict --texts FILE --concurrency 8
       --seconds 20 [--pid PID] [--name bertkit] [--rerank N | --openai]
"""
import argparse
import asyncio
import json
import statistics
import time

import aiohttp

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--texts", required=True)
p.add_argument("--concurrency", type=int, default=8)
p.add_argument("--seconds", type=float, default=20)
p.add_argument("--pid", type=int)
p.add_argument("--name", default="server")
p.add_argument("--rerank", type=int, default=0)
p.add_argument("--openai", action="store_true")
args = p.parse_args()
texts = [line.strip() for line in open(args.texts, encoding="utf-8") if line.strip()]


def request(i):
    if args.rerank:
        passages = [texts[(i + 1 + k) % len(texts)] for k in range(args.rerank)]
        return {"query": texts[i % len(texts)], "texts": passages, "truncate": True}
    if args.openai:
        return {"input": texts[i % len(texts)], "model": "bench", "encoding_format": "float"}
    return {"inputs": texts[i % len(texts)], "truncate": True}


async def client(session, index, latencies, errors, stop_at):
    i = index
    while time.monotonic() < stop_at:
        body = request(i)
        i += args.concurrency
        start = time.monotonic()
        async with session.post(args.url, json=body) as response:
            await response.read()
            if response.status == 200:
                latencies.append(time.monotonic() - start)
            else:
                errors.append(response.status)


async def main():
    latencies, errors = [], []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(args.url, json=request(0)) as r:  # warm-up
            await r.read()
        start = time.monotonic()
        stop_at = start + args.seconds
        await asyncio.gather(*(client(session, i, latencies, errors, stop_at) for i in range(args.concurrency)))
        elapsed = time.monotonic() - start
    latencies.sort()
    q = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))] * 1000
    peak = None
    if args.pid:
        for line in open(f"/proc/{args.pid}/status"):
            if line.startswith("VmHWM"):
                peak = int(line.split()[1]) / 1024
    print(json.dumps({"server": args.name, "concurrency": args.concurrency, "requests": len(latencies),
                      "errors": len(errors), "requests_per_s": round(len(latencies) / elapsed, 2),
                      "p50_ms": round(q(0.50), 1), "p99_ms": round(q(0.99), 1),
                      "mean_ms": round(statistics.mean(latencies) * 1000, 1), "peak_rss_mb": peak}))


asyncio.run(main())
