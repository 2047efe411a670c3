"""Reference outputs from Python transformers, for bertkit's parity tests.

Runs the same inputs through transformers and saves everything bertkit must reproduce:
tokenisation, hidden states of every layer, attention probabilities, pooled output,
sequence-classification logits/loss, MLM logits/loss, the gradient of every parameter after
one backward, and the weights after one AdamW step.

    python scripts/make_reference.py tiny                       # tests/fixtures/{tiny-bert,reference}
    python scripts/make_reference.py tiny-roberta               # tests/fixtures/{tiny-roberta,reference}
    python scripts/make_reference.py tiny-xlm-roberta           # tests/fixtures/{tiny-xlm-roberta,reference}
    python scripts/make_reference.py tiny-distilbert            # tests/fixtures/{tiny-distilbert,reference}
    python scripts/make_reference.py tiny-electra               # tests/fixtures/{tiny-electra,reference}
    python scripts/make_reference.py tiny-modernbert            # tests/fixtures/{tiny-modernbert,reference}
    python scripts/make_reference.py tiny-deberta-v3            # tests/fixtures/{tiny-deberta-v3,reference}
    python scripts/make_reference.py tiny-deberta-v2            # (after v3: its tokenizer) tiny-deberta-v2
    python scripts/make_reference.py tokens                     # only every fixture's *_tokens.json
    python scripts/make_reference.py tasks [NAME]               # every fixture's (or NAME's) *_tasks.safetensors
    python scripts/make_reference.py metrics                    # reference/metrics.json (seqeval, sklearn, scipy)
    python scripts/make_reference.py embedding [NAME]           # *_embedding.safetensors, retrieval.json (sentence-transformers)
    python scripts/make_reference.py rerank [NAME]              # *_rerank.safetensors, rerank.json (sentence-transformers)
    python scripts/make_reference.py qa [NAME]                  # *_qa.safetensors, qa_examples.jsonl (run_qa's windows)
    python scripts/make_reference.py mc [NAME]                  # *_mc.safetensors, mc_examples.jsonl (run_swag's pairs)
    python scripts/make_reference.py minilm-mc MODEL_DIR OUT_DIR  # the same for all-MiniLM-L6-v2 (too big to commit)
    python scripts/make_reference.py xlmr-tokenizer             # tests/fixtures/xlmr-tokenizer/ (needs `pip install sentencepiece`)
    python scripts/make_reference.py explain [NAME]             # every fixture's (or NAME's) *_explain.safetensors
    python scripts/make_reference.py minilm-explain MODEL_DIR OUT_DIR
    python scripts/make_reference.py minilm-probe MODEL_DIR OUT_DIR  # linear probe (scikit-learn)
    python scripts/make_reference.py minilm MODEL_DIR OUT_DIR   # all-MiniLM-L6-v2 (too big to commit)

The tiny models are created here from a fixed seed with small vocabularies of their family's kind
(WordPiece for BERT, byte-level BPE for RoBERTa and ModernBERT, SentencePiece Unigram for
XLM-RoBERTa and DeBERTa, the latter trained here with `tokenizers`), so the committed
fixtures are a few hundred KB and need nothing downloaded. Every family goes through the same
`make_reference` (transformers' Auto classes).
"""
import inspect
import json
import os
import shutil
import string
import sys
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from tokenizers import pre_tokenizers
from tokenizers.processors import RobertaProcessing, TemplateProcessing
from safetensors.torch import save_file
from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer,
                          AutoModelForQuestionAnswering, AutoModelForMultipleChoice,
                          AutoModelForTokenClassification,
                          BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          BertTokenizerFast, RobertaConfig, RobertaForMaskedLM,
                          RobertaForSequenceClassification, RobertaTokenizerFast,
                          DistilBertConfig, DistilBertForMaskedLM, DistilBertForSequenceClassification,
                          ElectraConfig, ElectraForMaskedLM, ElectraForSequenceClassification,
                          XLMRobertaConfig, XLMRobertaForMaskedLM,
                          XLMRobertaForSequenceClassification, XLMRobertaTokenizerFast)

ROOT = Path(__file__).resolve().parent.parent
NUM_LABELS = 3
ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}
LR, WEIGHT_DECAY = 1e-3, 0.01

SHORT_TEXTS = [
    "Hello world!",
    "I love this movie, it's fantastic!",
    "",
    "Café naïve — 東京 über straße 😀 résumé",
    "The lessee shall maintain the premises in good repair, reasonable wear and tear excepted.",
]
SHORT_LABELS = [2, 2, 1, 0, 1]
PAIRS = [
    ("Is this contract binding?", "Yes, once both parties have signed it."),
    ("Short.", "A much longer second segment that forces padding on the first pair."),
]
LONG_TEXT = " ".join(
    f"Section {i}. The licensee may not sublicense, assign or transfer the rights granted "
    f"herein without prior written consent; any attempt to do so is void, and the film "
    f"critic wrote that the sequel was {['dull', 'brilliant', 'uneven'][i % 3]}."
    for i in range(40))


def tiny_vocab():
    words = """the a an and or of to in is it this that was for on with as by at be are not
    but from have has had shall may any all no so if his her their its which who will would
    movie film love great bad good fantastic world hello contract party parties license
    licensee lessee premises repair rights written consent section sequel critic wrote
    dull brilliant uneven signed once both second segment short longer much forces
    padding first pair yes binding maintain reasonable wear tear excepted void attempt
    transfer assign granted herein prior without sublicense do i me my you your""".split()
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation +
                       "àáâäçèéêëìíîïñòóôöùúûüßæœ"))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = chars + ["##" + c for c in chars]
    for w in words:  # a few multi-character pieces so WordPiece has real choices to make
        pieces += [w] + (["##" + w[1:]] if len(w) > 3 else [])
    seen, vocab = set(), []
    for t in specials + pieces:
        if t not in seen:
            seen.add(t)
            vocab.append(t)
    return vocab


def make_tiny_model(model_dir: Path):
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    BertWordPieceTokenizer(str(model_dir / "vocab.txt"), lowercase=True).save(
        str(model_dir / "tokenizer.json"))
    tok = BertTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), do_lower_case=True)
    tok.save_pretrained(model_dir)  # tokenizer_config.json; vocab.txt stays for the fallback path
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                     num_labels=NUM_LABELS, id2label=ID2LABEL,
                     label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, BertForSequenceClassification, BertForMaskedLM, "cls.",
                         "BertForPreTraining")


def save_with_every_head(model_dir, cfg, cls_class, mlm_class, mlm_prefix, architecture):
    """One checkpoint holding every head: the encoder of a classifier, its classifier (and pooler),
    and an MLM head whose transform is not at its initial values (so loading it is really tested)."""
    torch.manual_seed(1234)
    cls = cls_class(cfg)
    mlm = mlm_class(cfg)
    state = {k: v for k, v in cls.state_dict().items()}
    tied = mlm.get_input_embeddings().weight.data_ptr()
    for k, v in mlm.state_dict().items():
        if k.startswith(mlm_prefix) and ".decoder." not in k and v.data_ptr() != tied:
            state[k] = v + 0.01 * torch.randn_like(v)
    cfg.architectures = [architecture]
    cfg.save_pretrained(model_dir)
    save_file({k: v.contiguous() for k, v in state.items()}, model_dir / "model.safetensors",
              metadata={"format": "pt"})


def make_tiny_roberta(model_dir: Path):
    """A tiny RoBERTa with a byte-level BPE vocabulary trained here on the reference texts."""
    model_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    corpus = SHORT_TEXTS + [t for pair in PAIRS for t in pair] + [LONG_TEXT] + tiny_vocab()
    bpe.train_from_iterator(corpus, vocab_size=600, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    save_roberta_like(model_dir, bpe, RobertaTokenizerFast, RobertaConfig, RobertaForSequenceClassification,
                      RobertaForMaskedLM)

def make_tiny_xlm_roberta(model_dir: Path):
    """A tiny XLM-RoBERTa with a SentencePiece (Unigram, Metaspace) vocabulary trained here. The
    Unigram trainer's scores vary in their last digits from run to run (parallel sums), so a
    rerun may tokenise a few texts differently: the committed fixture and its reference belong
    together, regenerate both or neither."""
    model_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    sp = SentencePieceUnigramTokenizer()
    corpus = SHORT_TEXTS + [t for pair in PAIRS for t in pair] + [LONG_TEXT] + tiny_vocab()
    sp.train_from_iterator(corpus, vocab_size=400, special_tokens=specials, unk_token="<unk>")
    # transformers 5 tokenizes XLM-R with its class's pipeline, not the file's: no normalizer,
    # whitespace split then Metaspace. The fixture's file says the same, so both sides agree.
    sp._tokenizer.normalizer = None
    sp.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    ids = {t: sp.token_to_id(t) for t in specials}
    sp.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    save_roberta_like(model_dir, sp, XLMRobertaTokenizerFast, XLMRobertaConfig, XLMRobertaForSequenceClassification,
                      XLMRobertaForMaskedLM)


def save_roberta_like(model_dir, backend, tokenizer_class, config_class, cls_class, mlm_class):
    """A tiny RoBERTa-shaped model (RoBERTa, XLM-R) around a trained `tokenizers` backend."""
    backend.save(str(model_dir / "tokenizer.json"))
    tok = tokenizer_class(tokenizer_file=str(model_dir / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
                          sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                          mask_token="<mask>")
    tok.save_pretrained(model_dir)  # tokenizer.json, tokenizer_config.json, special_tokens_map.json
    assert len(tok) == backend.get_vocab_size() and tok.pad_token_id == 1, (len(tok), tok.pad_token_id)
    cfg = config_class(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       num_labels=NUM_LABELS, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, cls_class, mlm_class, "lm_head.", mlm_class.__name__)

def tiny_bert_tokenizer(model_dir: Path):
    """The tiny BERT's WordPiece tokenizer, saved into `model_dir`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for f in ["vocab.txt", "tokenizer.json"]:
        shutil.copy(ROOT / "tests/fixtures/tiny-bert" / f, model_dir / f)
    tok = AutoTokenizer.from_pretrained(ROOT / "tests/fixtures/tiny-bert")
    tok.save_pretrained(model_dir)
    return tok


def make_tiny_electra(model_dir: Path):
    """A tiny ELECTRA whose embeddings (16) are narrower than its layers (32), so the projection
    is exercised, with the tiny BERT's WordPiece vocabulary."""
    tok = tiny_bert_tokenizer(model_dir)
    cfg = ElectraConfig(vocab_size=len(tok), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                        num_labels=NUM_LABELS, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, ElectraForSequenceClassification, ElectraForMaskedLM,
                         "generator_", "ElectraForMaskedLM")


def make_tiny_distilbert(model_dir: Path):
    """A tiny DistilBERT with the tiny BERT's WordPiece vocabulary."""
    tok = tiny_bert_tokenizer(model_dir)
    cfg = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                           max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                           num_labels=NUM_LABELS, id2label=ID2LABEL,
                           label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, DistilBertForSequenceClassification, DistilBertForMaskedLM,
                         "vocab_", "DistilBertForMaskedLM")


def make_tiny_modernbert(model_dir: Path):
    """A tiny ModernBERT with a byte-level BPE vocabulary trained here and ModernBERT's
    `[CLS] ... [SEP]` template: three layers (global, local, local), a local window of 16 tokens
    (±8) that every reference batch exceeds, mean pooling for classification."""
    from tokenizers import AddedToken
    from transformers import (ModernBertConfig, ModernBertForMaskedLM, ModernBertForSequenceClassification,
                              PreTrainedTokenizerFast)
    model_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    bpe = ByteLevelBPETokenizer()
    corpus = SHORT_TEXTS + [t for pair in PAIRS for t in pair] + [LONG_TEXT] + tiny_vocab()
    bpe.train_from_iterator(corpus, vocab_size=600, min_frequency=1, special_tokens=specials)
    ids = {t: bpe.token_to_id(t) for t in specials}
    bpe.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    bpe.save(str(model_dir / "tokenizer.json"))
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"), unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                  mask_token=AddedToken("[MASK]", lstrip=True), model_input_names=["input_ids", "attention_mask"])
    tok.save_pretrained(model_dir)
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                           num_attention_heads=4, local_attention=16, max_position_embeddings=512,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                           cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id, classifier_pooling="mean",
                           num_labels=NUM_LABELS, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, ModernBertForSequenceClassification, ModernBertForMaskedLM,
                         ("head.", "decoder."), "ModernBertForMaskedLM")


def make_tiny_deberta_v3(model_dir: Path):
    """A tiny DeBERTa-v3 (`deberta-v2` in transformers): a SentencePiece Unigram vocabulary
    trained here with DeBERTa-v3's special tokens and DebertaV2Tokenizer's own pipeline, and
    v3-base's settings at a small size: relative attention both ways (`p2c|c2p`) with keys
    shared, log-bucketed positions (8 buckets, so every longer batch reaches the log range),
    normalised relative embeddings, no absolute positions, no token types, the legacy MLM head.
    Weights drawn 5x wider than transformers' default: at 0.02 a two-layer DeBERTa's output
    hardly depends on its input (attributions and head tests would compare noise)."""
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification
    from transformers import DebertaV2Tokenizer
    from tokenizers import Regex, normalizers
    model_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    sp = SentencePieceUnigramTokenizer()
    corpus = SHORT_TEXTS + [t for pair in PAIRS for t in pair] + [LONG_TEXT] + tiny_vocab()
    sp.train_from_iterator(corpus, vocab_size=400, special_tokens=specials, unk_token="[UNK]")
    # The pipeline DebertaV2Tokenizer builds for itself in transformers 5, written into the file
    # too, so that both sides tokenise alike whichever one a reader follows.
    sp._tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
        normalizers.Strip(left=False, right=True)])
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    ids = {t: sp.token_to_id(t) for t in specials}
    sp.post_processor = TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    sp.save(str(model_dir / "tokenizer.json"))
    tok = DebertaV2Tokenizer(tokenizer_file=str(model_dir / "tokenizer.json"))
    tok.save_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert len(tok) == sp.get_vocab_size() and tok.pad_token_id == 0, (len(tok), tok.pad_token_id)
    cfg = DebertaV2Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=512, relative_attention=True,
                          position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True,
                          pos_att_type="p2c|c2p", layer_norm_eps=1e-7, max_relative_positions=-1,
                          position_biased_input=False, type_vocab_size=0, pad_token_id=tok.pad_token_id,
                          initializer_range=0.1,
                          num_labels=NUM_LABELS, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, DebertaV2ForSequenceClassification, DebertaV2ForMaskedLM,
                         "cls.", "DebertaV2ForMaskedLM")


def make_tiny_deberta_v2(model_dir: Path):
    """A tiny DeBERTa with every setting the v3 fixture leaves at rest: v2-xlarge's convolution
    after the first layer, embeddings narrower than the layers (`embed_proj`), absolute positions
    and token types added, relative positions unbucketed and clamped at 24, position projections
    of their own (`share_att_key` off), relative embeddings not normalised. The v3 fixture's
    tokenizer."""
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification
    model_dir.mkdir(parents=True, exist_ok=True)
    v3 = ROOT / "tests/fixtures/tiny-deberta-v3"
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(v3 / f, model_dir / f)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = DebertaV2Config(vocab_size=len(tok), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                          relative_attention=True, max_relative_positions=24, position_buckets=-1,
                          share_att_key=False, pos_att_type="c2p|p2c", norm_rel_ebd="none",
                          conv_kernel_size=3, conv_act="gelu", position_biased_input=True, type_vocab_size=2,
                          layer_norm_eps=1e-7, initializer_range=0.1, pad_token_id=tok.pad_token_id,
                          num_labels=NUM_LABELS, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    save_with_every_head(model_dir, cfg, DebertaV2ForSequenceClassification, DebertaV2ForMaskedLM,
                         "cls.", "DebertaV2ForMaskedLM")


def encode(tok, texts, pairs=None, max_length=512):
    # Token types as the tokenizer's template gives them, also where the model takes none
    # (bertkit's collator makes them the same way, and such encoders ignore them).
    return tok(texts, pairs, padding=True, truncation=True, max_length=max_length,
               return_tensors="pt", return_offsets_mapping=True, return_token_type_ids=True)


def fused_attention(model_dir: Path):
    """transformers' fused attention (SDPA), or its eager path for a family that has no other
    (DeBERTa: its relative-position scores are added before the softmax by hand)."""
    family = json.loads((model_dir / "config.json").read_text())["model_type"]
    return "eager" if family == "deberta-v2" else "sdpa"


def named_parameters(model):
    """Each parameter once, under bertkit's name: a decoder tied to the word embeddings under the
    embeddings' name, whichever module transformers happens to list first."""
    encoder = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)
               if n.startswith(model.base_model_prefix + ".")}
    return [(encoder.get(id(p), n), p) for n, p in model.named_parameters()]


def accepted(model, inputs):
    """The inputs `model.forward` takes (DistilBERT takes no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in inputs.items() if k in params}


def tokens_json(tok):
    def fields(enc):
        out = {k: enc[k].tolist() for k in ["input_ids", "attention_mask", "token_type_ids", "offset_mapping"]}
        out["word_ids"] = [enc.word_ids(i) for i in range(len(enc["input_ids"]))]
        return out
    out = {}
    for name, texts in [("short", SHORT_TEXTS), ("long", [LONG_TEXT])]:
        out[name] = {"texts": texts, **fields(encode(tok, texts))}
    a, b = zip(*PAIRS)
    out["pairs"] = {"texts": list(a), "pairs": list(b), **fields(encode(tok, list(a), list(b)))}
    return out


def write_tokens(model_dir: Path, out: Path, name: str):
    """Only the tokenisation reference, from the committed tokenizer files (deterministic)."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    (out / f"{name}_tokens.json").write_text(json.dumps(tokens_json(tok), ensure_ascii=False))


def mlm_labels(tok, input_ids, attention_mask, seed=7):
    """15% of the real tokens masked (at least one a row), deterministic."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([[i in tok.all_special_ids for i in row] for row in input_ids.tolist()])
    candidates = (attention_mask == 1) & ~special
    probs = torch.rand(input_ids.shape, generator=g)
    masked = candidates & (probs < 0.15)
    for r in range(input_ids.shape[0]):
        if candidates[r].any() and not masked[r].any():
            masked[r, candidates[r].nonzero()[0, 0]] = True
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    inputs = torch.where(masked, torch.full_like(input_ids, tok.mask_token_id), input_ids)
    return inputs, labels


def adamw_groups(model):
    # Trainer's own grouping: no decay on biases and on norm layers' weights, whatever their
    # name (LayerNorm, sa_layer_norm, ModernBERT's norm / attn_norm / final_norm).
    from transformers import Trainer
    decayed = set(Trainer.get_decay_parameter_names(None, model))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if n in decayed else no_decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def make_reference(model_dir: Path, out: Path, name: str, long_attentions: bool):
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model_dir)
    kw = dict(attn_implementation="eager")
    cls = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=NUM_LABELS, id2label=ID2LABEL,
        label2id={v: k for k, v in ID2LABEL.items()}, **kw).eval()
    mlm = AutoModelForMaskedLM.from_pretrained(model_dir, **kw).eval()
    # transformers' fused-attention path rounds differently from its eager one (up to ~4e-5 on
    # MiniLM's hidden states); bertkit's SDPA path is compared with this one.
    sdpa = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=NUM_LABELS, attn_implementation=fused_attention(model_dir)).eval()
    sdpa.load_state_dict(cls.state_dict())
    encoder = cls.base_model_prefix  # "bert", "roberta"
    ref = {}
    # Heads the checkpoint may lack are created at random by transformers: save what it made,
    # so bertkit can start from the same values.
    for k, v in cls.state_dict().items():
        if not k.startswith(encoder + ".") or k.startswith(encoder + ".pooler."):
            ref[f"init.{k}"] = v.clone()
    for k, v in mlm.state_dict().items():
        if not k.startswith(encoder + ".") and "decoder" not in k:
            ref[f"init.{k}"] = v.clone()

    toks = tokens_json(tok)
    (out / f"{name}_tokens.json").write_text(json.dumps(toks, ensure_ascii=False))

    batches = {"short": encode(tok, SHORT_TEXTS), "long": encode(tok, [LONG_TEXT])}
    a, b = zip(*PAIRS)
    batches["pairs"] = encode(tok, list(a), list(b))
    labels = {"short": torch.tensor(SHORT_LABELS), "long": torch.tensor([2]), "pairs": torch.tensor([0, 2])}
    for bname, enc in batches.items():
        inputs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                      token_type_ids=enc["token_type_ids"])
        for k, v in inputs.items():
            ref[f"{bname}.{k}"] = v
        ref[f"{bname}.labels"] = labels[bname]
        with torch.no_grad():
            o = cls(**accepted(cls, inputs), labels=labels[bname], output_hidden_states=True,
                    output_attentions=(bname != "long" or long_attentions))
            base = getattr(cls, encoder)
            pooled = getattr(base(**accepted(base, inputs)), "pooler_output", None)  # None without a pooler
        for i, h in enumerate(o.hidden_states):
            ref[f"{bname}.hidden_states.{i}"] = h
        for i, att in enumerate(o.attentions or []):
            ref[f"{bname}.attentions.{i}"] = att
        if pooled is not None:
            ref[f"{bname}.pooled"] = pooled
        ref[f"{bname}.cls_logits"] = o.logits
        ref[f"{bname}.cls_loss"] = o.loss.reshape(1)
        with torch.no_grad():
            o = sdpa(**accepted(sdpa, inputs), output_hidden_states=True)
        ref[f"{bname}.sdpa.last_hidden_state"] = o.hidden_states[-1]
        ref[f"{bname}.sdpa.cls_logits"] = o.logits

        mlm_inputs, mlm_lab = mlm_labels(tok, enc["input_ids"], enc["attention_mask"])
        ref[f"{bname}.mlm_input_ids"] = mlm_inputs
        ref[f"{bname}.mlm_labels"] = mlm_lab
        with torch.no_grad():
            o = mlm(**accepted(mlm, dict(input_ids=mlm_inputs, attention_mask=enc["attention_mask"],
                                         token_type_ids=enc["token_type_ids"])), labels=mlm_lab)
        if bname != "long" or long_attentions:
            ref[f"{bname}.mlm_logits"] = o.logits
        ref[f"{bname}.mlm_loss"] = o.loss.reshape(1)

    # Gradients of every parameter (dropout off so the numbers are deterministic), then one
    # AdamW step on the classification loss.
    enc = batches["short"]
    inputs = accepted(cls, dict(attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"]))
    mlm.zero_grad()
    mlm(input_ids=ref["short.mlm_input_ids"], labels=ref["short.mlm_labels"], **inputs).loss.backward()
    for n, p in named_parameters(mlm):
        ref[f"grad.mlm.{n}"] = p.grad.clone()
    opt = torch.optim.AdamW(adamw_groups(cls), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    cls.zero_grad()
    cls(input_ids=enc["input_ids"], labels=labels["short"], **inputs).loss.backward()
    for n, p in named_parameters(cls):
        ref[f"grad.cls.{n}"] = p.grad.clone()
    opt.step()
    for n, p in named_parameters(cls):
        ref[f"step.cls.{n}"] = p.detach().clone()

    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}.safetensors")
    print(f"wrote {out / (name + '.safetensors')} ({len(ref)} tensors)")


TAG_NAMES = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
TAGGED = [
    (["John", "Smith", "lives", "in", "New", "York", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
    (["The", "lessee", "shall", "maintain", "the", "premises", "."], ["O", "O", "O", "O", "O", "O", "O"]),
    (["Café", "naïve", "東京", "über", "résumé"], ["O", "O", "B-LOC", "O", "O"]),
]


def make_task_reference(model_dir: Path, out: Path, name: str):
    """The heads beyond single-label classification, from the committed fixture (not remade):
    token classification on words (tokenised with is_split_into_words, first sub-token labelled),
    the multi-label BCE loss and a one-output regression head's MSE loss."""
    torch.manual_seed(0)
    # bertkit's forward pass without attention probabilities is the fused one: compare with SDPA.
    kw = dict(attn_implementation=fused_attention(model_dir))
    family = json.loads((model_dir / "config.json").read_text())["model_type"]
    # transformers requires add_prefix_space=True to tokenise words of a byte-level BPE one by one
    # (RoBERTa's tokenizer refuses them otherwise; ModernBERT's would glue each word to the last,
    # unlike the text it was pretrained on). bertkit marks every word so for any byte-level BPE.
    extra = {"add_prefix_space": True} if family in ("roberta", "modernbert") else {}
    tok = AutoTokenizer.from_pretrained(model_dir, **extra)
    ref = {}
    tagger = AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(TAG_NAMES), id2label=dict(enumerate(TAG_NAMES)),
        label2id={n: i for i, n in enumerate(TAG_NAMES)}, ignore_mismatched_sizes=True, **kw).eval()
    ref.update({f"tok_init.{k}": v.clone() for k, v in tagger.state_dict().items() if k.startswith("classifier.")})
    enc = tok([w for w, _ in TAGGED], is_split_into_words=True, padding=True, return_tensors="pt",
              return_token_type_ids=True)
    labels, word_ids = [], []
    for i, (_, tags) in enumerate(TAGGED):
        words, previous, row = enc.word_ids(i), None, []
        for w in words:
            row.append(-100 if w is None or w == previous else TAG_NAMES.index(tags[w]))
            previous = w
        labels.append(row)
        word_ids.append([-1 if w is None else w for w in words])
    labels = torch.tensor(labels)
    with torch.no_grad():
        o = tagger(**accepted(tagger, dict(enc)), labels=labels)
    ref.update({"tok.input_ids": enc["input_ids"], "tok.attention_mask": enc["attention_mask"],
                "tok.word_ids": torch.tensor(word_ids), "tok.labels": labels, "tok.logits": o.logits,
                "tok.loss": o.loss.reshape(1)})

    enc = encode(AutoTokenizer.from_pretrained(model_dir), SHORT_TEXTS)
    inputs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    cls = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=NUM_LABELS, problem_type="multi_label_classification", **kw).eval()
    multi_hot = torch.tensor([[0, 0, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float)
    with torch.no_grad():
        o = cls(**accepted(cls, inputs), labels=multi_hot)
    ref.update({"multi.multi_hot": multi_hot, "multi.logits": o.logits, "multi.loss": o.loss.reshape(1)})
    reg = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, problem_type="regression", ignore_mismatched_sizes=True, **kw).eval()
    ref.update({f"reg_init.{k}": v.clone() for k, v in reg.state_dict().items() if k.startswith("classifier.")})
    scores = torch.tensor([4.5, 0.25, 2.0, 3.0, 1.5])
    with torch.no_grad():
        o = reg(**accepted(reg, inputs), labels=scores)
    ref.update({"reg.scores": scores, "reg.logits": o.logits, "reg.loss": o.loss.reshape(1)})
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_tasks.safetensors")
    print(f"wrote {out / (name + '_tasks.safetensors')} ({len(ref)} tensors)")


# Sentence-embedding rows (anchor, positive, hard negative). Row 3's positive repeats row 1's,
# row 4's anchor repeats row 0's (so row 4's positive answers row 0 too), and row 2's hard
# negative is row 0's positive: none may count as a negative of the row it answers.
# tests/embedding.rs holds the same rows.
EMBEDDING_ROWS = [
    ("How do I end the lease early?", "The tenant may terminate on sixty days' notice.", "Rent is due monthly."),
    ("Which law governs the contract?", "This agreement is governed by the laws of Delaware.", "Notices go by mail."),
    ("Who pays for repairs?", "The landlord shall maintain the roof and walls.",
     "The tenant may terminate on sixty days' notice."),
    ("What law applies here?", "This agreement is governed by the laws of Delaware.", "The term is two years."),
    ("How do I end the lease early?", "Either party may end the lease with notice.", "Parking is free."),
]
EMBEDDING_SCORES = [4.5, 0.5, 3.0, 2.0, 1.0]
SCALE = 20.0
MATRYOSHKA_DIMS = [32, 16, 8]


def cos_matrix(a, b):
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def mnrl(cols, texts, symmetric=False):
    """MultipleNegativesRankingLoss in a few lines, with the rule sentence-transformers leaves to
    its NO_DUPLICATES sampler written as a mask: for anchor i, a candidate other than its own
    positive is not a negative when it is the same text as that positive, or the positive of
    another row with the same anchor text; backwards, rows sharing the anchor or the positive
    text are not each other's negatives."""
    a, candidates = cols[0], torch.cat(cols[1:])
    flat = [t for column in texts[1:] for t in column]
    n = len(texts[0])
    anchor, positive = texts[0], texts[1]
    mask = torch.tensor([[j != i and (flat[j] == positive[i] or (j < n and anchor[j] == anchor[i]))
                          for j in range(len(flat))] for i in range(n)])
    s = (cos_matrix(a, candidates) * SCALE).masked_fill(mask, float("-inf"))
    log_z = s.logsumexp(1)
    if symmetric:
        same = torch.tensor([[j != i and (anchor[j] == anchor[i] or positive[j] == positive[i]) for j in range(n)]
                             for i in range(n)])
        back = (cos_matrix(cols[1], a) * SCALE).masked_fill(same, float("-inf"))
        log_z = (log_z + back.logsumexp(1)) / 2
    return (log_z - s.diagonal()).mean()


def cosent(a, b, scores):
    cos = torch.nn.functional.cosine_similarity(a, b) * SCALE
    diff = cos[None, :] - cos[:, None]  # [i, j] = cos_j - cos_i
    diff = diff.masked_fill(~(scores[:, None] > scores[None, :]), float("-inf")).view(-1)
    return torch.cat([torch.zeros(1), diff]).logsumexp(0)


def pool(out, mask, how):
    h = out.last_hidden_state
    if how == "cls":
        return h[:, 0]
    if how == "last":
        return h[torch.arange(h.shape[0]), mask.sum(1) - 1]
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def check_against_sentence_transformers(cols, texts, scores):
    """The lines above equal sentence-transformers' own losses where they define the same thing:
    on rows without duplicates (0 and 1, anchors and positives only), and on scored pairs. The
    losses are built without a model: only their arithmetic is called."""
    from sentence_transformers import losses
    from sentence_transformers.util import cos_sim

    def bare(cls, **settings):
        loss = cls.__new__(cls)
        torch.nn.Module.__init__(loss)
        loss.__dict__.update(settings)
        return loss

    two = [c[:2] for c in cols[:2]]
    for symmetric in (False, True):
        loss = bare(losses.MultipleNegativesRankingLoss, scale=SCALE, similarity_fct=cos_sim,
                    gather_across_devices=False, hardness_mode=None, hardness_strength=0.0,
                    directions=("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",),
                    partition_mode="per_direction" if symmetric else "joint")
        theirs = loss.compute_loss_from_embeddings(two, None)
        ours = mnrl(two, [t[:2] for t in texts[:2]], symmetric)
        assert torch.allclose(theirs, ours, atol=1e-6), (symmetric, theirs, ours)
    loss = bare(losses.CoSENTLoss, scale=SCALE, similarity_fct=torch.nn.functional.cosine_similarity)
    theirs = loss.compute_loss_from_embeddings(cols[:2], scores)
    assert torch.allclose(theirs, cosent(cols[0], cols[1], scores), atol=1e-5), theirs


def make_embedding_reference(model_dir: Path, out: Path, name: str):
    """Losses of sentence-embedding training on the rows above, and the gradient of every
    parameter under MNRL (hard negatives and duplicates included), dropout off."""
    from transformers import AutoModel
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation=fused_attention(model_dir)).eval()
    texts = [list(column) for column in zip(*EMBEDDING_ROWS)]
    encoded = [encode(tok, column) for column in texts]
    ref = {}

    def embed(how):
        cols = []
        for c, enc in enumerate(encoded):
            inputs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                          token_type_ids=enc["token_type_ids"])
            ref[f"column{c}.input_ids"] = enc["input_ids"]
            cols.append(pool(model(**accepted(model, inputs)), enc["attention_mask"], how))
        return cols

    scores = torch.tensor(EMBEDDING_SCORES)
    model.zero_grad()
    cols = embed("mean")
    loss = mnrl(cols, texts)
    loss.backward()
    ref["loss.mnrl"] = loss.reshape(1)
    for n, p in model.named_parameters():
        if p.grad is not None:
            ref[f"grad.mnrl.{model.base_model_prefix}.{n}"] = p.grad.clone()
    with torch.no_grad():
        cols = embed("mean")
        check_against_sentence_transformers(cols, texts, scores)
        ref["loss.mnrl_symmetric"] = mnrl(cols, texts, symmetric=True).reshape(1)
        ref["loss.matryoshka"] = sum(mnrl([c[:, :d] for c in cols], texts) for d in MATRYOSHKA_DIMS).reshape(1)
        cols = embed("cls")
        ref["loss.cosent_cls"] = cosent(cols[0], cols[1], scores).reshape(1)
        cols = embed("last")
        cos = torch.nn.functional.cosine_similarity(cols[0], cols[1])
        ref["loss.cosine_mse_last"] = torch.nn.functional.mse_loss(cos, scores).reshape(1)
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_embedding.safetensors")
    print(f"wrote {out / (name + '_embedding.safetensors')} ({len(ref)} tensors)")


def make_retrieval_reference(out: Path):
    """sentence-transformers' InformationRetrievalEvaluator measures on fixed rankings: 30 queries
    with 1-4 relevant passages of 200, scores drawn at random (ties included)."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator
    g = torch.Generator().manual_seed(3)
    corpus = {f"d{i:03d}": "" for i in range(200)}
    queries = {f"q{i:02d}": "" for i in range(32)}
    relevant = {q: {f"d{int(j):03d}" for j in torch.randint(0, 200, (1 + i % 4,), generator=g)}
                for i, q in enumerate(queries) if i < 30}
    scores = (torch.rand(32, 200, generator=g) * 20).round() / 20  # ties on purpose
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, accuracy_at_k=[1, 3, 5, 10],
                                              precision_recall_at_k=[1, 3, 5, 10, 100])
    qids = evaluator.queries_ids
    results = [[{"corpus_id": c, "score": float(scores[int(q[1:]), int(c[1:])])} for c in corpus] for q in qids]
    metrics = evaluator.compute_metrics(results)
    flat = {f"{k.split('@')[0]}_at_{n}": float(v) for k, by_n in metrics.items() for n, v in by_n.items()}
    (out / "retrieval.json").write_text(json.dumps({
        "scores": scores.tolist(), "relevant": {q: sorted(int(d[1:]) for d in r) for q, r in relevant.items()},
        "metrics": flat}, indent=0))
    print(f"wrote {out / 'retrieval.json'}")


# Reranker candidates (query, passage, relevance): two queries with binary and graded
# relevance. tests/rerank.rs holds the same rows.
RERANK_ROWS = [
    ("How do I end the lease early?", "The tenant may terminate on sixty days' notice.", 1.0),
    ("How do I end the lease early?", "Rent is due monthly.", 0.0),
    ("How do I end the lease early?", "Either party may end the lease with notice.", 0.5),
    ("Which law governs the contract?", "This agreement is governed by the laws of Delaware.", 1.0),
    ("Which law governs the contract?", "Notices go by mail.", 0.0),
]


def listnet(logits, labels, docs_per_query):
    """sentence-transformers' ListNetLoss on flat logits, its lines as they are: lists padded
    to the longest with -1e16 logits and -inf labels, cross-entropy against the labels' softmax."""
    batch_size, max_docs = len(docs_per_query), max(docs_per_query)
    logits_matrix = torch.full((batch_size, max_docs), -1e16)
    doc_indices = torch.cat([torch.arange(n) for n in docs_per_query], dim=0)
    batch_indices = torch.repeat_interleave(torch.arange(batch_size), torch.tensor(docs_per_query))
    logits_matrix[batch_indices, doc_indices] = logits
    labels_matrix = torch.full_like(logits_matrix, float("-inf"))
    labels_matrix[batch_indices, doc_indices] = labels
    return torch.nn.CrossEntropyLoss()(logits_matrix, labels_matrix.softmax(dim=1))


def make_rerank_reference(model_dir: Path, out: Path, name: str):
    """A one-output cross-encoder head on the pairs above: its fresh head, logits, the BCE and
    ListNet losses (as sentence-transformers' BinaryCrossEntropyLoss and ListNetLoss compute
    them), their gradients with respect to the logits and to every parameter, dropout off."""
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, ignore_mismatched_sizes=True,
        attn_implementation=fused_attention(model_dir)).eval()
    ref = {f"init.{k}": v.clone() for k, v in model.state_dict().items() if k.startswith("classifier.")}
    queries, passages, relevance = zip(*RERANK_ROWS)
    enc = encode(tok, list(queries), list(passages))
    inputs = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                  token_type_ids=enc["token_type_ids"])
    labels = torch.tensor(relevance)
    ref.update({"input_ids": enc["input_ids"], "relevance": labels})
    for loss_name in ("bce", "listnet"):
        model.zero_grad()
        logits = model(**accepted(model, inputs)).logits.view(-1)
        logits.retain_grad()
        if loss_name == "bce":
            loss = torch.nn.BCEWithLogitsLoss()(logits, labels)
        else:
            loss = listnet(logits, labels, [3, 2])
        loss.backward()
        ref["logits"] = logits.detach()
        ref[f"loss.{loss_name}"] = loss.reshape(1)
        ref[f"logit_grad.{loss_name}"] = logits.grad.clone()
        for n, p in named_parameters(model):
            if p.grad is not None:
                ref[f"grad.{loss_name}.{n}"] = p.grad.clone()
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_rerank.safetensors")
    print(f"wrote {out / (name + '_rerank.safetensors')} ({len(ref)} tensors)")


# Multiple choice, SWAG's layout (run_swag.py: sent1 with sent2 + " " + each ending): a long
# context whose pairs are cut at MC_MAX_LEN, and long endings of short contexts, each pair with
# one segment short enough to keep whole (longest first cuts the other). Where both segments
# pass half an odd room, tokenizers 0.23.2 (the crate) gives the odd token to the shorter one
# and 0.23.3 (PyPI's) to the longer: no pair here depends on it.
MC_QUESTIONS = [
    ("The tenant signed.", "Then",
     ["the tenant paid the first month's rent to the landlord's bank account on time.", "moon!",
      "seven green chairs ate a contract", "sold"], 0),
    ("The roof leaked after the storm, and water ran down the walls of every room on the top floor "
     "while the tenants moved their furniture and called the landlord twice.", "He",
     ["slept.", "fixed it.", "rain", "?"], 1),
    ("Either party may end it.", "A party",
     ["sings loudly", "waits", "gives sixty days' written notice to the other party before the end.", "x y z"], 2),
]
MC_MAX_LEN = 40


def make_mc_reference(model_dir: Path, out: Path, name: str, examples: bool = True):
    """AutoModelForMultipleChoice on run_swag's pairs of the questions above (truncation=True at
    MC_MAX_LEN, padded to the longest): its fresh head (and a pooler the checkpoint lacks), the
    logits [questions, choices], the loss and every parameter's gradient of it (and the size of
    the terms they sum), dropout off."""
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    model = AutoModelForMultipleChoice.from_pretrained(
        model_dir, ignore_mismatched_sizes=True, attn_implementation=fused_attention(model_dir)).eval()
    encoder = model.base_model_prefix
    ref = {f"init.{k}": v.clone() for k, v in model.state_dict().items()
           if not k.startswith(encoder + ".") or k.startswith(encoder + ".pooler.")}
    choices = len(MC_QUESTIONS[0][2])
    firsts = [c for c, _, endings, _ in MC_QUESTIONS for _ in endings]
    seconds = [f"{header} {e}" for _, header, endings, _ in MC_QUESTIONS for e in endings]
    enc = tok(firsts, seconds, truncation=True, max_length=MC_MAX_LEN, padding="longest",
              return_tensors="pt", return_token_type_ids=True)
    if config.get("type_vocab_size", 2) == 1:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    lengths = enc["attention_mask"].sum(-1)
    ref.update({"input_ids": torch.cat([ids[:n] for ids, n in zip(enc["input_ids"], lengths)]), "lengths": lengths})
    inputs = {k: v.view(len(MC_QUESTIONS), choices, -1) for k, v in enc.items()}
    labels = torch.tensor([label for *_, label in MC_QUESTIONS])
    model.zero_grad()
    o = model(**accepted(model, inputs), labels=labels)
    o.loss.backward()
    ref.update({"logits": o.logits.detach(), "loss": o.loss.detach().reshape(1)})
    for n, p in named_parameters(model):
        if p.grad is not None:
            ref[f"grad.{n}"] = p.grad.clone()
    # The size of the terms those gradients sum: a question's choices share its context, and
    # their logits' gradients (p - y) sum to zero, so the context's gradients cancel over the
    # choices. The same backward with each logit's gradient taken absolute cancels nothing.
    model.zero_grad()
    o = model(**accepted(model, inputs))
    d = (o.logits.softmax(-1) - torch.nn.functional.one_hot(labels, choices)).abs().detach() / len(MC_QUESTIONS)
    (d * o.logits).sum().backward()
    for n, p in named_parameters(model):
        if p.grad is not None:
            ref[f"grad_terms.{n}"] = p.grad.abs().max().reshape(1)
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_mc.safetensors")
    rows = [{"sent1": c, "sent2": h, **{f"ending{i}": e for i, e in enumerate(endings)}, "label": label}
            for c, h, endings, label in MC_QUESTIONS]
    if examples:
        (out / "mc_examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {out / (name + '_mc.safetensors')} ({len(ref)} tensors)")


# Int8: texts run one at a time (dynamic quantisation takes each input's range from the whole
# batch, so padding would change it).
INT8_TEXTS = ["The film was a delight from start to finish.",
              "A dull, overlong and badly acted mess that no one should sit through.",
              "Fine.",
              "The contract may be terminated by either party on thirty days' written notice to the other."]


def make_int8_reference(model_dir: Path, out: Path, name: str):
    """torch.ao.quantization.quantize_dynamic of AutoModel's encoder layers with
    per_channel_dynamic_qconfig (int8 weights, a scale per output row, inputs quantized at every
    call; the x86 engine): each Linear's int8 values and scales, and the last hidden state of
    the float and the int8 model for each of INT8_TEXTS alone, their rows concatenated."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    torch.backends.quantized.engine = "x86"
    from transformers import AutoModel
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    int8 = quantize_dynamic(model, {"encoder": per_channel_dynamic_qconfig}, dtype=torch.qint8)
    ref = {}
    for module_name, module in int8.named_modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            w = module.weight()
            ref[f"int8.{module_name}"] = w.int_repr()
            ref[f"scale.{module_name}"] = w.q_per_channel_scales().float()
    ids, fp32, q = [], [], []
    with torch.no_grad():
        for text in INT8_TEXTS:
            enc = tok(text, return_tensors="pt")
            ids.append(enc["input_ids"][0])
            fp32.append(model(**enc).last_hidden_state[0])
            q.append(int8(**enc).last_hidden_state[0])
    ref.update({"input_ids": torch.cat(ids), "lengths": torch.tensor([len(i) for i in ids]),
                "fp32": torch.cat(fp32), "int8": torch.cat(q)})
    save_file({k: v.contiguous() for k, v in ref.items()}, out / f"{name}_int8.safetensors")
    print(f"wrote {out / (name + '_int8.safetensors')} ({len(ref)} tensors)")


# Extractive QA: a context long enough to be cut into windows at QA_MAX_LEN tokens, questions
# whose answers fall in the first window, a later one, and across a window edge (whole only in
# the next), one with two answers, one unanswerable. tests/question_answering.rs builds its
# data from qa_examples.json, which this writes.
QA_CONTEXT = ("This lease begins on the first of May. The tenant shall pay rent of two thousand "
              "dollars. Either party may end it on sixty days' notice. The landlord shall maintain "
              "the roof. It is governed by the laws of Delaware.")
QA_QUESTIONS = [
    ("q-start", "When does it begin?", ["the first of May"]),
    ("q-law", "Which law?", ["the laws of Delaware"]),
    ("q-two", "Who has duties?", ["The tenant", "The landlord"]),
    ("q-none", "Deposit?", []),
]
QA_MAX_LEN, QA_STRIDE = 64, 16


def qa_windows(tok, questions, contexts):
    """run_qa.py's prepare_train_features, its lines as they are (pad_on_right) but for one: a
    window's target is the first answer wholly inside it, not only the first answer (run_qa
    reads answers[0]: a question with several answers, as CUAD's, would teach that the others
    are no answer). The windows, each window's example, its offsets ((-1, -1) outside the
    context) and its start/end targets."""
    enc = tok(questions, contexts, truncation="only_second", max_length=QA_MAX_LEN, stride=QA_STRIDE,
              return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    starts, ends, offsets_out = [], [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tok.cls_token_id)
        sequence_ids = enc.sequence_ids(i)
        answers = QA_ANSWERS[sample_mapping[i]]
        offsets_out.append([o if sequence_ids[k] == 1 else (-1, -1) for k, o in enumerate(offsets)])
        target = (cls_index, cls_index)
        for text, start_char in zip(answers["text"], answers["answer_start"]):
            end_char = start_char + len(text)
            token_start_index = 0
            while sequence_ids[token_start_index] != 1:
                token_start_index += 1
            token_end_index = len(input_ids) - 1
            while sequence_ids[token_end_index] != 1:
                token_end_index -= 1
            if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
                continue
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            target = (token_start_index - 1, token_end_index + 1)
            break
        starts.append(target[0])
        ends.append(target[1])
    return enc, sample_mapping, offsets_out, starts, ends


QA_ANSWERS = [{"text": a, "answer_start": [QA_CONTEXT.index(t) for t in a]} for _, _, a in QA_QUESTIONS]


def make_qa_reference(model_dir: Path, out: Path, name: str):
    """AutoModelForQuestionAnswering on run_qa's windows of the examples above: its fresh head,
    every window's start and end logits and loss computed alone (no padding), the mean loss over
    windows and every parameter's gradient of it, dropout off; gradient x input of the first
    window's answer (explain's span targets)."""
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    no_dropout = {"modernbert": {"classifier_dropout": 0.0}, "distilbert": {"qa_dropout": 0.0}}.get(config["model_type"], {})
    # The fixtures' configs have three labels (their classifiers'): a QA head has two outputs.
    model = AutoModelForQuestionAnswering.from_pretrained(
        model_dir, num_labels=2, ignore_mismatched_sizes=True, attn_implementation=fused_attention(model_dir),
        **no_dropout).eval()
    head = "classifier." if config["model_type"] == "modernbert" else "qa_outputs."
    ref = {f"init.{k}": v.clone() for k, v in model.state_dict().items() if k.startswith(head)}
    questions = [q for _, q, _ in QA_QUESTIONS]
    enc, mapping, offsets, starts, ends = qa_windows(tok, questions, [QA_CONTEXT] * len(questions))
    if config.get("type_vocab_size", 2) == 1:
        # tokenizers leaves a later window's context at the type id a pair's second text has
        # before its template (1) where the template says 0 (XLM-R's): a model of one token type
        # cannot embed it. The template's own (0), which bertkit gives.
        enc["token_type_ids"] = [[0] * len(ids) for ids in enc["input_ids"]]
    lengths = [len(ids) for ids in enc["input_ids"]]
    ref.update({"input_ids": torch.tensor(sum(enc["input_ids"], [])), "lengths": torch.tensor(lengths),
                "question": torch.tensor(mapping), "offsets": torch.tensor(sum(offsets, [])),
                "starts": torch.tensor(starts), "ends": torch.tensor(ends)})
    model.zero_grad()
    total, start_logits, end_logits = 0.0, [], []
    for i in range(len(lengths)):
        inputs = {k: torch.tensor([enc[k][i]]) for k in ("input_ids", "attention_mask", "token_type_ids")}
        o = model(**accepted(model, inputs), start_positions=torch.tensor([starts[i]]),
                  end_positions=torch.tensor([ends[i]]))
        start_logits.append(o.start_logits[0].detach())
        end_logits.append(o.end_logits[0].detach())
        total = total + o.loss / len(lengths)
    total.backward()
    ref.update({"start_logits": torch.cat(start_logits), "end_logits": torch.cat(end_logits), "loss": total.reshape(1)})
    for n, p in named_parameters(model):
        if p.grad is not None:
            ref[f"grad.{n}"] = p.grad.clone()
    # What `explain` attributes for an answer read in the first window: gradient x input (word
    # embeddings) of the probability of starting at its target start, and of ending at its end.
    ids, types = torch.tensor([enc["input_ids"][0]]), torch.tensor([enc["token_type_ids"][0]])
    x = model.get_input_embeddings()(ids).detach()
    for side, at in (("start", starts[0]), ("end", ends[0])):
        xg = x.clone().requires_grad_(True)
        # ModernBERT's QA class names no inputs_embeds but hands its keywords to the encoder.
        o = model(inputs_embeds=xg, **accepted(model, dict(attention_mask=torch.ones_like(ids), token_type_ids=types)))
        (g,) = torch.autograd.grad(getattr(o, f"{side}_logits").softmax(-1)[0, at], xg)
        ref[f"explain.{side}_gxi"] = (g * x).sum(-1)[0]
        # The size of the terms each attribution sums (Σ over the embedding of |g x|): where the
        # sum cancels (DeBERTa-v3's layer norm of the word embeddings alone makes g orthogonal
        # to x), its rounding is still that of the terms.
        ref[f"explain.{side}_gxi_terms"] = (g * x).abs().sum(-1).max().reshape(1)
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_qa.safetensors")
    examples = [{"id": i, "question": q, "context": QA_CONTEXT, "answers": a}
                for (i, q, _), a in zip(QA_QUESTIONS, QA_ANSWERS)]
    (out / "qa_examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    print(f"wrote {out / (name + '_qa.safetensors')} ({len(ref)} tensors, {len(lengths)} windows)")


def make_reranking_metrics_reference(out: Path):
    """sentence-transformers' CrossEncoderRerankingEvaluator measures on fixed scores: 12 queries
    of 2-15 candidates, one without a relevant candidate; once with scores rounded so that ties
    occur (NDCG and MAP: scikit-learn's tie handling), once without (MRR too: the evaluator
    orders ties as numpy's argsort leaves them, which depends on the CPU's sort kernel)."""
    import numpy as np
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
    evaluator = CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}], at_k=10)
    reference = {}
    for case, tied in (("tied", True), ("distinct", False)):
        g = torch.Generator().manual_seed(5)
        scores, relevance, query_of = [], [], []
        mrr, ndcg, ap = [], [], []
        for q in range(12):
            n = int(torch.randint(2, 16, (1,), generator=g))
            s = torch.rand(n, generator=g)
            s = ((s * 8).round() / 8 if tied else s).tolist()
            r = [0.0] * n if q == 7 else (torch.rand(n, generator=g) < 0.35).float().tolist()
            if q != 7 and sum(r) == 0:
                r[n // 2] = 1.0
            y_true = [int(x > 0.5) for x in r]
            m = evaluator.compute_metrics(y_true, np.array(s), sum(y_true)) if sum(y_true) else (0, 0, 0)
            mrr.append(m[0]), ndcg.append(m[1]), ap.append(m[2])
            scores += s
            relevance += r
            query_of += [q] * n
        metrics = {"ndcg_at_10": float(np.mean(ndcg)), "map": float(np.mean(ap))}
        if not tied:
            metrics["mrr_at_10"] = float(np.mean(mrr))
        reference[case] = {"scores": scores, "relevance": relevance, "query_of": query_of, "metrics": metrics}
    (out / "rerank.json").write_text(json.dumps(reference, indent=0))
    print(f"wrote {out / 'rerank.json'}")


# Texts where tokenizer pipelines part ways: runs of spaces, tabs and newlines, leading and
# trailing space, full-width and compatibility characters (NFKC), combining accents, zero-width
# and control characters, CJK, emoji. tests/parity.rs reads them from the reference file.
HARD_TEXTS = [
    "Hello  world", "a   b\tc\nd", "  leading and trailing  ", "Café naïve — 東京 über straße 😀 résumé",
    "Ｆｕｌｌｗｉｄｔｈ ①②③ ﬁnancial", "control\x07char\u200bzero width", "日本語のテキストです。",
    "tab\t\tsep", "x\u3000y (ideographic space)", "e\u0301 combining", "Section 2.1(a)—“quoted”", "",
    "The lessee shall  maintain\n\nthe premises.",
]


def make_xlmr_tokenizer_fixture(out: Path):
    """An XLM-R tokenizer as the hub's checkpoints carry it: a SentencePiece Unigram model
    (trained here with the `sentencepiece` package, NFKC character map, XLM-R's special ids)
    converted by transformers' XLMRobertaConverter, in two vintages of tokenizer.json: as it
    converts today (`current/`) and as the hub's older files have it, the Precompiled
    normaliser and Metaspace alone (`hub-2020/`: xlm-roberta-base and its kin). transformers 5
    tokenizes both with its own XLMRobertaTokenizer pipeline; the reference holds its ids and
    SentencePiece's own."""
    import importlib
    import tempfile
    import sentencepiece as spm
    converter = importlib.import_module("transformers.convert_slow_tokenizer").XLMRobertaConverter
    corpus = SHORT_TEXTS + [t for pair in PAIRS for t in pair] + [LONG_TEXT] + tiny_vocab() + HARD_TEXTS
    tmp = Path(tempfile.mkdtemp())
    (tmp / "corpus.txt").write_text("\n".join(c.replace("\n", " ") for c in corpus if c.strip()) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "sentencepiece.bpe"), vocab_size=300,
        model_type="unigram", character_coverage=1.0, pad_id=-1, unk_id=0, bos_id=1, eos_id=2,
        num_threads=1, minloglevel=2, hard_vocab_limit=False)
    special = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}

    class Slow:  # what the converter reads of the slow tokenizer transformers 5 no longer has
        vocab_file, add_prefix_space, legacy = str(tmp / "sentencepiece.bpe.model"), True, True

        def convert_tokens_to_ids(self, token):
            return special[token]

    sp = spm.SentencePieceProcessor(model_file=str(tmp / "sentencepiece.bpe.model"))
    # fairseq's ids, which XLM-R's vocabulary follows: <s> <pad> </s> <unk>, then the pieces.
    fairseq = {0: 3, 1: 0, 2: 2}
    reference = {"texts": HARD_TEXTS, "sentencepiece": [
        [0] + [fairseq.get(p, p + 1) for p in sp.encode(t)] + [2] for t in HARD_TEXTS]}
    for vintage in ("current", "hub-2020"):
        d = out / vintage
        d.mkdir(parents=True, exist_ok=True)
        converter(Slow()).converted().save(str(d / "tokenizer.json"))
        file = json.loads((d / "tokenizer.json").read_text())
        if vintage == "hub-2020":
            file["normalizer"] = file["normalizer"]["normalizers"][0]
            file["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
        (d / "tokenizer.json").write_text(json.dumps(file, ensure_ascii=False))
        (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))
        (d / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
        tok = AutoTokenizer.from_pretrained(d)
        reference[vintage] = [tok(t)["input_ids"] for t in HARD_TEXTS]
    (out / "reference.json").write_text(json.dumps(reference, ensure_ascii=False, indent=0))
    print(f"wrote {out}")


EXPLAIN_TEXT = "I love this movie, it's fantastic!"
IG_STEPS = 50


def make_explain_reference(model_dir: Path, out: Path, name: str):
    """Attributions of the classifier's predicted class probability on one text: gradient x
    input and integrated gradients on the word embeddings (`inputs_embeds`; baseline: words
    replaced by padding, special tokens kept; trapezoidal rule on IG_STEPS points), attention
    rollout (Abnar & Zuidema: per layer 0.5 mean-over-heads + 0.5 I, rows renormalised, the
    product), and gradient x input of a token classifier's tag at two positions."""
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cls = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=NUM_LABELS, id2label=ID2LABEL, attn_implementation="eager").eval()
    encoder = cls.base_model_prefix
    ref = {f"init.{k}": v.clone() for k, v in cls.state_dict().items()
           if not k.startswith(encoder + ".") or k.startswith(encoder + ".pooler.")}
    enc = tok(EXPLAIN_TEXT, return_tensors="pt", return_token_type_ids=True)
    ids, types = enc["input_ids"], enc["token_type_ids"]
    special = torch.tensor(tok.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
    # DeBERTa's padding row is zero and it adds no positions: its layer norm makes every point of
    # a padding-baseline path but the first one input, which 50 steps cannot integrate. Mask it is.
    family = json.loads((model_dir / "config.json").read_text())["model_type"]
    blank = tok.mask_token_id if family == "deberta-v2" else tok.pad_token_id
    baseline = torch.where(special.bool(), ids[0], blank).unsqueeze(0)
    embed = cls.get_input_embeddings()

    def probs(model, embeds):
        n = embeds.shape[0]
        kw = accepted(model, dict(inputs_embeds=embeds, attention_mask=torch.ones(n, ids.shape[1], dtype=torch.long),
                                  token_type_ids=types.expand(n, -1)))
        return model(**kw).logits.softmax(-1)

    with torch.no_grad():
        o = cls(**accepted(cls, dict(input_ids=ids, token_type_ids=types)), output_attentions=True)
        target = int(o.logits[0].argmax())
        x, x0 = embed(ids), embed(baseline)
    joint = None
    for a in o.attentions:
        a = a[0].double().mean(0)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[0], dtype=torch.double)
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(probs(cls, xg)[:, target].sum(), xg)
    alphas = torch.linspace(0, 1, IG_STEPS)
    weights = torch.full((IG_STEPS,), 1 / (IG_STEPS - 1))
    weights[0] = weights[-1] = 0.5 / (IG_STEPS - 1)
    path = (x0 + alphas.view(-1, 1, 1) * (x - x0)).requires_grad_(True)
    f = probs(cls, path)[:, target]
    (pg,) = torch.autograd.grad(f.sum(), path)
    ref.update({"explain.input_ids": ids, "explain.token_type_ids": types, "explain.baseline_ids": baseline,
                "explain.target": torch.tensor([target]), "explain.gxi": (g * x).sum(-1)[0],
                "explain.ig": ((pg * weights.view(-1, 1, 1)).sum(0) * (x - x0)[0]).sum(-1),
                "explain.ig_outputs": torch.stack([f[-1], f[0]]), "explain.rollout": joint.float()})

    tagger = AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(TAG_NAMES), id2label=dict(enumerate(TAG_NAMES)),
        label2id={n: i for i, n in enumerate(TAG_NAMES)}, ignore_mismatched_sizes=True,
        attn_implementation="eager").eval()
    ref.update({f"tok_init.{k}": v.clone() for k, v in tagger.state_dict().items() if k.startswith("classifier.")})
    xg = x.clone().requires_grad_(True)
    kw = accepted(tagger, dict(inputs_embeds=xg, attention_mask=torch.ones_like(ids), token_type_ids=types))
    score = tagger(**kw).logits.softmax(-1)[0, [1, 2], 1].mean()
    (g,) = torch.autograd.grad(score, xg)
    ref["explain.tok_gxi"] = (g * x).sum(-1)[0]
    ref = {k: v.detach().contiguous() for k, v in ref.items()}
    save_file(ref, out / f"{name}_explain.safetensors")
    print(f"wrote {out / (name + '_explain.safetensors')} ({len(ref)} tensors)")


def make_metric_reference(out: Path):
    """The metrics bertkit reports, as seqeval (entities), scikit-learn (multi-label) and scipy
    (correlations, the paired t-test) compute them, on random inputs with every awkward case:
    IOB1/IOB2/IOBES tags mixed, empty label sets, tied scores."""
    import random
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import f1_score as sk_f1
    rng = random.Random(5)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-ORG", "I-ORG", "B-MISC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
    per_type = classification_report(gold, pred, output_dict=True)
    entities = {"gold": gold, "predicted": pred, "gold_entities": [list(e) for e in sorted(get_entities(gold))],
                "precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred),
                "per_type_f1": {k: v["f1-score"] for k, v in per_type.items() if "avg" not in k}}
    g = [[int(rng.random() < 0.2) for _ in range(6)] for _ in range(200)]
    p = [[x if rng.random() < 0.8 else 1 - x for x in r] for r in g]
    multi = {"gold": g, "predicted": p, "micro_f1": sk_f1(g, p, average="micro", zero_division=0),
             "macro_f1": sk_f1(g, p, average="macro", zero_division=0), "subset_accuracy": accuracy_score(g, p)}
    y = [round(rng.uniform(0, 5), 1) for _ in range(300)]
    x = [round(v + rng.gauss(0, 1), 0) for v in y]  # rounded: many ties
    regression = {"predicted": x, "gold": y, "pearson": pearsonr(x, y)[0], "spearman": spearmanr(x, y)[0],
                  "mse": float(np.mean((np.array(x) - np.array(y)) ** 2)),
                  "mae": float(np.mean(np.abs(np.array(x) - np.array(y))))}
    from scipy.stats import ttest_rel
    paired = []
    for n in [2, 3, 5, 10]:
        a = [rng.uniform(0.6, 0.9) for _ in range(n)]
        b = [v + rng.gauss(0.01, 0.02) for v in a]
        test = ttest_rel(b, a)
        paired.append({"a": a, "b": b, "t": float(test.statistic), "p": float(test.pvalue)})
    # Linear CKA (Kornblith et al. 2019) as numpy computes it: centred, ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F).
    nrng = np.random.default_rng(11)
    cx = nrng.standard_normal((60, 8))
    cy = cx @ nrng.standard_normal((8, 5)) + 0.5 * nrng.standard_normal((60, 5))
    ccx, ccy = cx - cx.mean(0), cy - cy.mean(0)
    cka = np.linalg.norm(ccy.T @ ccx) ** 2 / (np.linalg.norm(ccx.T @ ccx) * np.linalg.norm(ccy.T @ ccy))
    path = out / "metrics.json"
    path.write_text(json.dumps({"entities": entities, "multi_label": multi, "regression": regression,
                                "paired_t": paired, "cka": {"x": cx.tolist(), "y": cy.tolist(), "cka": float(cka)}}))
    print(f"wrote {path}")


def roundtrip(model_dir: str, expected: str):
    """Load a bertkit-saved directory with from_pretrained; print max |logits - expected| and,
    where the expected file has labels, |loss - expected loss| (the loss transformers picks from
    the saved config: problem_type, the architecture)."""
    from safetensors.torch import load_file
    exp = load_file(expected)
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    arch = cfg["architectures"][0]
    auto = next(a for suffix, a in [("ForSequenceClassification", AutoModelForSequenceClassification),
                                    ("ForTokenClassification", AutoModelForTokenClassification),
                                    ("ForQuestionAnswering", AutoModelForQuestionAnswering),
                                    ("ForMultipleChoice", AutoModelForMultipleChoice),
                                    ("ForMaskedLM", AutoModelForMaskedLM)] if arch.endswith(suffix))
    model = auto.from_pretrained(model_dir).eval()
    assert type(model).__name__ == arch, (type(model).__name__, arch)
    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = tok(SHORT_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        if arch.endswith("ForQuestionAnswering"):
            out = model(**accepted(model, enc))
            out.logits = torch.stack([out.start_logits, out.end_logits], -1)  # bertkit's [batch, seq, 2]
        elif arch.endswith("ForMultipleChoice"):
            # The texts as the choices of one question: [1, choices, seq].
            out = model(**{k: v.unsqueeze(0) for k, v in accepted(model, enc).items()}, labels=exp.get("labels"))
        else:
            out = model(**accepted(model, enc), labels=exp.get("labels"))
    diff = out.logits - exp["logits"]
    if diff.dim() == 3 and not arch.endswith("ForMultipleChoice"):
        # A row per token: only real tokens' rows are read (bertkit's packed batches compute
        # no other; transformers' rows at padding mean nothing).
        diff = diff[enc["attention_mask"].bool()]
    result = {"architecture": arch, "max_abs_diff": diff.abs().max().item(),
              "input_ids_equal": torch.equal(enc["input_ids"], exp["input_ids"].long()),
              "problem_type": model.config.problem_type}
    if "labels" in exp:
        result["loss_diff"] = abs(out.loss.item() - exp["loss"].item())
    print(json.dumps(result))


# Each committed tiny model: reference name -> (folder under tests/fixtures, its maker).
def make_probe_reference(model_dir, out):
    """A linear probe of frozen features, as scikit-learn fits it, for `bertkit probe`: a small
    three-class set whose words overlap between classes (so the L2 penalty matters), its mean-
    pooled last hidden states standardised with the training statistics, LogisticRegression
    with C = 1, and its objective (mean cross-entropy + ||W||^2 / 2n), loss and predictions on
    held-out texts."""
    import csv
    import random

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel

    rng = random.Random(7)
    words = {
        "rent": "tenant landlord lease premises rent repair deposit".split(),
        "pay": "invoice payment fee price royalty revenue account".split(),
        "term": "terminate notice expiration renewal period breach cure".split(),
    }
    shared = "the party shall agreement may any such of this".split()

    def sentence(label):
        own = [rng.choice(words[label]) for _ in range(3)]
        other = [rng.choice(words[rng.choice(sorted(words))]) for _ in range(2)]
        body = own + other + [rng.choice(shared) for _ in range(4)]
        rng.shuffle(body)
        return " ".join(body)

    sets = {name: [(sentence(l), l) for l in sorted(words) for _ in range(n)] for name, n in (("train", 40), ("eval", 15))}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        with open(out / f"minilm_probe_{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def features(rows):
        enc = tok([t for t, _ in rows], padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return ((h * mask).sum(1) / mask.sum(1)).double().numpy()

    x_train, x_eval = features(sets["train"]), features(sets["eval"])
    mean, scale = x_train.mean(0), np.maximum(x_train.std(0), 1e-6)
    z_train, z_eval = (x_train - mean) / scale, (x_eval - mean) / scale
    labels = sorted(words)
    y_train = np.array([labels.index(l) for _, l in sets["train"]])
    y_eval = np.array([labels.index(l) for _, l in sets["eval"]])
    clf = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(z_train, y_train)

    def mean_loss(z, y):
        p = clf.predict_proba(z)
        return float(-np.log(p[np.arange(len(y)), y]).mean())

    objective = mean_loss(z_train, y_train) + 0.5 * float((clf.coef_**2).sum()) / len(y_train)
    predicted = clf.predict(z_eval)
    ref = {
        "objective": objective,
        "eval_loss": mean_loss(z_eval, y_eval),
        "accuracy": float((predicted == y_eval).mean()),
        "predicted": [labels[i] for i in predicted],
    }
    (out / "minilm_probe.json").write_text(json.dumps(ref, indent=1))


FIXTURES = {
    "tiny": ("tiny-bert", make_tiny_model),
    "tiny-roberta": ("tiny-roberta", make_tiny_roberta),
    "tiny-xlm-roberta": ("tiny-xlm-roberta", make_tiny_xlm_roberta),
    "tiny-distilbert": ("tiny-distilbert", make_tiny_distilbert),
    "tiny-electra": ("tiny-electra", make_tiny_electra),
    "tiny-modernbert": ("tiny-modernbert", make_tiny_modernbert),
    "tiny-deberta-v3": ("tiny-deberta-v3", make_tiny_deberta_v3),
    "tiny-deberta-v2": ("tiny-deberta-v2", make_tiny_deberta_v2),
}


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cmd = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    fixtures = ROOT / "tests/fixtures"
    if cmd in FIXTURES:
        folder, make = FIXTURES[cmd]
        model_dir = fixtures / folder
        make(model_dir)
        make_reference(model_dir, fixtures / "reference", cmd, long_attentions=False)
    elif cmd == "tokens":
        for name, (model, _) in FIXTURES.items():
            write_tokens(fixtures / model, fixtures / "reference", name)
    elif cmd == "tasks":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_task_reference(fixtures / model, fixtures / "reference", name)
    elif cmd == "explain":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_explain_reference(fixtures / model, fixtures / "reference", name)
    elif cmd == "minilm-explain":
        make_explain_reference(Path(sys.argv[2]), Path(sys.argv[3]), "minilm")
    elif cmd == "minilm-probe":
        make_probe_reference(Path(sys.argv[2]), Path(sys.argv[3]))
    elif cmd == "metrics":
        make_metric_reference(fixtures / "reference")
    elif cmd == "embedding":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_embedding_reference(fixtures / model, fixtures / "reference", name)
        make_retrieval_reference(fixtures / "reference")
    elif cmd == "rerank":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_rerank_reference(fixtures / model, fixtures / "reference", name)
        make_reranking_metrics_reference(fixtures / "reference")
    elif cmd == "mc":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_mc_reference(fixtures / model, fixtures / "reference", name)
    elif cmd == "minilm-int8":
        make_int8_reference(Path(sys.argv[2]), Path(sys.argv[3]), "minilm")
    elif cmd == "minilm-mc":
        make_mc_reference(Path(sys.argv[2]), Path(sys.argv[3]), "minilm", examples=False)
    elif cmd == "qa":
        for name, (model, _) in FIXTURES.items():
            if len(sys.argv) < 3 or sys.argv[2] == name:
                make_qa_reference(fixtures / model, fixtures / "reference", name)
    elif cmd == "xlmr-tokenizer":
        make_xlmr_tokenizer_fixture(fixtures / "xlmr-tokenizer")
    elif cmd == "minilm":
        make_reference(Path(sys.argv[2]), Path(sys.argv[3]), "minilm", long_attentions=True)
    elif cmd == "roundtrip":
        roundtrip(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
