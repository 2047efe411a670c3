"""The PyTorch reference for `bertkit bench`: the same workload on the same synthetic full-length
batches, written as transformers' Trainer runs it (model.train(), DataCollatorWithPadding /
DataCollatorForLanguageModeling per batch, torch.autocast for bf16, clip_grad_norm_(1.0), and
Trainer's default optimizer: torch.optim.AdamW(fused=True)).

    python bench/reference_step.py --model DIR --workload finetune|mlm|inference \
        --batch-size 32 --seq-len 128 --steps 10 --warmup 2 --precision fp32|bf16 [--gradient-checkpointing]
Prints one JSON line with the same fields as `bertkit bench`.

`--engine onnxruntime` (inference only) runs the classifier as users deploy it on CPUs: exported
with torch.onnx from the same HF directory, fused by onnxruntime.transformers' BERT optimizer,
and run by an InferenceSession at ORT_ENABLE_ALL with torch's thread count (the collation and
the softmax as above).
"""
import argparse
import contextlib
import json
import random
import time

import torch
from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer,
                          DataCollatorForLanguageModeling, DataCollatorWithPadding)

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--workload", choices=["finetune", "mlm", "inference"], required=True)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--seq-len", type=int, default=128)
p.add_argument("--min-len", type=int, help="examples of random lengths from this to --seq-len, as bertkit bench's "
               "(the same distribution; the draws differ, so compare real tokens/s)")
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
               help="int8 (inference): dynamic quantisation of every Linear, torch.ao's quantize_dynamic "
                    "with per-channel weights, or onnxruntime.quantization.quantize_dynamic at its defaults")
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--gradient-checkpointing", action="store_true", help="as Trainer(gradient_checkpointing=True)")
p.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch",
               help="what runs the inference workload (onnxruntime: fp32 on the CPU)")
args = p.parse_args()
if args.engine == "onnxruntime" and (args.workload != "inference" or args.precision == "bf16"):
    p.error("--engine onnxruntime runs the fp32 or int8 inference workload only")
if args.precision == "int8" and (args.workload != "inference" or args.device != "cpu"):
    p.error("--precision int8 is inference on the CPU")

device = torch.device(args.device)
tok = AutoTokenizer.from_pretrained(args.model)
words = [i for t, i in tok.get_vocab().items() if t.isascii() and t.isalpha() and t.islower()]
rng = random.Random(1)


lengths = random.Random(3)


def example():
    n = lengths.randint(args.min_len, args.seq_len) if args.min_len else args.seq_len
    ids = [tok.cls_token_id] + [rng.choice(words) for _ in range(n - 2)] + [tok.sep_token_id]
    row = {"input_ids": ids, "token_type_ids": [0] * len(ids), "attention_mask": [1] * len(ids)}
    # Only what the model takes (ModernBERT has no token types).
    return {k: v for k, v in row.items() if k in tok.model_input_names}


if args.workload == "mlm":
    model = AutoModelForMaskedLM.from_pretrained(args.model)
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
else:
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    collator = DataCollatorWithPadding(tok)
model.to(device)
if args.gradient_checkpointing:
    model.gradient_checkpointing_enable()
autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
            else contextlib.nullcontext())
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True) if args.workload != "inference" else None


def rows():
    rows = [example() for _ in range(args.batch_size)]
    if args.workload == "finetune":
        for r in rows:
            r["labels"] = rng.randrange(2)
    return rows


def onnx_session(model):
    """The classifier exported with torch.onnx (dynamic batch and length), fused by ORT's BERT
    optimizer, in an ORT_ENABLE_ALL session with torch's intra-op threads."""
    import inspect
    import os
    import tempfile

    import onnxruntime as ort
    from onnxruntime.transformers import optimizer

    tmp = tempfile.mkdtemp()
    # Positional inputs in the order forward() takes them (the tokenizer lists token types second).
    names = [n for n in inspect.signature(model.forward).parameters if n in tok.model_input_names]
    dummy = tuple(torch.ones(1, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"logits": {0: "batch"}}
    raw = os.path.join(tmp, "model.onnx")
    torch.onnx.export(model.eval(), dummy, raw, input_names=names, output_names=["logits"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    config = model.config
    fused = optimizer.optimize_model(raw, model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    fused.save_model_to_file(os.path.join(tmp, "fused.onnx"))
    path = os.path.join(tmp, "fused.onnx")
    if args.precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        # The fused graph's contrib ops have no inferred types: ORT's quantizer asks for this.
        from onnx import TensorProto
        quantize_dynamic(path, os.path.join(tmp, "int8.onnx"), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
        path = os.path.join(tmp, "int8.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


session = onnx_session(model) if args.engine == "onnxruntime" else None
if session is None and args.precision == "int8":
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    model = quantize_dynamic(model.eval(), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def step(inputs):
    if session is not None:
        feed = {k: v.cpu().numpy() for k, v in inputs.items() if k in tok.model_input_names}
        torch.from_numpy(session.run(["logits"], feed)[0]).softmax(-1)
        return
    if args.workload == "inference":
        model.eval()
        with torch.inference_mode(), autocast:
            model(**inputs).logits.float().softmax(-1).cpu()
        return
    model.train()
    with autocast:
        loss = model(**inputs).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    loss.item()


seconds, real = [], []
for s, batch in enumerate([rows() for _ in range(args.warmup + args.steps)]):
    start = time.perf_counter()
    # Collation (and MLM masking) happens per step, in the loop, as in Trainer.
    step({k: v.to(device) for k, v in collator(batch).items()})
    if device.type == "cuda":
        torch.cuda.synchronize()
    if s >= args.warmup:
        seconds.append(time.perf_counter() - start)
        real.append(sum(len(r["input_ids"]) for r in batch))
seconds.sort()
median = seconds[len(seconds) // 2]
# Real tokens per step, on average (MLM batches are full).
tokens = args.batch_size * args.seq_len if args.workload == "mlm" else sum(real) / len(real)
gpu_memory = ({"peak_allocated": torch.cuda.max_memory_allocated(device),
               "peak_reserved": torch.cuda.max_memory_reserved(device)} if device.type == "cuda" else None)
print(json.dumps({"tool": "pytorch" if session is None else "onnxruntime", "workload": args.workload, "precision": args.precision, "device": str(device),
                  "threads": torch.get_num_threads(), "batch_size": args.batch_size, "seq_len": args.seq_len,
                  "gradient_checkpointing": args.gradient_checkpointing, "step_seconds": seconds,
                  "median_step_seconds": median, "tokens_per_s": tokens / median,
                  "examples_per_s": args.batch_size / median, "gpu_peak_memory": gpu_memory}))
