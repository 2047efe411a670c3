#!/usr/bin/env python3
"""The legal downstream task of the domain-adaptation study (README, "Does further pretraining
help?"): clause-type classification built from CUAD's master_clauses.csv.

Each annotated clause excerpt becomes one example, labelled by its CUAD category. Left out:
the four categories that name things rather than clauses (Parties, Document Name, Agreement
Date, Effective Date), categories with fewer than 100 excerpts, and excerpts annotated under
more than one category of the same contract (no single right label). The split is by contract,
so no contract gives examples to two splits: a contract's name hashed (SHA-1) decides, 70% train,
10% dev (chooses checkpoints), 20% test (reported only).

Also writes `dapt-corpus/`: links to the full texts of the train and dev contracts only, so
further pretraining never reads a test contract. Full texts whose name matches no annotated
contract are left out of it as well. With an IMDB CSV (review,sentiment) as a third argument,
`general.txt` holds its first 500 reviews: general-domain text to measure forgetting on.

    python3 scripts/cuad_clauses.py ../shared/data/cuad/CUAD_v1 target/cuad-clauses [../shared/data/imdb/imdb_2500.csv]
"""
import ast
import csv
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict

NOT_CLAUSES = {"Parties", "Document Name", "Agreement Date", "Effective Date"}
MIN_EXCERPTS = 100


def stem(name):
    return os.path.splitext(name)[0].strip().lower()


def split_of(contract):
    bucket = int(hashlib.sha1(stem(contract).encode()).hexdigest(), 16) % 10
    return "test" if bucket < 2 else "dev" if bucket == 2 else "train"


def excerpts(master):
    """(contract, text, category) of every clause excerpt, categories as the CSV names them."""
    csv.field_size_limit(1 << 30)
    with open(master, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for column, cell in row.items():
                if column == "Filename" or column.endswith("-Answer") or column in NOT_CLAUSES:
                    continue
                for text in ast.literal_eval(cell) if cell.strip().startswith("[") else []:
                    text = " ".join(text.split())
                    if text:
                        yield row["Filename"], text, column


def main(cuad, out):
    rows = list(excerpts(os.path.join(cuad, "master_clauses.csv")))
    categories_of = defaultdict(set)
    for contract, text, category in rows:
        categories_of[(contract, text)].add(category)
    ambiguous = {key for key, cats in categories_of.items() if len(cats) > 1}
    counts = Counter(c for (k, cats) in categories_of.items() if k not in ambiguous for c in cats)
    kept = {c for c, n in counts.items() if n >= MIN_EXCERPTS}
    splits = defaultdict(list)
    for (contract, text), cats in sorted(categories_of.items()):
        category = next(iter(cats))
        if (contract, text) not in ambiguous and category in kept:
            splits[split_of(contract)].append({"text": text, "label": category})
    os.makedirs(out, exist_ok=True)
    for name, examples in splits.items():
        with open(os.path.join(out, f"{name}.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(examples)
    annotated = {stem(contract): split_of(contract) for contract, _, _ in rows}
    corpus = os.path.join(out, "dapt-corpus")
    os.makedirs(corpus, exist_ok=True)
    texts = os.path.join(cuad, "full_contract_txt")
    linked = unmatched = 0
    for name in sorted(os.listdir(texts)):
        split = annotated.get(stem(name))
        unmatched += split is None
        if split in ("train", "dev") and not os.path.exists(os.path.join(corpus, name)):
            os.symlink(os.path.abspath(os.path.join(texts, name)), os.path.join(corpus, name))
        linked += split in ("train", "dev")
    summary = {
        "classes": sorted(kept),
        "examples": {k: len(v) for k, v in sorted(splits.items())},
        "ambiguous_excerpts_dropped": len(ambiguous),
        "categories_dropped": sorted(set(counts) - kept),
        "dapt_corpus_contracts": linked,
        "full_texts_matching_no_annotated_contract": unmatched,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


def general_text(imdb_csv, out, n=500):
    with open(imdb_csv, encoding="utf-8") as f:
        reviews = [row["review"].replace("<br />", " ") for _, row in zip(range(n), csv.DictReader(f))]
    with open(os.path.join(out, "general.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(" ".join(r.split()) for r in reviews) + "\n")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
    if len(sys.argv) == 4:
        general_text(sys.argv[3], sys.argv[2])
