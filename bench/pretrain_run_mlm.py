"""The Python reference for further pretraining, in the style of transformers' run_mlm.py:
the same corpus files, chunking into [CLS] block [SEP] of --max-len tokens (documents joined by
[SEP], as bertkit's --chunking group), the same held-out blocks, DataCollatorForLanguageModeling
(15% / 80-10-10 dynamic masking), Trainer with its defaults.

    python bench/pretrain_run_mlm.py --model DIR --corpus DIR_OR_FILES... --output OUT \
        --max-len 128 --batch-size 16 --lr 5e-5 --max-steps 2000 --eval-split 0.05 --seed 42
Prints one JSON line: held-out loss before and after, tokens/s of training, wall-clock seconds.
"""
import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
from transformers import (AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                          TrainingArguments)

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--corpus", nargs="+", required=True)
p.add_argument("--output", required=True)
p.add_argument("--max-len", type=int, default=128)
p.add_argument("--batch-size", type=int, default=16)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--max-steps", type=int, default=-1)
p.add_argument("--epochs", type=float, default=1)
p.add_argument("--eval-split", type=float, default=0.05)
p.add_argument("--seed", type=int, default=42)
p.add_argument("--eval-blocks", type=int, default=0, help="evaluate on at most this many held-out blocks (0 = all)")
args = p.parse_args()

tok = AutoTokenizer.from_pretrained(args.model)
files = []
for c in args.corpus:
    c = Path(c)
    files += sorted(x for x in c.rglob("*.txt")) if c.is_dir() else [c]

# Same chunking as bertkit --chunking group: documents joined by [SEP], cut into full blocks.
start = time.time()
body = args.max_len - 2
stream, blocks = [], []
for f in files:
    ids = tok(f.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    if stream:
        stream.append(tok.sep_token_id)
    stream.extend(ids)
    while len(stream) >= body:
        blocks.append(stream[:body])
        del stream[:body]
if len(stream) >= body // 4:
    blocks.append(stream)
tokenize_s = time.time() - start


def held_out(i, fraction=args.eval_split, seed=args.seed):
    # The same hash bertkit's split_blocks uses.
    m = (1 << 64) - 1
    x = ((i ^ ((seed * 0x9E3779B97F4A7C15) & m)) * 0xBF58476D1CE4E5B9) & m
    x ^= x >> 31
    return (x & 0xFFFFFFFF) < int(fraction * 0xFFFFFFFF)


wrap = lambda b: {"input_ids": [tok.cls_token_id] + b + [tok.sep_token_id]}
train = [wrap(b) for i, b in enumerate(blocks) if not held_out(i)]
evals = [wrap(b) for i, b in enumerate(blocks) if held_out(i)]
if args.eval_blocks:
    evals = evals[:args.eval_blocks]

model = BertForMaskedLM.from_pretrained(args.model)
collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
training = TrainingArguments(output_dir=args.output, per_device_train_batch_size=args.batch_size,
                             per_device_eval_batch_size=args.batch_size * 2, learning_rate=args.lr,
                             max_steps=args.max_steps, num_train_epochs=args.epochs, seed=args.seed,
                             save_strategy="no", report_to=[], logging_steps=100,
                             use_cpu=not torch.cuda.is_available())
trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=evals or None, data_collator=collator)
evaluate = lambda: trainer.evaluate()["eval_loss"] if evals else float("nan")  # --eval-split 0: no held-out text
before = evaluate()
start = time.time()
result = trainer.train()
train_s = time.time() - start
after = evaluate()
steps = result.global_step
tokens = steps * args.batch_size * args.max_len  # full blocks: every position is a real token
print(json.dumps({"tool": "transformers Trainer (run_mlm style)", "train_blocks": len(train), "eval_blocks": len(evals),
                  "eval_loss_before": before, "eval_loss_after": after, "perplexity_after": math.exp(after),
                  "steps": steps, "train_seconds": train_s, "tokens_per_s": tokens / train_s, "tokenize_seconds": tokenize_s}))
