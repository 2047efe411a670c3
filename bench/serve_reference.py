"""The Python reference for `bertkit serve`'s load test: a transformers text-classification
pipeline behind FastAPI/uvicorn, with the same request batching (requests that queue while the
model is busy run together) and the same /predict shapes (TEI's).

Usage: python3 bench/serve_reference.py --model DIR [--port 8081] [--max-batch 32]
"""
import argparse
import asyncio

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--port", type=int, default=8081)
p.add_argument("--max-batch", type=int, default=32)
p.add_argument("--max-len", type=int, default=512)
args = p.parse_args()

classify = pipeline("text-classification", model=args.model, tokenizer=args.model, device="cpu", top_k=None)
app = FastAPI()
queue: asyncio.Queue = asyncio.Queue()


class Request(BaseModel):
    inputs: str
    truncate: bool = True


async def batcher():
    """One model call at a time over everything queued meanwhile (up to --max-batch)."""
    loop = asyncio.get_running_loop()
    while True:
        jobs = [await queue.get()]
        while not queue.empty() and len(jobs) < args.max_batch:
            jobs.append(queue.get_nowait())
        texts = [text for text, _ in jobs]
        with torch.inference_mode():
            answers = await loop.run_in_executor(
                None, lambda: classify(texts, batch_size=len(texts), truncation=True, max_length=args.max_len))
        for (_, future), answer in zip(jobs, answers):
            future.set_result(answer)


@app.on_event("startup")
async def start():
    asyncio.create_task(batcher())


@app.post("/predict")
async def predict(request: Request):
    future = asyncio.get_running_loop().create_future()
    await queue.put((request.inputs, future))
    return await future


@app.get("/health")
async def health():
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
