"""Loads a bertkit-saved classifier in transformers and compares its predictions on a CSV with
the ones bertkit wrote (`bertkit predict --output preds.jsonl`).

    python bench/compare_predictions.py MODEL_DIR test.csv preds.jsonl --text-column review
"""
import argparse
import csv
import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("data")
p.add_argument("predictions")
p.add_argument("--text-column", default="text")
p.add_argument("--max-len", type=int, default=256)
args = p.parse_args()

model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
tok = AutoTokenizer.from_pretrained(args.model)
texts = [r[args.text_column] for r in csv.DictReader(open(args.data, newline="", encoding="utf-8"))]
ours = [json.loads(l) for l in open(args.predictions)]
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
same, max_diff = 0, 0.0
with torch.no_grad():
    for i in range(0, len(texts), 32):
        enc = tok(texts[i:i + 32], truncation=True, max_length=args.max_len, padding=True, return_tensors="pt")
        probs = model(**enc).logits.softmax(-1)
        for j, row in enumerate(probs):
            theirs = ours[i + j]
            same += labels[int(row.argmax())] == theirs["label"]
            max_diff = max(max_diff, max(abs(float(row[k]) - theirs["probabilities"][l]) for k, l in enumerate(labels)))
print(json.dumps({"examples": len(texts), "same_label": same, "max_probability_diff": max_diff}))
