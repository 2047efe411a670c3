"""Faults against a running /predict server; after each, a normal request must still get 200.
Malformed JSON, an oversized body, N simultaneous open connections (default 10 000, each sending
a request), and clients that hang up mid-request. One JSON line of what each fault got.

Usage: python3 bench/serve_faults.py --url http://127.0.0.1:8080 [--connections 10000]
"""
import argparse
import asyncio
import json

import aiohttp

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--connections", type=int, default=10000)
args = p.parse_args()
host, port = args.url.removeprefix("http://").split(":")


async def status(session, body, headers=None):
    """The answer's status, or the client's exception when the server answered and closed
    before the client finished sending (what a 413 on a large body does)."""
    try:
        async with session.post(f"{args.url}/predict", data=body, headers=headers or {"content-type": "application/json"}) as r:
            await r.read()
            return r.status
    except aiohttp.ClientError as e:
        return type(e).__name__


async def one_connection(i):
    """A raw connection that sends a whole request and reads the status line."""
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps({"inputs": f"connection {i}"}).encode()
        writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 300)
        writer.close()
        return int(line.split()[1]) if line else 0
    except Exception as e:
        return type(e).__name__


async def main():
    results = {}
    async with aiohttp.ClientSession() as session:
        ok = lambda: status(session, json.dumps({"inputs": "still answering?"}))
        results["malformed_json"] = [await status(session, "{\"inputs\": "), await ok()]
        results["oversized_body"] = [await status(session, json.dumps({"inputs": "x" * 5_000_000})), await ok()]
        for i in range(100):  # hang up mid-request
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\": \"half")
            await writer.drain()
            writer.close()
        results["hang_ups"] = [100, await ok()]
        statuses = await asyncio.gather(*(one_connection(i) for i in range(args.connections)))
        counts = {}
        for s in statuses:
            counts[str(s)] = counts.get(str(s), 0) + 1
        results["simultaneous_connections"] = [counts, await ok()]
    print(json.dumps(results))


asyncio.run(main())
