"""The CUAD reranking set, from the retrieval set of scripts/cuad_retrieval.py (run it first).

train.csv (query, passage, label): N of its train triples (question, relevant passage, a passage
of the same contract without that clause), drawn with seed 0, as a 1 and a 0 row each.
test.csv (query, passage, label): for each of the 41 questions, every passage of one test
contract (drawn with seed 0 among those holding such a clause), labelled by the judgements:
"where in this contract is the clause", a list of ~60 passages per question.

    python bench/cuad_rerank_data.py RETRIEVAL_DIR OUT_DIR [N]
"""
import csv
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

csv.field_size_limit(1 << 30)
source, out = Path(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 800
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(0)


def write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage", "label"])
        w.writerows(rows)


with open(source / "train.csv", newline="", encoding="utf-8") as f:
    triples = list(csv.DictReader(f))
rows = []
for t in rng.sample(triples, min(n, len(triples))):
    rows += [(t["question"], t["passage"], 1), (t["question"], t["negative"], 0)]
write(out / "train.csv", rows)
train_pairs = len(rows)

queries = [json.loads(line) for line in open(source / "test/queries.jsonl", encoding="utf-8")]
passages = [json.loads(line) for line in open(source / "test/corpus.jsonl", encoding="utf-8")]
by_contract = defaultdict(list)
for p in passages:
    by_contract[p["_id"].rsplit("#", 1)[0]].append(p)
relevant = defaultdict(set)
with open(source / "test/qrels.tsv", encoding="utf-8") as f:
    next(f)
    for line in f:
        q, doc, score = line.rstrip("\n").split("\t")
        if int(score) > 0:
            relevant[q].add(doc)
rows, lists = [], 0
for q in queries:
    contracts = sorted({d.rsplit("#", 1)[0] for d in relevant[q["_id"]]})
    if not contracts:
        continue
    contract = rng.choice(contracts)
    rows += [(q["text"], p["text"], int(p["_id"] in relevant[q["_id"]])) for p in by_contract[contract]]
    lists += 1
write(out / "test.csv", rows)
print(json.dumps({"train pairs": train_pairs, "test lists": lists, "test pairs": len(rows),
                  "test relevant": sum(r[2] for r in rows)}))
