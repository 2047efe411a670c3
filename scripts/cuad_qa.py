#!/usr/bin/env python3
"""CUAD as extractive question answering (SQuAD v2.0's JSON), built from CUAD's annotations.

CUAD's QA files are not on this machine; its annotations and contracts are. For every contract
and each of the 41 clause categories, one question, worded as CUAD words it (`Highlight the parts
(if any) of this contract related to "<Category>" that should be reviewed by a lawyer. Details:
<description>`), whose answers are that category's annotated excerpts located in the contract:

- Context: the contract's text with whitespace collapsed (runs of spaces and line breaks as one
  space), so that an excerpt copied across a line break is found; answer offsets are characters
  of that text.
- Answers: each excerpt found by exact match; one CUAD joined from parts with `<omitted>` gives
  each part, found in order, as an answer of its own. A question none of whose excerpts is found
  is left out (counted), not turned into an unanswerable one; a category without excerpts in a
  contract is an unanswerable question (CUAD's majority).
- Contracts: a text file matches its row of master_clauses.csv by name without extension, else
  by name with every non-alphanumeric character dropped; split 80/20 by contract with the SHA-1
  of the name (the split of scripts/cuad_retrieval.py, so its dapt.txt holds no test contract).
- Ids: `<contract>__<Category>`, as CUAD's (its metric treats "Parties" questions by their id).

Written: train.json, test.json (SQuAD v2.0), summary.json (every count). With --train-contracts
N / --test-contracts M: train-N.json / test-M.json, N and M contracts drawn with a fixed seed
(runs sized for a CPU), with --max-words W among the contracts of at most W words only (CUAD's
run from 100 to 100 000 words, and one of 35 000 takes 41 x 180 windows to read).

    python3 scripts/cuad_qa.py ../shared/data/cuad OUT_DIR [--train-contracts N] [--test-contracts M] [--max-words W]
"""
import argparse
import csv
import json
import os
import random
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuad_retrieval import annotations, contracts, locate, questions, split_of, stem  # noqa: E402


def paragraph(contract, text, notes, asked, counts):
    qas = []
    for category, question in asked.items():
        excerpts = [e for c, e in notes.get(contract, []) if c == category]
        answers = []
        for excerpt in excerpts:
            spans = locate(text, excerpt)
            if not spans:
                counts["excerpts not found"] += 1
                continue
            counts["excerpts found in parts (<omitted>)" if len(spans) > 1 else "excerpts found verbatim"] += 1
            answers.extend({"text": text[start:end], "answer_start": start} for start, end in spans)
        if excerpts and not answers:
            counts["questions left out (no excerpt found)"] += 1
            continue
        counts["answerable questions" if answers else "unanswerable questions"] += 1
        counts["answers"] += len(answers)
        qas.append({"id": f"{stem(contract)}__{category}", "question": question, "answers": answers,
                    "is_impossible": not answers})
    return {"context": text, "qas": qas}


def write(path, articles):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": "v2.0", "data": articles}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cuad")
    parser.add_argument("out")
    parser.add_argument("--train-contracts", type=int)
    parser.add_argument("--test-contracts", type=int)
    parser.add_argument("--max-words", type=int)
    args = parser.parse_args()
    asked = questions(os.path.join(args.cuad, "category_descriptions.csv"))
    csv.field_size_limit(1 << 30)
    notes = annotations(os.path.join(args.cuad, "CUAD_v1", "master_clauses.csv"), list(asked))
    counts = Counter()
    counts["excerpts annotated"] = sum(len(v) for v in notes.values())
    split = {"train": [], "test": []}
    for name, contract, text in contracts(args.cuad, notes, counts):
        split[split_of(contract)].append({"title": stem(contract), "paragraphs": [paragraph(contract, text, notes, asked, counts)]})
    os.makedirs(args.out, exist_ok=True)
    for part, articles in split.items():
        write(os.path.join(args.out, f"{part}.json"), articles)
        counts[f"{part} contracts"] = len(articles)
        counts[f"{part} questions"] = sum(len(a["paragraphs"][0]["qas"]) for a in articles)
    for part, n in (("train", args.train_contracts), ("test", args.test_contracts)):
        if n:
            words = lambda a: len(a["paragraphs"][0]["context"].split())  # noqa: E731
            pool = [a for a in split[part] if args.max_words is None or words(a) <= args.max_words]
            sample = random.Random(7).sample(pool, min(n, len(pool)))
            suffix = f"-{n}" + (f"-under-{args.max_words}" if args.max_words else "")
            write(os.path.join(args.out, f"{part}{suffix}.json"), sample)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(dict(sorted(counts.items())), f, indent=1)
    print(json.dumps(dict(sorted(counts.items())), indent=1))


if __name__ == "__main__":
    main()
