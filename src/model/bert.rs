//! BERT, read top to bottom: embeddings, encoder layers, pooler, and the two task heads.
//!
//! Parameters live in a tch `VarStore` under exactly the names Hugging Face uses
//! (`bert.encoder.layer.0.attention.self.query.weight`, ...), so loading and saving is a
//! matter of matching names (see `checkpoint`). Initialisation follows transformers'
//! `BertPreTrainedModel._init_weights`, which matters for heads a checkpoint does not have.

use tch::nn::{Init, Path};
use tch::{Kind, Reduction, Tensor};

use super::config::{Activation, BertConfig};
use super::recompute::recomputed;
use crate::device::upload;
use crate::torch_failure::csrc_tensor;

/// Label value that marks positions without a target, as in transformers.
pub const IGNORE_INDEX: i64 = -100;

/// One batch of token ids, as the tokenizer and collator produce it. All `[batch, seq]`, int64.
#[derive(Debug)]
pub struct Inputs {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    /// Whether any position is padding. Known where the batch is built; asking the mask on a GPU
    /// would make the host wait for it at every forward pass.
    pub padded: bool,
}

impl Inputs {
    /// Inputs from their tensors, reading the mask once to see whether anything is padded.
    pub fn new(input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Self {
        let padded = attention_mask.eq(0).any().int64_value(&[]) != 0;
        Inputs { input_ids, attention_mask, token_type_ids, padded }
    }

    pub fn to_device(&self, device: tch::Device) -> Inputs {
        Inputs {
            input_ids: upload(&self.input_ids, device),
            attention_mask: upload(&self.attention_mask, device),
            token_type_ids: upload(&self.token_type_ids, device),
            padded: self.padded,
        }
    }
}

/// What a forward pass should compute beyond the last hidden state.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Dropout on (training) or off (evaluation).
    pub train: bool,
    pub output_hidden_states: bool,
    pub output_attentions: bool,
}

impl ForwardOptions {
    pub fn train() -> Self {
        ForwardOptions { train: true, ..Default::default() }
    }
    pub fn eval() -> Self {
        ForwardOptions::default()
    }
}

#[derive(Debug)]
pub struct EncoderOutput {
    pub last_hidden_state: Tensor,
    /// Embedding output then every layer's output (`num_hidden_layers + 1` tensors) when asked.
    pub hidden_states: Vec<Tensor>,
    /// `[batch, heads, seq, seq]` softmax probabilities of every layer when asked.
    pub attentions: Vec<Tensor>,
    /// `tanh(dense(h[CLS]))` when the model has a pooler.
    pub pooled: Option<Tensor>,
}

/// Dropout as `nn.Dropout`, keeping a one-byte mask for backward as libtorch's `native_dropout`
/// does (`Tensor::dropout` keeps a float one on the CPU, 4x the memory). On a GPU that is
/// `native_dropout` itself; on the CPU the same arithmetic, `input.mul(mask).mul_(scale)`, with
/// the mask drawn in parallel (`csrc/extras.cpp`).
fn dropout(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !(train && p > 0.0) {
        return xs.shallow_clone();
    }
    if xs.device() != tch::Device::Cpu {
        return xs.native_dropout(p, true).0;
    }
    let keep = 1.0 - p;
    let mut out = xs * cpu_dropout_mask(xs, keep);
    let _ = out.g_mul_scalar_(if keep == 0.0 { 0.0 } else { 1.0 / keep });
    out
}

unsafe extern "C" {
    fn bertkit_dropout_mask(like: *const torch_sys::C_tensor, keep: f64, out: *mut *mut torch_sys::C_tensor) -> i32;
}

/// A bool tensor shaped like `like`, true with probability `keep`, from the default CPU
/// generator (so `manual_seed` and saved generator states apply).
fn cpu_dropout_mask(like: &Tensor, keep: f64) -> Tensor {
    // SAFETY: a live tensor handle in; on success the C++ side allocates the mask for us.
    unsafe { csrc_tensor(|out| bertkit_dropout_mask(like.as_ptr(), keep, out)) }
}

struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(p: Path, in_dim: i64, out_dim: i64, init_range: f64) -> Self {
        Linear {
            weight: p.var("weight", &[out_dim, in_dim], Init::Randn { mean: 0., stdev: init_range }),
            bias: p.zeros("bias", &[out_dim]),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }

    fn shallow_clone(&self) -> Self {
        Linear { weight: self.weight.shallow_clone(), bias: self.bias.shallow_clone() }
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(p: Path, dim: i64, eps: f64) -> Self {
        LayerNorm { weight: p.ones("weight", &[dim]), bias: p.zeros("bias", &[dim]), eps }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let dim = *xs.size().last().expect("LayerNorm input has a feature dim");
        xs.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }

    fn shallow_clone(&self) -> Self {
        LayerNorm { weight: self.weight.shallow_clone(), bias: self.bias.shallow_clone(), eps: self.eps }
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    layer_norm: LayerNorm,
    pad_token_id: i64,
    dropout: f64,
}

impl Embeddings {
    fn new(p: Path, c: &BertConfig) -> Self {
        let init = Init::Randn { mean: 0., stdev: c.initializer_range };
        let word = p.sub("word_embeddings").var("weight", &[c.vocab_size, c.hidden_size], init);
        // nn.Embedding(padding_idx=pad) starts the padding row at zero and never updates it.
        if (0..c.vocab_size).contains(&c.pad_token_id) {
            let _ = tch::no_grad(|| word.get(c.pad_token_id).zero_());
        }
        Embeddings {
            word,
            position: p.sub("position_embeddings").var("weight", &[c.max_position_embeddings, c.hidden_size], init),
            token_type: p.sub("token_type_embeddings").var("weight", &[c.type_vocab_size, c.hidden_size], init),
            layer_norm: LayerNorm::new(p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps),
            pad_token_id: c.pad_token_id,
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, inputs: &Inputs, train: bool) -> Tensor {
        let seq_len = inputs.input_ids.size()[1];
        let positions = Tensor::arange(seq_len, (Kind::Int64, inputs.input_ids.device()));
        let words = Tensor::embedding(&self.word, &inputs.input_ids, self.pad_token_id, false, false);
        // Summed in transformers' order: float addition is not associative.
        let xs = words
            + Tensor::embedding(&self.token_type, &inputs.token_type_ids, -1, false, false)
            + self.position.index_select(0, &positions).unsqueeze(0);
        dropout(&self.layer_norm.forward(&xs), self.dropout, train)
    }
}

struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    num_heads: i64,
    head_dim: i64,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl SelfAttention {
    fn new(p: Path, c: &BertConfig) -> Self {
        let (h, r) = (c.hidden_size, c.initializer_range);
        let s = p.sub("self");
        let o = p.sub("output");
        SelfAttention {
            query: Linear::new(s.sub("query"), h, h, r),
            key: Linear::new(s.sub("key"), h, h, r),
            value: Linear::new(s.sub("value"), h, h, r),
            output: Linear::new(o.sub("dense"), h, h, r),
            layer_norm: LayerNorm::new(o.sub("LayerNorm"), h, c.layer_norm_eps),
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            attention_dropout: c.attention_probs_dropout_prob,
            hidden_dropout: c.hidden_dropout_prob,
        }
    }

    /// `mask` is additive, `[batch, 1, 1, seq]`: 0 where a key may be attended, a large
    /// negative number at padding (None: no padding). `queries` (`[batch, m]` positions) limits
    /// the output to those positions, which still attend to every key. Returns the layer output
    /// (`[batch, seq or m, hidden]`) and, if asked, the probabilities.
    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        want_probs: bool,
        queries: Option<&Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let (b, l, h) = xs.size3().expect("[batch, seq, hidden]");
        let (heads, d) = (self.num_heads, self.head_dim);
        let (xq, q, k, v) = match queries {
            None => {
                // One matmul for Q, K and V instead of three: the weights stay separate (HF names).
                let w = Tensor::cat(&[&self.query.weight, &self.key.weight, &self.value.weight], 0);
                let bias = Tensor::cat(&[&self.query.bias, &self.key.bias, &self.value.bias], 0);
                let qkv = xs.linear(&w, Some(&bias)).view([b, l, 3, heads, d]).permute([2, 0, 3, 1, 4]);
                (xs.shallow_clone(), qkv.get(0), qkv.get(1), qkv.get(2))
            }
            Some(positions) => {
                let xq = xs.gather(1, &positions.unsqueeze(-1).expand([-1, -1, h], false), false);
                let q = self.query.forward(&xq).view([b, -1, heads, d]).transpose(1, 2);
                let w = Tensor::cat(&[&self.key.weight, &self.value.weight], 0);
                let bias = Tensor::cat(&[&self.key.bias, &self.value.bias], 0);
                let kv = xs.linear(&w, Some(&bias)).view([b, l, 2, heads, d]).permute([2, 0, 3, 1, 4]);
                (xq, q, kv.get(0), kv.get(1))
            }
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        let dropout_p = if train { self.attention_dropout } else { 0.0 };
        // SDPA's fused CPU kernel has no dropout, so training on the CPU would take its math
        // fallback, which keeps a float dropout mask and scaled copies of Q and K for backward:
        // written out here instead, with a one-byte mask, the same arithmetic otherwise.
        let explicit = want_probs || (dropout_p > 0.0 && xs.device() == tch::Device::Cpu);
        let (context, probs) = if explicit {
            let scores = q.matmul(&k.transpose(-1, -2)) * scale;
            let scores = match mask {
                Some(m) => scores + m,
                None => scores,
            };
            let probs = scores.softmax(-1, Kind::Float).to_kind(q.kind());
            (dropout(&probs, dropout_p, train).matmul(&v), want_probs.then_some(probs))
        } else {
            // Fused kernel (flash attention where the device has it), same result.
            let mask = mask.map(|m| m.to_kind(q.kind()));
            (Tensor::scaled_dot_product_attention(&q, &k, &v, mask.as_ref(), dropout_p, false, scale, false), None)
        };
        let context = context.transpose(1, 2).reshape([b, -1, h]);
        let out = dropout(&self.output.forward(&context), self.hidden_dropout, train);
        (self.layer_norm.forward(&(out + xq)), probs)
    }

    fn shallow_clone(&self) -> Self {
        SelfAttention {
            query: self.query.shallow_clone(),
            key: self.key.shallow_clone(),
            value: self.value.shallow_clone(),
            output: self.output.shallow_clone(),
            layer_norm: self.layer_norm.shallow_clone(),
            ..*self
        }
    }
}

struct Layer {
    attention: SelfAttention,
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    activation: Activation,
    dropout: f64,
}

impl Layer {
    fn new(p: Path, c: &BertConfig) -> Self {
        let r = c.initializer_range;
        Layer {
            attention: SelfAttention::new(p.sub("attention"), c),
            intermediate: Linear::new(p.sub("intermediate").sub("dense"), c.hidden_size, c.intermediate_size, r),
            output: Linear::new(p.sub("output").sub("dense"), c.intermediate_size, c.hidden_size, r),
            layer_norm: LayerNorm::new(p.sub("output").sub("LayerNorm"), c.hidden_size, c.layer_norm_eps),
            activation: Activation::parse(&c.hidden_act).expect("validated config"),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        want_probs: bool,
        queries: Option<&Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let (xs, probs) = self.attention.forward(xs, mask, train, want_probs, queries);
        let ff = self.activation.apply(&self.intermediate.forward(&xs));
        let ff = dropout(&self.output.forward(&ff), self.dropout, train);
        (self.layer_norm.forward(&(ff + xs)), probs)
    }

    /// The same layer, sharing its parameters: what a checkpointed forward keeps for backward.
    fn shallow_clone(&self) -> Self {
        Layer {
            attention: self.attention.shallow_clone(),
            intermediate: self.intermediate.shallow_clone(),
            output: self.output.shallow_clone(),
            layer_norm: self.layer_norm.shallow_clone(),
            ..*self
        }
    }
}

/// The encoder shared by every task: `bert.*` in Hugging Face checkpoints.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    pub config: BertConfig,
    /// Recompute each layer's activations in backward instead of keeping them (training only).
    pub gradient_checkpointing: bool,
}

impl Bert {
    /// `p` is the `bert` path. BertForMaskedLM has no pooler (`add_pooling_layer=False`).
    pub fn new(p: Path, config: &BertConfig, with_pooler: bool) -> Self {
        let enc = p.sub("encoder").sub("layer");
        Bert {
            embeddings: Embeddings::new(p.sub("embeddings"), config),
            layers: (0..config.num_hidden_layers).map(|i| Layer::new(enc.sub(i), config)).collect(),
            pooler: with_pooler.then(|| {
                let h = config.hidden_size;
                Linear::new(p.sub("pooler").sub("dense"), h, h, config.initializer_range)
            }),
            config: config.clone(),
            gradient_checkpointing: false,
        }
    }

    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput {
        self.encode(inputs, opts, None)
    }

    /// The last layer's output at `positions` only (`[batch, m]` positions of each sequence):
    /// `[batch, m, hidden]`. Masked-language modelling needs nothing else, and the last layer's
    /// feed-forward and attention output then run on ~15% of the positions.
    pub fn forward_at(&self, inputs: &Inputs, opts: ForwardOptions, positions: &Tensor) -> Tensor {
        let opts = ForwardOptions { output_hidden_states: false, output_attentions: false, ..opts };
        self.encode(inputs, opts, Some(positions)).last_hidden_state
    }

    fn encode(&self, inputs: &Inputs, opts: ForwardOptions, last_positions: Option<&Tensor>) -> EncoderOutput {
        let mut xs = self.embeddings.forward(inputs, opts.train);
        // Additive mask as in transformers: 0 for tokens, the dtype's minimum for padding. None
        // when nothing is padded: attention then skips the addition (and SDPA may use a fused
        // kernel that takes no mask).
        let mask = inputs.padded.then(|| {
            let keep = inputs.attention_mask.to_kind(Kind::Float);
            ((-keep + 1.0) * f32::MIN as f64).unsqueeze(1).unsqueeze(1)
        });
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        let recompute = self.gradient_checkpointing && xs.requires_grad() && !opts.output_attentions;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.output_hidden_states {
                hidden_states.push(xs.shallow_clone());
            }
            let queries = if i == last { last_positions } else { None };
            if recompute {
                let (layer, train) = (layer.shallow_clone(), opts.train);
                let (mask, queries) = (mask.as_ref().map(Tensor::shallow_clone), queries.map(Tensor::shallow_clone));
                xs = recomputed(&xs, move |x| layer.forward(x, mask.as_ref(), train, false, queries.as_ref()).0);
                continue;
            }
            let (out, probs) = layer.forward(&xs, mask.as_ref(), opts.train, opts.output_attentions, queries);
            xs = out;
            attentions.extend(probs);
        }
        if opts.output_hidden_states {
            hidden_states.push(xs.shallow_clone());
        }
        let pooled = match (&self.pooler, last_positions) {
            (Some(p), None) => Some(p.forward(&xs.select(1, 0)).tanh()),
            _ => None,
        };
        EncoderOutput { last_hidden_state: xs, hidden_states, attentions, pooled }
    }

    /// The word-embedding matrix, which the MLM decoder shares.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word
    }
}

/// `BertForSequenceClassification`: dropout and a linear layer on the pooled output.
pub struct SequenceClassifier {
    pub bert: Bert,
    classifier: Linear,
    dropout: f64,
}

impl SequenceClassifier {
    /// `root` is the VarStore root: creates `bert.*` and `classifier.*`.
    pub fn new(root: &Path, config: &BertConfig) -> Self {
        SequenceClassifier {
            bert: Bert::new(root.sub("bert"), config, true),
            classifier: Linear::new(
                root.sub("classifier"),
                config.hidden_size,
                config.num_labels(),
                config.initializer_range,
            ),
            dropout: config.classifier_dropout(),
        }
    }

    /// Logits `[batch, num_labels]` and the encoder output they came from.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> (Tensor, EncoderOutput) {
        let out = self.bert.forward(inputs, opts);
        let pooled = out.pooled.as_ref().expect("classifier's encoder has a pooler");
        (self.classifier.forward(&dropout(pooled, self.dropout, opts.train)), out)
    }

    /// Loss as transformers picks it: mean squared error for one label (regression), else
    /// cross-entropy over classes.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        if self.bert.config.num_labels() == 1 || self.bert.config.problem_type.as_deref() == Some("regression") {
            logits.squeeze_dim(-1).mse_loss(&labels.to_kind(logits.kind()), Reduction::Mean)
        } else {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE_INDEX, 0.0)
        }
    }
}

/// `cls.predictions`: dense + activation + LayerNorm, then a decoder tied to the word embeddings.
pub struct MaskedLmHead {
    dense: Linear,
    layer_norm: LayerNorm,
    bias: Tensor,
    activation: Activation,
}

impl MaskedLmHead {
    fn new(p: Path, c: &BertConfig) -> Self {
        let t = p.sub("transform");
        MaskedLmHead {
            dense: Linear::new(t.sub("dense"), c.hidden_size, c.hidden_size, c.initializer_range),
            layer_norm: LayerNorm::new(t.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps),
            bias: p.zeros("bias", &[c.vocab_size]),
            activation: Activation::parse(&c.hidden_act).expect("validated config"),
        }
    }

    fn forward(&self, hidden: &Tensor, word_embeddings: &Tensor) -> Tensor {
        let xs = self.layer_norm.forward(&self.activation.apply(&self.dense.forward(hidden)));
        xs.linear(word_embeddings, Some(&self.bias))
    }
}

/// `BertForMaskedLM`.
pub struct MaskedLm {
    pub bert: Bert,
    head: MaskedLmHead,
}

/// Where an MLM batch is scored, laid out for `Bert::forward_at`: the masked positions of each
/// sequence (`slots`, `[batch, m]`, m = the most masks in one sequence, shorter rows padded with
/// position 0), which of those slots are real (`take`, indices into the flattened `[batch * m]`,
/// in row-major order), and the original token ids there (`ids`).
pub struct MaskedTargets {
    pub slots: Tensor,
    pub take: Tensor,
    pub ids: Tensor,
}

impl MaskedTargets {
    /// From labels built on the host (`rows` sequences, row-major; `-100`: not scored), which is
    /// where the collator masks.
    pub fn from_label_slice(labels: &[i64], rows: usize) -> Self {
        let len = labels.len() / rows.max(1);
        let masked: Vec<Vec<(i64, i64)>> = labels
            .chunks(len.max(1))
            .map(|row| {
                row.iter().enumerate().filter(|&(_, &l)| l != IGNORE_INDEX).map(|(p, &l)| (p as i64, l)).collect()
            })
            .collect();
        // At least one slot, so that a batch without masks still has well-formed shapes.
        let m = masked.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut slots, mut take, mut ids) = (vec![0i64; rows * m], Vec::new(), Vec::new());
        for (r, row) in masked.iter().enumerate() {
            for (j, &(position, id)) in row.iter().enumerate() {
                slots[r * m + j] = position;
                take.push((r * m + j) as i64);
                ids.push(id);
            }
        }
        MaskedTargets {
            slots: Tensor::from_slice(&slots).view([rows as i64, m as i64]),
            take: Tensor::from_slice(&take),
            ids: Tensor::from_slice(&ids),
        }
    }

    /// From transformers-style labels `[batch, seq]`.
    pub fn from_labels(labels: &Tensor) -> Self {
        let rows = labels.size()[0] as usize;
        let flat = Vec::<i64>::try_from(labels.to_device(tch::Device::Cpu).to_kind(Kind::Int64).flatten(0, 1))
            .expect("int64 labels");
        Self::from_label_slice(&flat, rows)
    }

    pub fn to_device(&self, device: tch::Device) -> Self {
        MaskedTargets {
            slots: upload(&self.slots, device),
            take: upload(&self.take, device),
            ids: upload(&self.ids, device),
        }
    }
}

/// Result of the masked-only MLM forward.
pub struct MaskedLmOutput {
    /// Mean cross-entropy over the masked positions (NaN-free: 0 when nothing is masked).
    pub loss: Tensor,
    /// `[num_masked, vocab]` logits at the masked positions only, in row-major order.
    pub logits: Tensor,
    /// `[num_masked]` the original token ids there.
    pub targets: Tensor,
}

impl MaskedLm {
    pub fn new(root: &Path, config: &BertConfig) -> Self {
        MaskedLm {
            bert: Bert::new(root.sub("bert"), config, false),
            head: MaskedLmHead::new(root.sub("cls").sub("predictions"), config),
        }
    }

    /// Logits `[batch, seq, vocab]` at every position, as transformers computes them.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Tensor {
        let out = self.bert.forward(inputs, opts);
        self.head.forward(&out.last_hidden_state, self.bert.word_embeddings())
    }

    /// Runs the last layer and projects onto the vocabulary only at the masked positions. The
    /// loss equals transformers' (cross-entropy over all positions with ignore_index), at ~15%
    /// of the vocabulary projection's work and ~30% of the last layer's.
    pub fn forward_masked(&self, inputs: &Inputs, masked: &MaskedTargets, opts: ForwardOptions) -> MaskedLmOutput {
        let out = self.bert.forward_at(inputs, opts, &masked.slots);
        let hidden = out.flatten(0, 1).index_select(0, &masked.take);
        let targets = masked.ids.shallow_clone();
        let logits = self.head.forward(&hidden, self.bert.word_embeddings());
        let loss = if targets.numel() == 0 {
            logits.sum(Kind::Float) // zero, but still connected to the graph
        } else {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, IGNORE_INDEX, 0.0)
        };
        MaskedLmOutput { loss, logits, targets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_dropout_keeps_the_asked_fraction_and_follows_the_seed() {
        let x = Tensor::ones([64, 12, 128, 128], (Kind::Float, tch::Device::Cpu));
        tch::manual_seed(3);
        let a = dropout(&x, 0.1, true);
        tch::manual_seed(3);
        let b = dropout(&x, 0.1, true);
        let c = dropout(&x, 0.1, true);
        assert!(a.equal(&b), "same seed, same mask");
        assert!(!b.equal(&c), "the next call draws a new mask");
        // Kept elements are scaled by 1 / (1 - p), as nn.Dropout does.
        let kept = a.ne(0.0);
        assert!(a.masked_select(&kept).allclose(&Tensor::from(1.0f32 / 0.9), 1e-6, 1e-6, false));
        // 12.6M Bernoulli(0.9) draws: the kept fraction is within 5 standard deviations of 0.9.
        let n = x.numel() as f64;
        let fraction = kept.sum(Kind::Float).double_value(&[]) / n;
        assert!((fraction - 0.9).abs() < 5.0 * (0.9 * 0.1 / n).sqrt(), "kept fraction {fraction}");
        // Neighbouring elements are independent: both kept as often as 0.9^2.
        let flat = kept.flatten(0, -1).to_kind(Kind::Float);
        let pairs =
            (flat.narrow(0, 0, x.numel() as i64 - 1) * flat.narrow(0, 1, x.numel() as i64 - 1)).mean(Kind::Float);
        assert!((pairs.double_value(&[]) - 0.81).abs() < 1e-3);
        // Gradient: the same mask, the same scale.
        let w = x.copy().set_requires_grad(true);
        tch::manual_seed(3);
        dropout(&w, 0.1, true).sum(Kind::Float).backward();
        assert!(w.grad().equal(&a));
    }
}
