"""sentence-transformers' InformationRetrievalEvaluator on a BEIR-layout benchmark (queries.jsonl,
corpus.jsonl, qrels.tsv): the reference for `bertkit evaluate --queries --corpus --qrels`.
Prints one JSON line with the same metric names bertkit uses (ndcg_at_10, ...).

    python bench/ir_st.py MODEL DIR_WITH_QUERIES_CORPUS_QRELS
"""
import csv
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import InformationRetrievalEvaluator

model_dir, data = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)


def texts(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            title = row.get("title") or ""
            out[str(row["_id"])] = f"{title} {row['text']}" if title else row["text"]
    return out


queries, corpus = texts(f"{data}/queries.jsonl"), texts(f"{data}/corpus.jsonl")
relevant = {}
with open(f"{data}/qrels.tsv", encoding="utf-8") as f:
    for row in csv.DictReader(f, delimiter="\t"):
        if float(row["score"]) > 0:
            relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
model = SentenceTransformer(model_dir, device="cpu")
evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, batch_size=32,
                                          precision_recall_at_k=[1, 3, 5, 10, 100])
start = time.time()
scores = evaluator(model)
flat = {k.split("cosine_", 1)[1].replace("@", "_at_"): v for k, v in scores.items() if k.startswith("cosine_")}
print(json.dumps({"tool": "sentence-transformers", "seconds": round(time.time() - start, 1), **flat}))
