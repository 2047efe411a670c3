"""The Python reference for fine-tuning: transformers' Trainer with its defaults and
DataCollatorWithPadding, on the same CSV files and hyper-parameters bertkit is given.

    python bench/finetune_trainer.py --model DIR --train train.csv --test test.csv \
        --text-column review --label-column sentiment --max-len 256 --batch-size 16 \
        --lr 5e-5 --epochs 2 --seed 42 --output OUT
Prints one JSON line: accuracy, wall-clock seconds of training and of evaluation.
"""
import argparse
import csv
import json
import time

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          Trainer, TrainingArguments)

p = argparse.ArgumentParser()
for a in ["--model", "--train", "--output"]:
    p.add_argument(a, required=True)
p.add_argument("--test", help="held-out CSV to predict after training (skipped when absent)")
p.add_argument("--text-column", default="text")
p.add_argument("--label-column", default="label")
p.add_argument("--max-len", type=int, default=256)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--epochs", type=float, default=2)
p.add_argument("--seed", type=int, default=42)
args = p.parse_args()

start = time.time()
read = lambda path: list(csv.DictReader(open(path, newline="", encoding="utf-8")))
train_rows = read(args.train)
test_rows = read(args.test) if args.test else []
labels = sorted({r[args.label_column] for r in train_rows})
label2id = {l: i for i, l in enumerate(labels)}
tok = AutoTokenizer.from_pretrained(args.model)


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows):
        enc = tok([r[args.text_column] for r in rows], truncation=True, max_length=args.max_len)
        self.items = [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": label2id[r[args.label_column]]}
                      for i, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], rows)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


train_set, test_set = Rows(train_rows), (Rows(test_rows) if test_rows else None)
model = AutoModelForSequenceClassification.from_pretrained(
    args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
training = TrainingArguments(output_dir=args.output, per_device_train_batch_size=args.batch_size,
                             per_device_eval_batch_size=args.batch_size * 2, learning_rate=args.lr,
                             num_train_epochs=args.epochs, seed=args.seed, save_strategy="no",
                             report_to=[], logging_steps=50, use_cpu=not torch.cuda.is_available())
pad = DataCollatorWithPadding(tok)
counts = {"tokens": 0, "padded_tokens": 0}


def collate(rows):
    # Counts what training computes: real tokens and padded positions.
    batch = pad(rows)
    counts["tokens"] += int(batch["attention_mask"].sum())
    counts["padded_tokens"] += batch["input_ids"].numel()
    return batch


trainer = Trainer(model=model, args=training, train_dataset=train_set, data_collator=collate)
trainer.train()
trainer.save_model(args.output)
train_s = time.time() - start
result = {"tool": "transformers Trainer", "train_seconds": train_s, **counts}
if test_rows:
    start = time.time()
    pred = trainer.predict(test_set)
    result["accuracy"] = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    result["eval_seconds"] = time.time() - start
print(json.dumps(result))
