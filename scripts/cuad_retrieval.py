#!/usr/bin/env python3
"""A legal retrieval set from CUAD: find the passages of contracts that hold a clause type.

- Queries: CUAD's 41 category questions, worded as its QA set words them: `Highlight the parts
  (if any) of this contract related to "<Category>" that should be reviewed by a lawyer.
  Details: <description>` (`category_descriptions.csv`).
- Passages: each contract's text (whitespace collapsed) in windows of 200 words, 50 words shared
  by consecutive windows, so that a clause cut by one window's edge is whole in the next.
- Judgements: a passage is relevant to a category where it holds at least half of one of that
  category's annotated excerpts in the contract (`master_clauses.csv`), located in the text by
  exact match after collapsing whitespace (an excerpt CUAD joined from parts with `<omitted>`:
  each part, in order); excerpts not found are counted and left out.
- Contracts: a text file matches its row of master_clauses.csv by name without extension (and,
  failing that, by name with every non-alphanumeric character dropped); split by contract, the
  SHA-1 of the name deciding, 80% train, 20% test.

Written (BEIR's layout for the test set, rows for training):
  test/queries.jsonl, test/corpus.jsonl, test/qrels.tsv   every passage of the test contracts
  train.csv   (question, passage, negative): each relevant train passage with a passage of the same
              contract that holds no clause of that category (a hard negative, seeded)
  dapt.txt    the train contracts' texts, one paragraph each: a corpus for further pretraining
              that holds no test contract
  summary.json   the counts

  train-N.csv   with a third argument N: N rows of train.csv drawn with a fixed seed

    python3 scripts/cuad_retrieval.py ../shared/data/cuad OUT_DIR [N]
"""
import ast
import csv
import hashlib
import json
import os
import random
import re
import sys
import unicodedata
from collections import Counter, defaultdict

WINDOW, OVERLAP = 200, 50


def stem(name):
    return os.path.splitext(name)[0].strip().lower()


def loose(name):
    """The name's letters and digits, accents dropped (`LECLANCHÉ` is `LECLANCHE` in the table)."""
    plain = unicodedata.normalize("NFKD", stem(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain)


def split_of(contract):
    return "test" if int(hashlib.sha1(stem(contract).encode()).hexdigest(), 16) % 5 == 0 else "train"


def questions(path):
    out = {}
    with open(path, encoding="utf-8-sig") as f:
        for row in list(csv.reader(f))[1:]:
            category = row[0].removeprefix("Category:").strip()
            description = row[1].removeprefix("Description:").strip()
            out[category] = (f'Highlight the parts (if any) of this contract related to "{category}" that should '
                             f"be reviewed by a lawyer. Details: {description}")
    return out


def annotations(master, categories):
    """contract -> [(category, excerpt)], whitespace collapsed. The table's columns are the
    categories in title case (`Change Of Control` for `Change of Control`): matched ignoring case."""
    csv.field_size_limit(1 << 30)
    out = defaultdict(list)
    with open(master, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        column = {c.lower(): c for c in reader.fieldnames}
        missing = [c for c in categories if c.lower() not in column]
        if missing:
            sys.exit(f"{master}: no column for {missing}")
        for row in reader:
            for category in categories:
                cell = row[column[category.lower()]]
                for text in ast.literal_eval(cell) if cell.strip().startswith("[") else []:
                    text = " ".join(text.split())
                    if text:
                        out[row["Filename"]].append((category, text))
    return out


def locate(text, excerpt):
    """The character spans of an excerpt in the text: CUAD joins discontiguous parts of a clause
    with `<omitted>`, each part found after the previous one; empty when a part is not there."""
    spans, at = [], 0
    for part in (p.strip() for p in excerpt.split("<omitted>")):
        if not part:
            continue
        start = text.find(part, at)
        if start < 0:
            return []
        spans.append((start, start + len(part)))
        at = start + len(part)
    return spans


def windows(text):
    """(start char, end char, passage) of every window of WINDOW words."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    out, step = [], WINDOW - OVERLAP
    for first in range(0, max(1, len(words) - OVERLAP), step):
        last = min(first + WINDOW, len(words)) - 1
        start, end = words[first][0], words[last][1]
        out.append((start, end, text[start:end]))
    return out


def contracts(cuad, notes, counts):
    """(file name, annotations key, text with whitespace collapsed) of every contract text that
    matches a row of the annotations, by name, else by name's letters and digits."""
    by_stem = {stem(c): c for c in notes}
    by_loose = {loose(c): c for c in notes}
    texts_dir = os.path.join(cuad, "CUAD_v1", "full_contract_txt")
    for name in sorted(os.listdir(texts_dir)):
        contract = by_stem.get(stem(name))
        counts["contracts matched by name"] += contract is not None
        if contract is None:
            contract = by_loose.get(loose(name))
            counts["contracts matched loosely"] += contract is not None
        if contract is None:
            counts["contract texts matching no annotations"] += 1
            continue
        with open(os.path.join(texts_dir, name), encoding="utf-8", errors="replace") as f:
            yield name, contract, " ".join(f.read().split())


def main(cuad, out_dir):
    asked = questions(os.path.join(cuad, "category_descriptions.csv"))
    notes = annotations(os.path.join(cuad, "CUAD_v1", "master_clauses.csv"), list(asked))
    counts = Counter()
    rng = random.Random(13)
    passages = {"train": [], "test": []}  # (contract, window index, text, {categories})
    dapt = []
    for _, contract, text in contracts(cuad, notes, counts):
        spans = []
        for category, excerpt in notes[contract]:
            found = locate(text, excerpt)
            pieces = "<omitted>" in excerpt
            counts[("excerpts found in pieces (<omitted>)" if pieces else "excerpts found verbatim")
                   if found else "excerpts not found"] += 1
            spans.extend((category, s, e) for s, e in found)
        split = split_of(contract)
        if split == "train":
            dapt.append(text)
        for i, (start, end, passage) in enumerate(windows(text)):
            held = {c for c, s, e in spans if min(end, e) - max(start, s) >= (e - s) / 2}
            passages[split].append((contract, i, passage, held))
    write_test(out_dir, asked, passages["test"])
    with open(os.path.join(out_dir, "dapt.txt"), "w") as f:
        f.write("\n\n".join(dapt) + "\n")
    counts["train pairs"] = write_train(out_dir, asked, passages["train"], rng)
    counts["test passages"] = len(passages["test"])
    counts["test judgements"] = sum(len(p[3]) for p in passages["test"])
    counts["train contracts"] = len({p[0] for p in passages["train"]})
    counts["test contracts"] = len({p[0] for p in passages["test"]})
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(dict(counts), f, indent=1)
    print(json.dumps(dict(counts), indent=1))


def write_test(out_dir, asked, passages):
    test = os.path.join(out_dir, "test")
    os.makedirs(test, exist_ok=True)
    ids = {category: f"c{i:02d}" for i, category in enumerate(asked)}
    with open(os.path.join(test, "queries.jsonl"), "w", encoding="utf-8") as f:
        for category, question in asked.items():
            f.write(json.dumps({"_id": ids[category], "text": question, "category": category}) + "\n")
    with open(os.path.join(test, "corpus.jsonl"), "w", encoding="utf-8") as f, \
            open(os.path.join(test, "qrels.tsv"), "w", encoding="utf-8") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for contract, i, passage, held in passages:
            pid = f"{stem(contract)}#{i}"
            f.write(json.dumps({"_id": pid, "text": passage}) + "\n")
            for category in sorted(held):
                q.write(f"{ids[category]}\t{pid}\t1\n")


def write_train(out_dir, asked, passages, rng):
    of_contract = defaultdict(list)
    for p in passages:
        of_contract[p[0]].append(p)
    rows = []
    for contract, own in sorted(of_contract.items()):
        for _, _, passage, held in own:
            for category in sorted(held):
                negatives = [p[2] for p in own if category not in p[3]]
                if negatives:
                    rows.append((asked[category], passage, rng.choice(negatives)))
    rng.shuffle(rows)
    with open(os.path.join(out_dir, "train.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "passage", "negative"])
        w.writerows(rows)
    return len(rows)


def write_sample(out_dir, n):
    """train-N.csv: N rows of train.csv, drawn with a fixed seed (a budget for the benches)."""
    with open(os.path.join(out_dir, "train.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    random.Random(7).shuffle(body)
    with open(os.path.join(out_dir, f"train-{n}.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([head] + body[:n])


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    main(sys.argv[1], sys.argv[2])
    if len(sys.argv) == 4:
        write_sample(sys.argv[2], int(sys.argv[3]))
