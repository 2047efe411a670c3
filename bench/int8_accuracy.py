"""Accuracy of a fine-tuned classifier quantized the ways users quantize it, on the same held-out
CSV as `bertkit quantize --data`: float32 (transformers), ONNX Runtime fp32 and int8
(torch.onnx export, ORT's BERT optimizer, onnxruntime.quantization.quantize_dynamic at its
defaults: QInt8 weights, per tensor), and PyTorch int8 (torch.ao's quantize_dynamic with
per-channel weights). Texts truncated at --max-len; one JSON line.

    python bench/int8_accuracy.py --model DIR --data test.csv --text-column review --label-column sentiment --max-len 256
"""
import argparse
import csv
import inspect
import json
import os
import tempfile

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--data", required=True)
p.add_argument("--text-column", default="text")
p.add_argument("--label-column", default="label")
p.add_argument("--max-len", type=int, default=256)
args = p.parse_args()
torch.set_num_threads(os.cpu_count())
tok = AutoTokenizer.from_pretrained(args.model)
model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
rows = list(csv.DictReader(open(args.data, encoding="utf-8")))
gold = [model.config.label2id[r[args.label_column]] for r in rows]
texts = [r[args.text_column] for r in rows]


def accuracy(predict):
    correct = 0
    for start in range(0, len(texts), 16):
        enc = tok(texts[start:start + 16], truncation=True, max_length=args.max_len, padding=True, return_tensors="pt")
        correct += sum(int(p == g) for p, g in zip(predict(enc), gold[start:start + 16]))
    return correct / len(texts)


def torch_predict(m):
    def run(enc):
        with torch.inference_mode():
            return m(**enc).logits.argmax(-1).tolist()
    return run


def ort_session(int8):
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    tmp = tempfile.mkdtemp()
    names = [n for n in inspect.signature(model.forward).parameters if n in tok.model_input_names]
    dummy = tuple(torch.ones(1, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"logits": {0: "batch"}}
    raw = os.path.join(tmp, "model.onnx")
    torch.onnx.export(model, dummy, raw, input_names=names, output_names=["logits"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    fused = optimizer.optimize_model(raw, model_type="bert", num_heads=model.config.num_attention_heads,
                                     hidden_size=model.config.hidden_size)
    path = os.path.join(tmp, "fused.onnx")
    fused.save_model_to_file(path)
    if int8:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(path, os.path.join(tmp, "int8.onnx"), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
        path = os.path.join(tmp, "int8.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(enc):
        feed = {k: v.numpy() for k, v in enc.items() if k in names}
        return np.argmax(session.run(["logits"], feed)[0], -1).tolist()
    return run


from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic  # noqa: E402

result = {"model": args.model, "data": args.data, "examples": len(texts),
          "transformers_fp32": accuracy(torch_predict(model)),
          "onnxruntime_fp32": accuracy(ort_session(False)),
          "onnxruntime_int8": accuracy(ort_session(True))}
q = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
result["pytorch_int8"] = accuracy(torch_predict(q))
print(json.dumps(result))
