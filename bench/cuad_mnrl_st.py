"""The reference side of the CUAD retrieval bar: sentence-transformers' own trainer with
MultipleNegativesRankingLoss (scale 20) on (question, passage, negative) rows, the same model,
rows, seed and hyper-parameters as `bertkit finetune --task embedding --loss mnrl`, batches
drawn by its NO_DUPLICATES sampler (what its docs prescribe for MNRL: CUAD repeats 41 questions,
which bertkit masks inside a batch instead). Saves the model for bench/ir_st.py; prints one
JSON line.

    python bench/cuad_mnrl_st.py MODEL TRAIN.csv SEED LR EPOCHS BATCH MAX_LEN OUT_DIR
"""
import csv
import json
import sys
import time

import torch
from datasets import Dataset
from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                   SentenceTransformerTrainingArguments, losses)
from sentence_transformers.training_args import BatchSamplers

model_dir, train, seed, lr, epochs, batch, max_len, out = sys.argv[1:9]
torch.set_num_threads(2)

with open(train, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
data = Dataset.from_dict({k: [r[k] for r in rows] for k in ("question", "passage", "negative")})
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = int(max_len)
args = SentenceTransformerTrainingArguments(
    output_dir=out, num_train_epochs=float(epochs), per_device_train_batch_size=int(batch),
    learning_rate=float(lr), warmup_ratio=0.0, weight_decay=0.0, seed=int(seed), lr_scheduler_type="linear",
    save_strategy="no", report_to="none", logging_steps=50, use_cpu=True,
    batch_sampler=BatchSamplers.NO_DUPLICATES)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                     loss=losses.MultipleNegativesRankingLoss(model, scale=20.0))
start = time.time()
trainer.train()
seconds = time.time() - start
model.save(out)
print(json.dumps({"tool": "sentence-transformers", "seed": int(seed), "seconds": round(seconds, 1)}))
