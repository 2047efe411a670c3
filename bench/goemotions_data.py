"""GoEmotions as JSONL for bench/goemotions_multilabel.sh: the first N rows of train, dev and
test (rater-agreement split), each {"text": ..., "labels": [emotion names]}.
Usage: python3 bench/goemotions_data.py DATA_DIR OUT_DIR [N_TRAIN] [N_EVAL]"""
import csv
import json
import sys

src, out = sys.argv[1], sys.argv[2]
n_train = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
n_eval = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
names = open(f"{src}/emotions.txt", encoding="utf-8").read().split()
for split, n in [("train", n_train), ("dev", n_eval), ("test", n_eval)]:
    with open(f"{src}/{split}.tsv", encoding="utf-8", newline="") as f, \
            open(f"{out}/{split}.jsonl", "w", encoding="utf-8") as w:
        for i, row in enumerate(csv.reader(f, delimiter="\t")):
            if i == n:
                break
            labels = [names[int(x)] for x in row[1].split(",")]
            w.write(json.dumps({"text": row[0], "labels": labels}) + "\n")
