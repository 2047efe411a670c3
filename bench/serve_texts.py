"""The request texts of the serving load tests: the first 500 IMDB reviews of
../shared/data/imdb/imdb_2500.csv, one per line, whitespace and <br /> tags folded, cut to their
first --words words if given.

    python3 bench/serve_texts.py OUT.txt [--words 60]
"""
import argparse
import csv
import re

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--words", type=int)
args = p.parse_args()
rows = list(csv.DictReader(open("../shared/data/imdb/imdb_2500.csv", encoding="utf-8")))
with open(args.out, "w", encoding="utf-8") as f:
    for r in rows[:500]:
        text = re.sub(r"\s+", " ", r["review"].replace("<br />", " "))
        f.write((" ".join(text.split()[:args.words]) if args.words else text) + "\n")
