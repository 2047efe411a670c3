"""Prepares the quality-bar data of the text-level and token-level tasks from ../shared/data, as
files both bertkit and bench/tasks_trainer.py read:

    python bench/tasks_data.py OUT_DIR [--conll-train N] [--goemotions-train N]

- stsb/{train,dev}.csv: sentence1, sentence2, score (GLUE STS-B, read with QUOTE_NONE);
- goemotions/{train,test}.jsonl: {"text", "labels": [emotion names]} (first N train rows);
- conll/{train,test}.conll: CoNLL-2003 (first N train sentences, the whole test file).
"""
import argparse
import csv
import json
import os

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--data", default="../shared/data")
p.add_argument("--conll-train", type=int, default=4000)
p.add_argument("--goemotions-train", type=int, default=8000)
args = p.parse_args()


def stsb():
    os.makedirs(f"{args.out}/stsb", exist_ok=True)
    for split in ["train", "dev"]:
        rows = list(csv.DictReader(open(f"{args.data}/stsb/{split}.tsv", encoding="utf-8"), delimiter="\t",
                                   quoting=csv.QUOTE_NONE))
        with open(f"{args.out}/stsb/{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["sentence1", "sentence2", "score"])
            for r in rows:
                w.writerow([r["sentence1"], r["sentence2"], r["score"]])


def goemotions():
    os.makedirs(f"{args.out}/goemotions", exist_ok=True)
    names = open(f"{args.data}/goemotions/emotions.txt", encoding="utf-8").read().split()
    for split, limit in [("train", args.goemotions_train), ("test", None)]:
        rows = list(csv.reader(open(f"{args.data}/goemotions/{split}.tsv", encoding="utf-8"), delimiter="\t"))
        with open(f"{args.out}/goemotions/{split}.jsonl", "w", encoding="utf-8") as f:
            for text, ids, _ in rows[:limit]:
                f.write(json.dumps({"text": text, "labels": [names[int(i)] for i in ids.split(",")]}) + "\n")


def conll():
    os.makedirs(f"{args.out}/conll", exist_ok=True)
    for split, limit in [("train", args.conll_train), ("test", None)]:
        blocks = open(f"{args.data}/conll2003/{split}.txt", encoding="utf-8").read().split("\n\n")
        sentences = [b.strip("\n") for b in blocks if b.strip() and not b.strip().startswith("-DOCSTART-")]
        with open(f"{args.out}/conll/{split}.conll", "w", encoding="utf-8") as f:
            f.write("\n\n".join(sentences[:limit]) + "\n")


stsb()
goemotions()
conll()
