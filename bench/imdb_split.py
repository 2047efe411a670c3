"""The fixed-seed IMDB split used by the fine-tuning quality bar: 1 000 held out, 1 500 train.

    python bench/imdb_split.py ../shared/data/imdb/imdb_2500.csv OUT_DIR
"""
import csv
import random
import sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
with src.open(newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    fields, rows = reader.fieldnames, list(reader)
random.Random(42).shuffle(rows)
out.mkdir(parents=True, exist_ok=True)
for name, part in [("test.csv", rows[:1000]), ("train.csv", rows[1000:])]:
    with (out / name).open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(part)
print(f"{out}/train.csv: {len(rows) - 1000} rows, {out}/test.csv: 1000 rows")
