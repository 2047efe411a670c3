"""STS-B as CSV (sentence1, sentence2, score) for the embedding quality bar: GLUE's train and
dev files, and the STS Benchmark's gold test set (`original/sts-test.tsv`, headerless), all read
with quotes as plain text (the files hold unbalanced quotes).

    python bench/sts_data.py ../shared/data/stsb OUT_DIR
"""
import csv
import sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)


def rows(path, header):
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if header:
            names = next(reader)
            at = {n: i for i, n in enumerate(names)}
            return [(r[at["sentence1"]], r[at["sentence2"]], r[at["score"]]) for r in reader]
        # genre filename year id score sentence1 sentence2 [source1 source2]
        return [(r[5].lstrip(), r[6].lstrip(), r[4]) for r in reader]


for name, path, header in [("train", "train.tsv", True), ("dev", "dev.tsv", True),
                           ("test", "original/sts-test.tsv", False)]:
    part = rows(src / path, header)
    with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        w.writerows(part)
    print(f"{out / name}.csv: {len(part)} pairs")
