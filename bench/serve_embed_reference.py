"""The Python reference for `bertkit serve` as an embedding server: sentence-transformers'
SentenceTransformer behind FastAPI/uvicorn, with the same request batching as
bench/serve_reference.py (requests that queue while the model is busy run together) and
OpenAI's `/v1/embeddings` shape (unit-length float vectors).

Usage: python3 bench/serve_embed_reference.py --model DIR [--port 8081] [--max-batch 32] [--max-len 128]
"""
import argparse
import asyncio

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--port", type=int, default=8081)
p.add_argument("--max-batch", type=int, default=32)
p.add_argument("--max-len", type=int, default=512)
args = p.parse_args()

model = SentenceTransformer(args.model, device="cpu")
model.max_seq_length = args.max_len
app = FastAPI()
queue: asyncio.Queue = asyncio.Queue()


class Request(BaseModel):
    input: str | list[str]
    model: str = "model"


async def batcher():
    """One model call at a time over the texts of everything queued meanwhile."""
    loop = asyncio.get_running_loop()
    while True:
        jobs = [await queue.get()]
        while not queue.empty() and len(jobs) < args.max_batch:
            jobs.append(queue.get_nowait())
        texts = [t for texts, _ in jobs for t in texts]
        with torch.inference_mode():
            vectors = await loop.run_in_executor(
                None, lambda: model.encode(texts, batch_size=len(texts), normalize_embeddings=True).tolist())
        for texts, future in jobs:
            mine, vectors = vectors[:len(texts)], vectors[len(texts):]
            future.set_result(mine)


@app.on_event("startup")
async def start():
    asyncio.create_task(batcher())


@app.post("/v1/embeddings")
async def embeddings(request: Request):
    texts = [request.input] if isinstance(request.input, str) else request.input
    future = asyncio.get_running_loop().create_future()
    await queue.put((texts, future))
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(await future)]
    return {"object": "list", "data": data, "model": request.model}


@app.get("/health")
async def health():
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
