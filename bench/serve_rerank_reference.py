"""The Python reference for `bertkit serve` as a reranker: sentence-transformers' CrossEncoder
behind FastAPI/uvicorn, with the same request batching as bench/serve_reference.py (requests
that queue while the model is busy run together) and TEI's /rerank shapes.

Usage: python3 bench/serve_rerank_reference.py --model DIR [--port 8081] [--max-pairs 256] [--max-len 128] [--int8]
(--int8: every Linear quantized by torch.ao's quantize_dynamic with per-channel weights, as a
Python user would make the model cheaper on a CPU.)
"""
import argparse
import asyncio

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import CrossEncoder

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--port", type=int, default=8081)
p.add_argument("--max-pairs", type=int, default=256)
p.add_argument("--max-len", type=int, default=512)
p.add_argument("--int8", action="store_true")
args = p.parse_args()

model = CrossEncoder(args.model, device="cpu", max_length=args.max_len)
if args.int8:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    quantize_dynamic(model.model.eval(), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
app = FastAPI()
queue: asyncio.Queue = asyncio.Queue()


class Request(BaseModel):
    query: str
    texts: list[str]
    raw_scores: bool = False


async def batcher():
    """One model call at a time over the pairs of everything queued meanwhile."""
    loop = asyncio.get_running_loop()
    while True:
        jobs = [await queue.get()]
        pairs = len(jobs[0][0].texts)
        while not queue.empty() and pairs < args.max_pairs:
            jobs.append(queue.get_nowait())
            pairs += len(jobs[-1][0].texts)
        flat = [(r.query, t) for r, _ in jobs for t in r.texts]
        with torch.inference_mode():
            scores = await loop.run_in_executor(None, lambda: model.predict(flat, batch_size=len(flat)).tolist())
        for request, future in jobs:
            mine, scores = scores[:len(request.texts)], scores[len(request.texts):]
            ranked = sorted(enumerate(mine), key=lambda s: -s[1])
            future.set_result([{"index": i, "score": s} for i, s in ranked])


@app.on_event("startup")
async def start():
    asyncio.create_task(batcher())


@app.post("/rerank")
async def rerank(request: Request):
    future = asyncio.get_running_loop().create_future()
    await queue.put((request, future))
    return await future


@app.get("/health")
async def health():
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
