"""The reference side of the CUAD reranker bar: sentence-transformers' CrossEncoderTrainer with
BinaryCrossEntropyLoss on the same model, data and hyper-parameters as `bertkit finetune --task
rerank`, then its CrossEncoderRerankingEvaluator on the test lists (each question's candidates
split into positives and negatives, as bertkit's `evaluate` reads them). Prints one JSON line.
With `base`: no training; the lists ordered by the base model as a bi-encoder (cosine of its
sentence vectors), what a reranker has to beat.

    python bench/cuad_rerank_st.py MODEL TRAIN.csv TEST.csv SEED LR EPOCHS BATCH WARMUP MAX_LEN OUT_DIR
    python bench/cuad_rerank_st.py MODEL base TEST.csv
"""
import csv
import json
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
from datasets import Dataset

csv.field_size_limit(1 << 30)
torch.set_num_threads(2)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def lists(rows):
    """Each question's candidates in file order: (query, [(passage, relevant)])."""
    grouped = OrderedDict()
    for r in rows:
        grouped.setdefault(r["query"], []).append((r["passage"], float(r["label"]) > 0.5))
    return grouped


def samples(rows):
    return [{"query": q, "positive": [p for p, rel in c if rel], "negative": [p for p, rel in c if not rel]}
            for q, c in lists(rows).items()]


model_dir, train = sys.argv[1], sys.argv[2]
if train == "base":
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    encoder = SentenceTransformer(model_dir, device="cpu")
    evaluator = CrossEncoderRerankingEvaluator(samples(read(sys.argv[3])), at_k=10)
    mrr, ndcg, ap = [], [], []
    for q, candidates in lists(read(sys.argv[3])).items():
        vectors = encoder.encode([q] + [p for p, _ in candidates], normalize_embeddings=True)
        scores = vectors[1:] @ vectors[0]
        y = [int(rel) for _, rel in candidates]
        m = evaluator.compute_metrics(y, scores, sum(y)) if sum(y) else (0, 0, 0)
        mrr.append(m[0]), ndcg.append(m[1]), ap.append(m[2])
    print(json.dumps({"tool": "base model as a bi-encoder", "ndcg_at_10": float(np.mean(ndcg)),
                      "mrr_at_10": float(np.mean(mrr)), "map": float(np.mean(ap))}))
    sys.exit()

from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

test, seed, lr, epochs, batch, warmup, max_len, out = sys.argv[3:11]
model = CrossEncoder(model_dir, num_labels=1, max_length=int(max_len), device="cpu")
t = read(train)
data = Dataset.from_dict({"query": [r["query"] for r in t], "passage": [r["passage"] for r in t],
                          "label": [float(r["label"]) for r in t]})
args = CrossEncoderTrainingArguments(
    output_dir=out, num_train_epochs=float(epochs), per_device_train_batch_size=int(batch),
    learning_rate=float(lr), warmup_ratio=float(warmup), weight_decay=0.0, seed=int(seed),
    lr_scheduler_type="linear", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True)
trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model))
start = time.time()
trainer.train()
seconds = time.time() - start
evaluator = CrossEncoderRerankingEvaluator(samples(read(test)), at_k=10, batch_size=64, name="test")
scores = evaluator(model)
print(json.dumps({"tool": "sentence-transformers", "seed": int(seed), "seconds": round(seconds, 1),
                  "ndcg_at_10": scores["test_ndcg@10"], "mrr_at_10": scores["test_mrr@10"],
                  "map": scores["test_map"]}))
