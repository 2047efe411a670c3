"""The Python reference for the tasks beyond single-label classification: transformers' Trainer
on the files bench/tasks_data.py writes, with the hyper-parameters bertkit is given, scored as
the usual Python tools score them (scipy, scikit-learn, seqeval).

    python bench/tasks_trainer.py --task regression|multi-label|token-classification \
        --model DIR --train FILE --test FILE --max-len 128 --batch-size 16 --lr 5e-5 \
        --epochs 2 --seed 42 [--train-sampling-strategy group_by_length] --output OUT
Prints one JSON line with the metrics under bertkit's names and the training seconds.
"""
import argparse
import csv
import json
import time

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                          DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainingArguments)

p = argparse.ArgumentParser()
for a in ["--task", "--model", "--train", "--test", "--output"]:
    p.add_argument(a, required=True)
p.add_argument("--max-len", type=int, default=128)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--epochs", type=float, default=2)
p.add_argument("--seed", type=int, default=42)
p.add_argument("--train-sampling-strategy", default="random", choices=["random", "group_by_length"])
args = p.parse_args()
tok = AutoTokenizer.from_pretrained(args.model)


def read_conll(path):
    sentences = []
    for block in open(path, encoding="utf-8").read().split("\n\n"):
        lines = [l.split() for l in block.strip("\n").split("\n") if l.strip() and not l.startswith("-DOCSTART-")]
        if lines:
            sentences.append(([l[0] for l in lines], [l[-1] for l in lines]))
    return sentences


def token_items(sentences, tag_id):
    enc = tok([s[0] for s in sentences], is_split_into_words=True, truncation=True, max_length=args.max_len)
    items = []
    for i, (_, tags) in enumerate(sentences):
        words, previous, labels = enc.word_ids(i), None, []
        for w in words:
            labels.append(-100 if w is None or w == previous else tag_id[tags[w]])
            previous = w
        items.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels})
    return items


def text_items(texts, pairs, targets):
    enc = tok(texts, pairs, truncation=True, max_length=args.max_len)
    keys = [k for k in ["input_ids", "attention_mask", "token_type_ids"] if k in enc]
    return [dict({k: enc[k][i] for k in keys}, labels=t) for i, t in enumerate(targets)]


def regression():
    read = lambda path: list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    train, test = read(args.train), read(args.test)
    make = lambda rows: text_items([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                                   [float(r["score"]) for r in rows])
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, problem_type="regression")

    def score(pred):
        from scipy.stats import pearsonr, spearmanr
        y, g = pred.predictions.reshape(-1), pred.label_ids.reshape(-1)
        return {"mse": float(((y - g) ** 2).mean()), "pearson": float(pearsonr(y, g)[0]),
                "spearman": float(spearmanr(y, g)[0])}
    return model, make(train), make(test), DataCollatorWithPadding(tok), score


def multi_label():
    read = lambda path: [json.loads(l) for l in open(path, encoding="utf-8")]
    train, test = read(args.train), read(args.test)
    names = sorted({l for r in train for l in r["labels"]})
    hot = lambda r: [1.0 if n in r["labels"] else 0.0 for n in names]
    make = lambda rows: text_items([r["text"] for r in rows], None, [hot(r) for r in rows])
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), problem_type="multi_label_classification",
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})

    def score(pred):
        from sklearn.metrics import accuracy_score, f1_score
        y = (1 / (1 + np.exp(-pred.predictions))) >= 0.5
        g = pred.label_ids > 0.5
        return {"micro_f1": f1_score(g, y, average="micro", zero_division=0),
                "macro_f1": f1_score(g, y, average="macro", zero_division=0), "subset_accuracy": accuracy_score(g, y)}
    return model, make(train), make(test), DataCollatorWithPadding(tok), score


def token_classification():
    train, test = read_conll(args.train), read_conll(args.test)
    names = sorted({t for _, tags in train for t in tags})
    tag_id = {n: i for i, n in enumerate(names)}
    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=tag_id)

    def score(pred):
        from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
        y = np.argmax(pred.predictions, -1)
        keep = [[(names[p], names[g]) for p, g in zip(ps, gs) if g != -100] for ps, gs in zip(y, pred.label_ids)]
        yp, yg = [[p for p, _ in s] for s in keep], [[g for _, g in s] for s in keep]
        return {"precision": precision_score(yg, yp), "recall": recall_score(yg, yp), "f1": f1_score(yg, yp),
                "accuracy": accuracy_score(yg, yp)}
    return model, token_items(train, tag_id), token_items(test, tag_id), DataCollatorForTokenClassification(tok), score


start = time.time()
model, train_set, test_set, collator, score = {"regression": regression, "multi-label": multi_label,
                                               "token-classification": token_classification}[args.task]()
training = TrainingArguments(output_dir=args.output, per_device_train_batch_size=args.batch_size,
                             per_device_eval_batch_size=args.batch_size * 2, learning_rate=args.lr,
                             num_train_epochs=args.epochs, seed=args.seed, save_strategy="no",
                             report_to=[], logging_steps=50, use_cpu=not torch.cuda.is_available(),
                             train_sampling_strategy=args.train_sampling_strategy)
trainer = Trainer(model=model, args=training, train_dataset=train_set, data_collator=collator)
trainer.train()
train_s = time.time() - start
pred = trainer.predict(test_set)
metrics = {k: float(v) for k, v in score(pred).items()}
metrics["eval_loss"] = float(pred.metrics["test_loss"])
print(json.dumps({"tool": "transformers Trainer", "task": args.task, "train_seconds": train_s, **metrics}))
