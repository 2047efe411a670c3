"""The reference side of the STS-B embedding bar: sentence-transformers' own trainer with
CoSENTLoss on the same model, data and hyper-parameters as `bertkit finetune --task embedding
--loss cosent`, then the test set's Spearman and Pearson of the cosine (its
EmbeddingSimilarityEvaluator). Prints one JSON line.

    python bench/sts_st.py MODEL TRAIN.csv TEST.csv SEED LR EPOCHS BATCH WARMUP_RATIO OUT_DIR
"""
import csv
import json
import sys
import time

import torch
from datasets import Dataset
from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                   SentenceTransformerTrainingArguments, losses)
from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

model_dir, train, test, seed, lr, epochs, batch, warmup, out = sys.argv[1:10]
torch.set_num_threads(2)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"sentence1": [r["sentence1"] for r in rows], "sentence2": [r["sentence2"] for r in rows],
            "score": [float(r["score"]) for r in rows]}


model = SentenceTransformer(model_dir, device="cpu")
args = SentenceTransformerTrainingArguments(
    output_dir=out, num_train_epochs=float(epochs), per_device_train_batch_size=int(batch),
    learning_rate=float(lr), warmup_ratio=float(warmup), weight_decay=0.0, seed=int(seed),
    lr_scheduler_type="linear", save_strategy="no", report_to="none", logging_steps=50, use_cpu=True)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(read(train)),
                                     loss=losses.CoSENTLoss(model, scale=20.0))
start = time.time()
trainer.train()
seconds = time.time() - start
t = read(test)
evaluator = EmbeddingSimilarityEvaluator(t["sentence1"], t["sentence2"], t["score"], name="test")
scores = evaluator(model)
print(json.dumps({"tool": "sentence-transformers", "seed": int(seed), "seconds": round(seconds, 1),
                  "spearman": scores["test_spearman_cosine"], "pearson": scores["test_pearson_cosine"]}))
