"""sentence-transformers' side of the MNRL training-step bar: its trainer with
MultipleNegativesRankingLoss on the pairs file bench/mnrl_speed.sh writes, timed per step after
the first two (a callback), with the process's peak RSS. Prints one JSON line.

    python bench/mnrl_speed_st.py MODEL PAIRS.csv MAX_LEN BATCH STEPS OUT_DIR [MINI_BATCH]

With MINI_BATCH, CachedMultipleNegativesRankingLoss (GradCache) with that mini-batch size.
"""
import csv
import json
import resource
import sys
import time

import torch
from datasets import Dataset
from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                   SentenceTransformerTrainingArguments, losses)
from transformers import TrainerCallback

model_dir, pairs, max_len, batch, steps, out = sys.argv[1:7]
mini = int(sys.argv[7]) if len(sys.argv) > 7 else None
torch.set_num_threads(2)
with open(pairs, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
data = Dataset.from_dict({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})


class Clock(TrainerCallback):
    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = int(max_len)
clock = Clock()
args = SentenceTransformerTrainingArguments(
    output_dir=out, max_steps=int(steps), per_device_train_batch_size=int(batch), learning_rate=2e-5,
    save_strategy="no", report_to="none", use_cpu=True, seed=1, dataloader_drop_last=True)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                     loss=losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini)
                                     if mini else losses.MultipleNegativesRankingLoss(model), callbacks=[clock])
trainer.train()
timed = clock.ends[2:]
seconds = (timed[-1] - timed[0]) / (len(timed) - 1)
tokens = 2 * int(batch) * int(max_len)  # every text is longer than max_len: no padding
print(json.dumps({"tool": "sentence-transformers", "s_per_step": round(seconds, 3),
                  "tokens_per_s": round(tokens / seconds), "peak_rss_mb": resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss // 1024}))
