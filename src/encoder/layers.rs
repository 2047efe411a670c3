//! The building blocks every family's modules and every task head are made of, with
//! transformers' initialisation: `nn.Linear`, `nn.LayerNorm`, `nn.Dropout`, `ACT2FN`.

use std::sync::Arc;

use anyhow::{Result, bail};
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::Probs;
use super::int8::Int8Linear;
use crate::ffi;

/// The VarStore path of a dotted transformers name (`cls.predictions.transform.dense`): tch
/// names each level separately.
pub(crate) fn path_at<'a>(root: &Path<'a>, dotted: &str) -> Path<'a> {
    let mut parts = dotted.split('.');
    let first = root.sub(parts.next().expect("split yields at least one part"));
    parts.fold(first, |p, part| p.sub(part))
}

/// Dropout as `nn.Dropout`, keeping a one-byte mask for backward as libtorch's `native_dropout`
/// does (`Tensor::dropout` keeps a float one on the CPU, 4x the memory). On a GPU that is
/// `native_dropout` itself; on the CPU the same arithmetic, `input.mul(mask).mul_(scale)`, with
/// the mask drawn in parallel (`csrc/extras.cpp`).
pub fn dropout(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !(train && p > 0.0) {
        return xs.shallow_clone();
    }
    if xs.device() != tch::Device::Cpu {
        return xs.native_dropout(p, true).0;
    }
    let keep = 1.0 - p;
    let mut out = xs * ffi::dropout_mask(xs, keep);
    let _ = out.g_mul_scalar_(if keep == 0.0 { 0.0 } else { 1.0 / keep });
    out
}

/// Scaled dot-product attention written out, as transformers' eager attention computes it:
/// `[batch, heads, m, head_dim]` queries over keys and values, an additive mask broadcast onto
/// the scores (`[batch or 1, 1, 1 or m, seq]`), `dropout_p` 0 outside training. Returns the
/// context and the probabilities (in the queries' precision) if `probs` says to return them.
/// For when the probabilities are wanted, and for dropout on the CPU (why: BERT's
/// `SelfAttention`). The scores are scaled and masked in place and, without autograd,
/// overwritten by the softmax: with MiniLM's 32 x 12 x 256 x 256 scores on 2 cores, 0.07 s a
/// layer against 0.11 s for the same ops each making a new tensor (a torch microbenchmark).
pub(crate) fn explicit_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
    dropout_p: f64,
    probs: Probs,
) -> (Tensor, Option<Tensor>) {
    let Probs::Sunk(sink, layer) = probs else {
        let (context, p) = attend_written_out(q, k, v, scale, mask, dropout_p);
        return (context, probs.deliver(p));
    };
    // For a sink, a few examples at a time, each chunk's probabilities handed over and
    // dropped: no [batch, heads, seq, seq] tensor is written to memory and read back. The
    // chunks are shared out among libtorch's threads, each chunk's ops on its thread alone
    // rather than each small op split over every thread: compare-models' two passes over a
    // full 32 x 256 MiniLM batch, 3.00 / 2.74 s -> 2.84 / 2.59 s (medians of 15 interleaved
    // rounds, twice), the report identical to the bit.
    let (batch, heads, m, _) = q.size4().expect("[batch, heads, m, head_dim]");
    let per_example = heads * m * k.size()[2] * 4;
    let chunk = (SUNK_CHUNK_BYTES / per_example).clamp(1, batch);
    let context = Tensor::empty([batch, heads, m, v.size()[3]], (q.kind(), q.device()));
    let shared = Shared { q, k, v, mask, context: &context };
    ffi::parallel_for(((batch + chunk - 1) / chunk) as usize, 1, |begin, end| {
        let Shared { q, k, v, mask, context } = *shared.get();
        for first in (begin as i64 * chunk..(end as i64 * chunk).min(batch)).step_by(chunk as usize) {
            let n = chunk.min(batch - first);
            let rows = |t: &Tensor| if t.size()[0] == batch { t.narrow(0, first, n) } else { t.shallow_clone() };
            let mask = mask.map(rows);
            let (c, probs) = attend_written_out(&rows(q), &rows(k), &rows(v), scale, mask.as_ref(), dropout_p);
            sink.take(layer, first, &probs);
            context.narrow(0, first, n).copy_(&c);
        }
    });
    (context, None)
}

/// The tensors of a sunk attention, read by several of libtorch's threads at once; `context`
/// written by each at its own examples' rows.
#[derive(Clone, Copy)]
struct Shared<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    mask: Option<&'a Tensor>,
    context: &'a Tensor,
}
// SAFETY: tch's `Tensor` is not `Sync` only for want of saying so: libtorch's tensors may be
// read from any thread, and the only write here is each thread's own rows of `context`.
unsafe impl Sync for Shared<'_> {}
impl<'a> Shared<'a> {
    /// The tensors (a method, so that a closure borrows the whole `Shared`, not its fields).
    fn get(&self) -> &Shared<'a> {
        self
    }
}

/// The scores of this many bytes at most are made at a time for a sink: a chunk's scores,
/// probabilities and the sink's reduction then stay in cache (with MiniLM's 12 heads and 256
/// tokens, one example is 3 MiB).
const SUNK_CHUNK_BYTES: i64 = 4 << 20;

/// The context and the probabilities, every step its own op.
fn attend_written_out(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
    dropout_p: f64,
) -> (Tensor, Tensor) {
    let mut scores = q.matmul(&k.transpose(-1, -2));
    let _ = scores.g_mul_scalar_(scale);
    if let Some(m) = mask {
        scores += m;
    }
    let probs = attention_softmax(scores).to_kind(q.kind());
    (dropout(&probs, dropout_p, dropout_p > 0.0).matmul(v), probs)
}

/// Attention probabilities, softmax over the keys in float32, as transformers computes them.
/// Without autograd a float32 `scores` is overwritten in place (one `[batch, heads, seq, seq]`
/// tensor fewer to allocate and fault in).
pub(crate) fn attention_softmax(scores: Tensor) -> Tensor {
    if scores.kind() == Kind::Float && !scores.requires_grad() {
        scores.internal_softmax_out(&scores, -1, false)
    } else {
        scores.softmax(-1, Kind::Float)
    }
}

/// `nn.Linear`, initialised as transformers' `_init_weights`: normal(0, initializer_range), zero
/// bias. ModernBERT's layers have no bias (`bias: None`). A layer given an int8 form
/// (`set_int8`) runs it instead of the float weight (`encoder::int8`).
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    int8: Option<Arc<Int8Linear>>,
}

impl Linear {
    pub(crate) fn new(p: Path, in_dim: i64, out_dim: i64, init_range: f64) -> Self {
        let weight = p.var("weight", &[out_dim, in_dim], Init::Randn { mean: 0., stdev: init_range });
        Linear { weight, bias: Some(p.zeros("bias", &[out_dim])), int8: None }
    }

    /// A layer whose weight starts as `init` (weights drawn as ModernBERT draws them:
    /// `truncated_normal`), with a zero bias or none.
    pub(crate) fn with_init(p: Path, in_dim: i64, out_dim: i64, init: Tensor, bias: bool) -> Self {
        assert_eq!(init.size(), [out_dim, in_dim], "initial weight shape");
        Linear { weight: p.var_copy("weight", &init), bias: bias.then(|| p.zeros("bias", &[out_dim])), int8: None }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        match &self.int8 {
            Some(int8) => int8.forward(xs, || xs.linear(&self.weight, self.bias.as_ref())),
            None => xs.linear(&self.weight, self.bias.as_ref()),
        }
    }

    /// The output columns `from..from + n` alone (rows of the weight): with a float weight
    /// only those are computed; an int8 layer computes all and keeps those.
    pub fn forward_rows(&self, xs: &Tensor, from: i64, n: i64) -> Tensor {
        if self.int8.is_some() {
            return self.forward(xs).narrow(-1, from, n);
        }
        xs.linear(&self.weight.narrow(0, from, n), self.bias.as_ref().map(|b| b.narrow(0, from, n)).as_ref())
    }

    /// Runs the int8 form from now on (None: the float weight again).
    pub fn set_int8(&mut self, int8: Option<Arc<Int8Linear>>) {
        self.int8 = int8;
    }

    pub fn int8(&self) -> Option<&Int8Linear> {
        self.int8.as_deref()
    }

    pub(crate) fn shallow_clone(&self) -> Self {
        let bias = self.bias.as_ref().map(Tensor::shallow_clone);
        Linear { weight: self.weight.shallow_clone(), bias, int8: self.int8.clone() }
    }
}

/// Layers that read the same input (a self-attention's query, key and value) as one matrix
/// product, their weights concatenated, output `[..., sum of their outputs]`. Int8 layers as one
/// too (`Int8Linear::fused`); a mix of int8 and float ones (the gate kept some in float32) one
/// after another.
pub(crate) fn fused(layers: &[&Linear], xs: &Tensor) -> Tensor {
    if layers.iter().any(|l| l.int8.is_some()) {
        let int8: Option<Vec<&Int8Linear>> = layers.iter().map(|l| l.int8()).collect();
        if let Some((first, rest)) = int8.as_ref().and_then(|l| l.split_first())
            && let Some(out) = first.fused(rest, xs)
        {
            return out;
        }
        return Tensor::cat(&layers.iter().map(|l| l.forward(xs)).collect::<Vec<_>>(), -1);
    }
    let weight = Tensor::cat(&layers.iter().map(|l| &l.weight).collect::<Vec<_>>(), 0);
    let biases: Option<Vec<&Tensor>> = layers.iter().map(|l| l.bias.as_ref()).collect();
    xs.linear(&weight, biases.map(|b| Tensor::cat(&b, 0)).as_ref())
}

/// `[rows, cols]` drawn from normal(0, std) truncated to ±`cutoff` std, as `nn.init.trunc_normal_`
/// draws it: a uniform draw mapped through the normal's inverse CDF.
pub(crate) fn truncated_normal(rows: i64, cols: i64, std: f64, cutoff: f64) -> Tensor {
    // The standard normal's CDF, with libtorch's erf.
    let cdf = |x: f64| (1.0 + Tensor::from(x / std::f64::consts::SQRT_2).erf().double_value(&[])) / 2.0;
    let (low, high) = (cdf(-cutoff), cdf(cutoff));
    let mut t = Tensor::empty([rows, cols], (tch::Kind::Float, tch::Device::Cpu));
    let _ = t.uniform_(2.0 * low - 1.0, 2.0 * high - 1.0);
    let _ = t.erfinv_();
    let _ = t.g_mul_scalar_(std * std::f64::consts::SQRT_2);
    t.clamp(-cutoff * std, cutoff * std)
}

/// `nn.LayerNorm` over the last dimension: weight 1, bias 0 (none where the family's norms
/// have none: ModernBERT's `norm_bias = false`).
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: Path, dim: i64, eps: f64) -> Self {
        Self::with_bias(p, dim, eps, true)
    }

    pub fn with_bias(p: Path, dim: i64, eps: f64, bias: bool) -> Self {
        LayerNorm { weight: p.ones("weight", &[dim]), bias: bias.then(|| p.zeros("bias", &[dim])), eps }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let dim = *xs.size().last().expect("LayerNorm input has a feature dim");
        xs.layer_norm([dim], Some(&self.weight), self.bias.as_ref(), self.eps, true)
    }

    pub fn shallow_clone(&self) -> Self {
        LayerNorm {
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            eps: self.eps,
        }
    }
}

/// The activations transformers' `ACT2FN` maps BERT's `hidden_act` names to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Gelu,
    GeluTanh,
    Relu,
    Silu,
    /// The classification heads of RoBERTa and its kin; DeBERTa's `conv_act` by default.
    Tanh,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            other => bail!("hidden_act {other:?} is not supported"),
        })
    }

    pub fn apply(self, xs: &tch::Tensor) -> tch::Tensor {
        match self {
            Activation::Gelu => xs.gelu("none"),
            Activation::GeluTanh => xs.gelu("tanh"),
            Activation::Relu => xs.relu(),
            Activation::Silu => xs.silu(),
            Activation::Tanh => xs.tanh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::AttentionSink;
    use std::sync::Mutex;
    use tch::Kind;

    /// Keeps each chunk it is handed, with where it starts.
    struct Chunks(Mutex<Vec<(usize, i64, Tensor)>>);

    impl AttentionSink for Chunks {
        fn take(&self, layer: usize, first: i64, probs: &Tensor) {
            self.0.lock().unwrap().push((layer, first, probs.copy()));
        }
    }

    #[test]
    fn sunk_attention_hands_over_every_example_in_chunks_and_attends_as_written_out() {
        // 4 heads x 512 x 512 float scores are 4 MiB an example: one example a chunk.
        let opts = (Kind::Float, tch::Device::Cpu);
        let (q, k, v) = (
            Tensor::randn([3, 4, 512, 8], opts),
            Tensor::randn([3, 4, 512, 8], opts),
            Tensor::randn([3, 4, 512, 8], opts),
        );
        let mask =
            Tensor::zeros([3, 1, 1, 512], opts).index_fill(3, &Tensor::from_slice(&[500i64, 511]), f32::MIN as f64);
        let (want, probs) = explicit_attention(&q, &k, &v, 0.3, Some(&mask), 0.0, Probs::Returned);
        let sink = Chunks(Mutex::new(Vec::new()));
        let (got, none) = explicit_attention(&q, &k, &v, 0.3, Some(&mask), 0.0, Probs::Sunk(&sink, 5));
        assert!(none.is_none(), "sunk probabilities are not returned");
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        let mut chunks = sink.0.into_inner().unwrap();
        // Threads hand their chunks over in whatever order they come.
        chunks.sort_by_key(|(_, first, _)| *first);
        assert_eq!(
            chunks.iter().map(|(l, f, p)| (*l, *f, p.size()[0])).collect::<Vec<_>>(),
            [(5, 0, 1), (5, 1, 1), (5, 2, 1)]
        );
        let whole = Tensor::cat(&chunks.iter().map(|(_, _, p)| p).collect::<Vec<_>>(), 0);
        assert!((whole - probs.unwrap()).abs().max().double_value(&[]) < 1e-7);
    }
}
