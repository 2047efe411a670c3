"""The long-document quality check's data: a fixed-seed sample of the full Large Movie Review
Dataset (aclImdb) -- TRAIN reviews from its train split and TEST from its test split, balanced --
as CSV (text,label), plus the test reviews longer than MAX_LEN tokens for all-MiniLM-L6-v2.

    python bench/imdb_long_data.py OUT_DIR [--train 2000] [--test 1000] [--max-len 128]
"""
import argparse
import csv
import random
import tarfile
from pathlib import Path

from transformers import AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--archive", default="../shared/data/imdb/aclImdb_train_test.tar.gz")
p.add_argument("--model", default=".models/all-MiniLM-L6-v2")
p.add_argument("--train", type=int, default=2000)
p.add_argument("--test", type=int, default=1000)
p.add_argument("--max-len", type=int, default=128)
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# Two sequential passes over the archive (reading a member out of order re-reads the gzip stream).
reviews = {("train", "pos"): [], ("train", "neg"): [], ("test", "pos"): [], ("test", "neg"): []}
with tarfile.open(args.archive) as tar:
    for member in tar:
        parts = member.name.split("/")
        if member.isfile() and len(parts) == 4 and (parts[1], parts[2]) in reviews:
            reviews[(parts[1], parts[2])].append(member.name)
rng = random.Random(42)
picked = {}
for (split, label), names in reviews.items():
    n = (args.train if split == "train" else args.test) // 2
    picked[(split, label)] = rng.sample(sorted(names), n)
wanted = {name for names in picked.values() for name in names}
texts = {}
with tarfile.open(args.archive) as tar:
    for member in tar:
        if member.name in wanted:
            texts[member.name] = tar.extractfile(member).read().decode("utf-8")
chosen = {key: [texts[name] for name in names] for key, names in picked.items()}

tok = AutoTokenizer.from_pretrained(args.model)
for split in ["train", "test"]:
    rows = [(t, label) for label in ["pos", "neg"] for t in chosen[(split, label)]]
    random.Random(7).shuffle(rows)
    lengths = [len(ids) for ids in tok([t for t, _ in rows])["input_ids"]]
    subsets = [(f"{split}.csv", rows)]
    if split == "test":
        subsets.append(("test_long.csv", [r for r, n in zip(rows, lengths) if n > args.max_len]))
    for name, part in subsets:
        with open(out / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
        print(f"{out / name}: {len(part)} reviews")
    print(f"{split}: median {sorted(lengths)[len(lengths) // 2]} tokens, {sum(n > args.max_len for n in lengths)} longer than {args.max_len}")
