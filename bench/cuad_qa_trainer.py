#!/usr/bin/env python3
"""The reference side of bench/cuad_qa.sh: transformers' Trainer on CUAD-QA as run_qa.py trains
(AutoModelForQuestionAnswering, windows of MAX_LEN tokens sharing STRIDE, the no-answer target at
the first token), its training windows thinned as CUAD's train.py does (every window holding an
answer, as many without one drawn at random), then run_qa's post-processing (n best starts and
ends per window, raw logit sums, the null score the least over windows) and CUAD's measures,
their definitions written out from CUAD's evaluate.py: AUPR over confidence thresholds 0.99 ...
0.01, 0.001, 0 on the n-best answers' softmax probabilities, precision at 80% / 90% recall.

One difference from run_qa, which bertkit shares: a window's target is the first answer wholly
inside it, not only the first answer (CUAD questions have several).

    python3 bench/cuad_qa_trainer.py MODEL TRAIN.json TEST.json SEED LR EPOCHS BATCH MAX_LEN STRIDE OUT
Prints one JSON line: seed, seconds, windows, aupr, precision at 80/90% recall, exact, f1.
"""
import collections
import json
import random
import sys
import time

import numpy as np
import torch
from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments,
                          default_data_collator)

N_BEST, MAX_ANSWER = 20, 30


def read(path):
    out = []
    for article in json.load(open(path))["data"]:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                out.append({"id": qa["id"], "question": qa["question"].lstrip(), "context": p["context"],
                            "answers": qa["answers"]})
    return out


def windows(tok, examples, max_len, stride, with_targets):
    enc = tok([e["question"] for e in examples], [e["context"] for e in examples], truncation="only_second",
              max_length=max_len, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")
    mapping = enc.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(i)
        enc["offset_mapping"][i] = [o if seq[k] == 1 else None for k, o in enumerate(offsets)]
        if not with_targets:
            continue
        first = seq.index(1)
        last = len(seq) - 1 - seq[::-1].index(1)
        target = (0, 0)
        for a in examples[mapping[i]]["answers"]:
            s, e = a["answer_start"], a["answer_start"] + len(a["text"])
            if offsets[first][0] <= s and offsets[last][1] >= e:
                ts = first
                while ts <= last and offsets[ts][0] <= s:
                    ts += 1
                te = last
                while te >= first and offsets[te][1] >= e:
                    te -= 1
                target = (ts - 1, te + 1)
                break
        starts.append(target[0])
        ends.append(target[1])
    return enc, mapping, starts, ends


class Windows(torch.utils.data.Dataset):
    def __init__(self, enc, rows, starts=None, ends=None):
        self.enc, self.rows, self.starts, self.ends = enc, rows, starts, ends

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        item = {k: torch.tensor(self.enc[k][r]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.enc}
        if self.starts is not None:
            item["start_positions"] = torch.tensor(self.starts[r])
            item["end_positions"] = torch.tensor(self.ends[r])
        return item


def n_best(examples, enc, mapping, start_logits, end_logits):
    """run_qa's postprocess_qa_predictions (version_2_with_negative), then the n-best answers'
    softmax probabilities as the legacy SQuAD post-processing CUAD read gives them."""
    per_example = collections.defaultdict(list)
    for i, e in enumerate(mapping):
        per_example[e].append(i)
    out = {}
    for e, example in enumerate(examples):
        null, preds = None, []
        for i in per_example[e]:
            s, t, offsets = start_logits[i], end_logits[i], enc["offset_mapping"][i]
            score = s[0] + t[0]
            null = score if null is None or score < null else null
            for a in np.argsort(s)[-1:-N_BEST - 1:-1]:
                for b in np.argsort(t)[-1:-N_BEST - 1:-1]:
                    if a >= len(offsets) or b >= len(offsets) or offsets[a] is None or offsets[b] is None:
                        continue
                    if b < a or b - a + 1 > MAX_ANSWER:
                        continue
                    preds.append((s[a] + t[b], example["context"][offsets[a][0]:offsets[b][1]]))
        preds = sorted(preds, key=lambda p: -p[0])[:N_BEST] + [(null, "")]
        scores = np.array([p[0] for p in preds], dtype=np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        out[example["id"]] = [{"text": t, "probability": float(p), "score": float(s)} for (s, t), p in zip(preds, probs)]
    return out


# CUAD's evaluate.py, its definitions.
def jaccard(gt, pred):
    for token in [".", ",", ";", ":"]:
        gt, pred = gt.replace(token, ""), pred.replace(token, "")
    gt, pred = set(gt.lower().replace("/", " ").split(" ")), set(pred.lower().replace("/", " ").split(" "))
    return len(gt & pred) / len(gt | pred)


def precision_recall(gold, preds):
    tp = fp = fn = 0
    for key, answers in gold.items():
        ok = lambda a, p: jaccard(a, p) >= 0.5 or ("Parties" in key and a in p)  # noqa: E731
        if not answers:
            fp += len(preds[key])
            continue
        for a in answers:
            tp, fn = (tp + 1, fn) if any(ok(a, p) for p in preds[key]) else (tp, fn + 1)
        fp += sum(1 for p in preds[key] if not any(ok(a, p) for a in answers))
    return (tp / (tp + fp) if tp + fp else np.nan), (tp / (tp + fn) if tp + fn else np.nan)


def cuad_measures(gold, nbest):
    precisions, recalls, confs = [1], [0], []
    for conf in list(np.arange(0.99, 0, -0.01)) + [0.001, 0]:
        preds = {}
        for key, answers in nbest.items():
            texts = {a["text"]: a["probability"] for a in answers if a["text"] != ""}
            preds[key] = [t for t, p in texts.items() if p > conf]
        p, r = precision_recall(gold, preds)
        precisions.append(p)
        recalls.append(r)
        confs.append(conf)
    best = precisions[::-1]
    for i in range(1, len(best)):
        best[i] = max(best[i - 1], best[i])
    processed = best[::-1]
    at = lambda t: next((p for p, r, _ in zip(processed, recalls, confs) if r >= t), 0)  # noqa: E731
    from sklearn import metrics
    aupr = metrics.auc(recalls, processed)
    return {"aupr": 0 if np.isnan(aupr) else aupr, "precision_at_80_recall": at(0.8), "precision_at_90_recall": at(0.9)}


def main():
    model_dir, train_path, test_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lr, epochs, batch, max_len, stride, out = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), \
        int(sys.argv[8]), int(sys.argv[9]), sys.argv[10]
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(model_dir)
    train = read(train_path)
    enc, _, starts, ends = windows(tok, train, max_len, stride, True)
    rng = random.Random(seed)
    positive = [i for i, s in enumerate(starts) if s != 0]
    negative = [i for i, s in enumerate(starts) if s == 0]
    rows = sorted(positive + rng.sample(negative, min(len(positive), len(negative))))
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    args = TrainingArguments(output_dir=out, learning_rate=lr, num_train_epochs=epochs, per_device_train_batch_size=batch,
                             warmup_steps=0.1, weight_decay=0.0, seed=seed, save_strategy="no", report_to=[],
                             logging_steps=50, use_cpu=True, dataloader_num_workers=0)
    started = time.time()
    Trainer(model=model, args=args, train_dataset=Windows(enc, rows, starts, ends),
            data_collator=default_data_collator).train()
    seconds = time.time() - started
    test = read(test_path)
    tenc, tmap, _, _ = windows(tok, test, max_len, stride, False)
    model.eval()
    all_start, all_end = [], []
    with torch.no_grad():
        for b in range(0, len(tmap), 64):
            inputs = {k: torch.tensor(tenc[k][b:b + 64]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in tenc}
            o = model(**inputs)
            all_start.extend(o.start_logits.numpy())
            all_end.extend(o.end_logits.numpy())
    nbest = n_best(test, tenc, tmap, all_start, all_end)
    gold = {e["id"]: [a["text"] for a in e["answers"]] for e in test}
    measures = cuad_measures(gold, nbest)
    print(json.dumps({"tool": "trainer", "seed": seed, "train_seconds": round(seconds, 1), "windows": len(rows),
                      **{k: round(float(v), 4) for k, v in measures.items()}}))


if __name__ == "__main__":
    main()
