//! ModernBERT (Warner et al. 2024), read top to bottom as transformers 5.24's
//! `modeling_modernbert.py` computes it on padded batches: token embeddings and a layer norm (no
//! positions there), then pre-norm layers whose attention rotates queries and keys (RoPE, one
//! theta for global layers, another for local ones) and is global every
//! `global_attn_every_n_layers` layers and a sliding window of `local_attention` tokens (±half)
//! otherwise, a GeGLU feed-forward, no biases unless the config asks, and a final layer norm.
//! A padded batch runs packed (`encoder::packing`), as transformers' flash-attention path
//! unpads it: RoPE at each token's own position, each sequence attending its own keys.
//! Weights live under transformers' names (`model.layers.0.attn.Wqkv.weight`, `head.dense`,
//! `decoder.bias`, `classifier`); the heads are `crate::task`'s, in `PredictionHead` shape.

mod config;
mod names;
mod window;

use anyhow::Result;
use tch::nn::Path;
use tch::{Kind, Tensor};

use self::config::ModernBertConfig;
use self::window::Windows;
use super::layers::{Activation, LayerNorm, Linear, dropout, explicit_attention, truncated_normal};
use super::packing::{Packing, Unpadding, packed, query_rows, unpacked};
use super::recompute::recomputed;
use super::{ClassifierKind, Encoder, EncoderOutput, Family, ForwardOptions, HeadLayout, Inputs, Probs};
use crate::encoder::ModelConfig;

/// ModernBERT in the registry (`encoder::FAMILIES`).
pub const FAMILY: Family = Family {
    model_type: "modernbert",
    selects: None,
    class_stem: "ModernBert",
    dropout_keys: &["embedding_dropout", "mlp_dropout", "attention_dropout"],
    dims: |config| Ok(ModernBertConfig::from_model_config(config)?.dims()),
    build,
    canonical_name: names::canonical,
    heads: HeadLayout {
        classifier: "classifier",
        classifier_kind: ClassifierKind::PredictionHead { head: "head" },
        multiple_choice: ClassifierKind::PredictionHead { head: "head" },
        mlm_dense: "head.dense",
        mlm_layer_norm: "head.norm",
        mlm_bias: "decoder.bias",
        mlm_activation: None,
        qa_outputs: "classifier",
        prefixes: &["head.", "decoder.", "classifier."],
    },
};

fn build(root: &Path, config: &ModelConfig, _with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let config = ModernBertConfig::from_model_config(config)?;
    Ok(Box::new(ModernBert::new(&root.sub("model"), &config)))
}

/// A weight drawn as ModernBERT's `_init_weights` draws it (a truncated normal), under `p`.
fn linear(p: Path, (in_dim, out_dim): (i64, i64), std: f64, c: &ModernBertConfig, bias: bool) -> Linear {
    Linear::with_init(p, in_dim, out_dim, truncated_normal(out_dim, in_dim, std, c.cutoff()), bias)
}

/// Rotary position embeddings of one kind of layer: `cos` and `sin`, `[seq, head_dim]`.
struct Rotation {
    cos: Tensor,
    /// The sine with its first half negated: rotating a vector is then `x cos + roll(x) sin`,
    /// `roll` swapping its halves, which is transformers' `x cos + rotate_half(x) sin` in one op
    /// fewer (no negation pass).
    sin: Tensor,
}

impl Rotation {
    /// transformers' default RoPE: `inv_freq = 1 / theta^(2i / head_dim)`, angles position x
    /// inv_freq, repeated for both halves.
    fn new(theta: f64, head_dim: i64, seq: i64, device: tch::Device) -> Self {
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, device)).to_kind(Kind::Float);
        let inv_freq = (Tensor::from(theta).to_device(device).to_kind(Kind::Float).pow(&(exponents / head_dim as f64)))
            .reciprocal();
        let positions = Tensor::arange(seq, (Kind::Float, device));
        let freqs = positions.unsqueeze(-1) * inv_freq.unsqueeze(0);
        let sin = freqs.sin();
        Rotation { cos: Tensor::cat(&[&freqs, &freqs], -1).cos(), sin: Tensor::cat(&[-&sin, sin], -1) }
    }

    /// Rotates `[..., seq, head_dim]` queries or keys (queries and keys stacked in front, in one
    /// pass), in fp32 as transformers does.
    fn apply(&self, xs: &Tensor) -> Tensor {
        let x = xs.to_kind(Kind::Float);
        let half = x.size().last().copied().expect("head_dim") / 2;
        (&x * &self.cos).addcmul(&x.roll([half], [-1]), &self.sin).to_kind(xs.kind())
    }

    /// Rotates `[batch, heads, m, head_dim]` queries that sit at `positions` (`[batch, m]`).
    fn apply_at(&self, xs: &Tensor, positions: &Tensor) -> Tensor {
        let at =
            |t: &Tensor| t.index_select(0, &positions.flatten(0, -1)).view([positions.size()[0], 1, -1, t.size()[1]]);
        Rotation { cos: at(&self.cos), sin: at(&self.sin) }.apply(xs)
    }

    /// The rotation of packed rows at `positions` (`[rows]`), for `[rows, n, heads, head_dim]`.
    fn packed(&self, positions: &Tensor) -> Self {
        let at = |t: &Tensor| t.index_select(0, positions).unsqueeze(1).unsqueeze(1);
        Rotation { cos: at(&self.cos), sin: at(&self.sin) }
    }

    /// Some of a packed rotation's rows (`[m]`).
    fn rows(&self, rows: &Tensor) -> Self {
        Rotation { cos: self.cos.index_select(0, rows), sin: self.sin.index_select(0, rows) }
    }

    fn shallow_clone(&self) -> Self {
        Rotation { cos: self.cos.shallow_clone(), sin: self.sin.shallow_clone() }
    }
}

/// Which keys each query may attend, as transformers hands it to each attention path: a boolean
/// mask to SDPA, an additive one (0, or the float minimum) to the explicit softmax. They differ
/// only for a padding query that a local window cuts off from every real key: SDPA gives it
/// zeros, the explicit path the mean of all values (nothing downstream reads either).
struct Mask {
    allowed: Tensor,
    additive: Tensor,
}

impl Mask {
    fn new(allowed: Tensor) -> Self {
        let device = allowed.device();
        let min = Tensor::from(f32::MIN).to_device(device);
        let additive = Tensor::zeros([1], (Kind::Float, device)).where_self(&allowed, &min);
        Mask { allowed, additive }
    }

    fn shallow_clone(&self) -> Self {
        Mask { allowed: self.allowed.shallow_clone(), additive: self.additive.shallow_clone() }
    }
}

/// What a layer reads besides its input: its attention mask (None: every key), its rotation,
/// and for a local layer on a long sequence the windows it attends by blocks (its full mask is
/// then built only where attention probabilities are asked for). A packed batch's layers
/// (`encoder::packing`) have their rotation at each packed row, and a local layer one
/// `Reach` per sequence.
struct Context {
    mask: Option<Mask>,
    rotation: Rotation,
    windows: Option<Windows>,
    packed: Option<(Packing, Vec<Reach>)>,
}

impl Context {
    fn shallow_clone(&self) -> Self {
        Context {
            mask: self.mask.as_ref().map(Mask::shallow_clone),
            rotation: self.rotation.shallow_clone(),
            windows: self.windows.as_ref().map(Windows::shallow_clone),
            packed: self
                .packed
                .as_ref()
                .map(|(p, reach)| (p.shallow_clone(), reach.iter().map(Reach::shallow_clone).collect())),
        }
    }
}

/// Which keys a layer's queries attend.
enum Reach {
    /// Every key (of the sequence, when packed).
    All,
    /// Those the mask allows (padding; beyond a local layer's window).
    Near(Mask),
    /// Those within a local layer's window, by blocks (a long sequence).
    Blocks(Windows),
}

impl Reach {
    fn shallow_clone(&self) -> Self {
        match self {
            Reach::All => Reach::All,
            Reach::Near(m) => Reach::Near(m.shallow_clone()),
            Reach::Blocks(w) => Reach::Blocks(w.shallow_clone()),
        }
    }
}

struct Layer {
    /// None in layer 0, whose input is the embeddings' already normalised output.
    attn_norm: Option<LayerNorm>,
    wqkv: Linear,
    wo: Linear,
    mlp_norm: LayerNorm,
    wi: Linear,
    mlp_wo: Linear,
    activation: Activation,
    heads: i64,
    head_dim: i64,
    /// A sliding-window (local) layer, else global.
    local: bool,
    attention_dropout: f64,
    mlp_dropout: f64,
}

impl Layer {
    fn new(p: Path, c: &ModernBertConfig, index: i64) -> Self {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let (std_in, std_out) = (c.initializer_range, c.initializer_range / (2.0 * c.num_hidden_layers as f64).sqrt());
        let norm = |name: &str| LayerNorm::with_bias(p.sub(name), h, c.norm_eps, c.norm_bias);
        Layer {
            attn_norm: (index > 0).then(|| norm("attn_norm")),
            wqkv: linear(p.sub("attn").sub("Wqkv"), (h, 3 * h), std_in, c, c.attention_bias),
            wo: linear(p.sub("attn").sub("Wo"), (h, h), std_out, c, c.attention_bias),
            mlp_norm: norm("mlp_norm"),
            wi: linear(p.sub("mlp").sub("Wi"), (h, 2 * i), std_in, c, c.mlp_bias),
            mlp_wo: linear(p.sub("mlp").sub("Wo"), (i, h), std_out, c, c.mlp_bias),
            activation: Activation::parse(&c.hidden_activation).expect("validated config"),
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            local: c.is_local(index),
            attention_dropout: c.attention_dropout,
            mlp_dropout: c.mlp_dropout,
        }
    }

    /// The layer's output and, if asked, its attention probabilities `[batch, heads, seq, seq]`.
    fn forward(&self, xs: &Tensor, cx: &Context, train: bool, probs: Probs) -> (Tensor, Option<Tensor>) {
        let normed = self.attn_norm.as_ref().map_or_else(|| xs.shallow_clone(), |n| n.forward(xs));
        let (attended, probs) = self.attention(&normed, cx, train, probs);
        (self.feed_forward(&(xs + attended), train), probs)
    }

    /// The pre-norm GeGLU feed-forward and its residual.
    fn feed_forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let parts = self.wi.forward(&self.mlp_norm.forward(xs)).chunk(2, -1);
        let gated = self.activation.apply(&parts[0]) * &parts[1];
        xs + self.mlp_wo.forward(&dropout(&gated, self.mlp_dropout, train))
    }

    /// The layer's output at `positions` alone (`[batch, m]`; packed: `[batch * m]` rows), every
    /// key still attended: what the last layer computes when only those positions are read. A
    /// global layer's only.
    fn forward_at(&self, xs: &Tensor, cx: &Context, train: bool, positions: &Tensor) -> Tensor {
        let normed = self.attn_norm.as_ref().map_or_else(|| xs.shallow_clone(), |n| n.forward(xs));
        let h = *xs.size().last().expect("a hidden dimension");
        let project = |t: &Tensor, from: i64, n: i64| self.wqkv.forward_rows(t, from * h, n * h);
        if let Some((packing, _)) = &cx.packed {
            let rows = |t: &Tensor| t.index_select(0, positions);
            let q = project(&rows(&normed), 0, 1).view([-1, 1, self.heads, self.head_dim]);
            let q = cx.rotation.rows(positions).apply(&q).select(1, 0);
            let kv = project(&normed, 1, 2).view([-1, 2, self.heads, self.head_dim]);
            let k = cx.rotation.apply(&kv.narrow(1, 0, 1)).select(1, 0);
            let per_sequence = positions.size()[0] / packing.sequences();
            let attended = self.attend_packed(&q, &k, &kv.select(1, 1), cx, Some(per_sequence), train);
            return self.feed_forward(&(rows(xs) + attended), train);
        }
        let (b, l, _) = xs.size3().expect("[batch, seq, hidden]");
        let rows = |t: &Tensor| t.gather(1, &positions.unsqueeze(-1).expand([-1, -1, h], false), false);
        let split = |t: &Tensor| t.view([b, -1, self.heads, self.head_dim]).transpose(1, 2);
        let q = project(&rows(&normed), 0, 1);
        let kv = project(&normed, 1, 2).view([b, l, 2, self.heads, self.head_dim]).permute([2, 0, 3, 1, 4]);
        let q = cx.rotation.apply_at(&split(&q), positions);
        let (k, v) = (cx.rotation.apply(&kv.get(0)), kv.get(1));
        let (attended, _) = self.attend(&q, &k, &v, cx, train, Probs::Unwanted);
        self.feed_forward(&(rows(xs) + attended), train)
    }

    fn attention(&self, xs: &Tensor, cx: &Context, train: bool, probs: Probs) -> (Tensor, Option<Tensor>) {
        if cx.packed.is_some() {
            let qkv = self.wqkv.forward(xs).view([-1, 3, self.heads, self.head_dim]);
            let qk = cx.rotation.apply(&qkv.narrow(1, 0, 2));
            return (self.attend_packed(&qk.select(1, 0), &qk.select(1, 1), &qkv.select(1, 2), cx, None, train), None);
        }
        let (b, l, _) = xs.size3().expect("[batch, seq, hidden]");
        let qkv = self.wqkv.forward(xs).view([b, l, 3, self.heads, self.head_dim]).permute([2, 0, 3, 1, 4]);
        let qk = cx.rotation.apply(&qkv.narrow(0, 0, 2));
        self.attend(&qk.get(0), &qk.get(1), &qkv.get(2), cx, train, probs)
    }

    /// Attention of rotated queries (`[batch, heads, m, head_dim]`) over every key, projected
    /// by `Wo`: `[batch, m, hidden]`, and the probabilities if asked.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cx: &Context,
        train: bool,
        probs: Probs,
    ) -> (Tensor, Option<Tensor>) {
        let (b, m) = (q.size()[0], q.size()[2]);
        let reach = match (&cx.windows, &cx.mask) {
            (Some(windows), _) if !probs.wanted() => Reach::Blocks(windows.shallow_clone()),
            (_, Some(mask)) => Reach::Near(mask.shallow_clone()),
            _ => Reach::All,
        };
        let (context, probs) = self.context(q, k, v, &reach, train, probs);
        let context = context.transpose(1, 2).reshape([b, m, -1]);
        (dropout(&self.wo.forward(&context), self.attention_dropout, train), probs)
    }

    /// The same for a packed batch: queries `[rows, heads, head_dim]` (every token, or
    /// `per_sequence` of each sequence), keys and values `[tokens, heads, head_dim]`, each
    /// sequence attending its own keys as its `Reach` says: `[rows, hidden]`.
    fn attend_packed(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cx: &Context,
        per_sequence: Option<i64>,
        train: bool,
    ) -> Tensor {
        let (packing, reach) = cx.packed.as_ref().expect("a packed context");
        let context = packing.attend(q, k, v, per_sequence, |i, q, k, v| {
            self.context(q, k, v, reach.get(i).unwrap_or(&Reach::All), train, Probs::Unwanted).0
        });
        dropout(&self.wo.forward(&context), self.attention_dropout, train)
    }

    /// The attention context (`[batch, heads, m, head_dim]`) over the keys `reach` allows, and
    /// the probabilities if asked (never by blocks).
    fn context(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        reach: &Reach,
        train: bool,
        probs: Probs,
    ) -> (Tensor, Option<Tensor>) {
        let scale = (self.head_dim as f64).powf(-0.5);
        let dropout_p = if train { self.attention_dropout } else { 0.0 };
        let mask = match reach {
            Reach::Blocks(windows) => return (windows.attend(q, k, v, scale, dropout_p, train), None),
            Reach::Near(mask) => Some(mask),
            Reach::All => None,
        };
        if probs.wanted() || (dropout_p > 0.0 && q.device() == tch::Device::Cpu) {
            explicit_attention(q, k, v, scale, mask.map(|m| &m.additive), dropout_p, probs)
        } else {
            let mask = mask.map(|m| &m.allowed);
            (Tensor::scaled_dot_product_attention(q, k, v, mask, dropout_p, false, scale, false), None)
        }
    }

    /// The same layer, sharing its parameters: what a checkpointed forward keeps for backward.
    fn shallow_clone(&self) -> Self {
        Layer {
            attn_norm: self.attn_norm.as_ref().map(LayerNorm::shallow_clone),
            wqkv: self.wqkv.shallow_clone(),
            wo: self.wo.shallow_clone(),
            mlp_norm: self.mlp_norm.shallow_clone(),
            wi: self.wi.shallow_clone(),
            mlp_wo: self.mlp_wo.shallow_clone(),
            ..*self
        }
    }
}

/// The encoder shared by every task: `model.*` in Hugging Face checkpoints.
pub(crate) struct ModernBert {
    tok_embeddings: Tensor,
    embedding_norm: LayerNorm,
    embedding_dropout: f64,
    pad_token_id: i64,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    head_dim: i64,
    /// RoPE theta of the global and of the local layers.
    global_theta: f64,
    local_theta: f64,
    /// A local layer's query sees keys at most this many positions away (`local_attention / 2`).
    window: i64,
    gradient_checkpointing: bool,
    unpadding: Unpadding,
}

impl ModernBert {
    fn new(p: &Path, c: &ModernBertConfig) -> Self {
        let embeddings = p.sub("embeddings");
        let init = truncated_normal(c.vocab_size, c.hidden_size, c.initializer_range, c.cutoff());
        // nn.Embedding(padding_idx=pad) starts the padding row at zero.
        if (0..c.vocab_size).contains(&c.pad_token_id) {
            let _ = init.get(c.pad_token_id).zero_();
        }
        let layers = p.sub("layers");
        ModernBert {
            tok_embeddings: embeddings.sub("tok_embeddings").var_copy("weight", &init),
            embedding_norm: LayerNorm::with_bias(embeddings.sub("norm"), c.hidden_size, c.norm_eps, c.norm_bias),
            embedding_dropout: c.embedding_dropout,
            pad_token_id: c.pad_token_id,
            layers: (0..c.num_hidden_layers).map(|i| Layer::new(layers.sub(i), c, i)).collect(),
            final_norm: LayerNorm::with_bias(p.sub("final_norm"), c.hidden_size, c.norm_eps, c.norm_bias),
            head_dim: c.head_dim(),
            global_theta: c.global_theta(),
            local_theta: c.local_theta(),
            window: c.local_attention / 2,
            gradient_checkpointing: false,
            unpadding: Unpadding::default(),
        }
    }

    /// The masks of the global layers (padding only, `[batch, 1, 1, seq]`; None without
    /// padding) and of the local ones (padding and distance, `[batch, 1, seq, seq]`; the
    /// global one when every distance is within the window; None when `full_local` is false,
    /// the local layers then attending by blocks). One mask per pair, as
    /// transformers builds it: two additive minimums would overflow to -inf.
    fn masks(&self, inputs: &Inputs, seq: i64, full_local: bool) -> (Option<Mask>, Option<Mask>) {
        let keys = inputs.attention_mask.ne(0).unsqueeze(1).unsqueeze(1);
        if seq - 1 <= self.window {
            let global = inputs.padded.then(|| Mask::new(keys));
            let local = global.as_ref().map(Mask::shallow_clone);
            return (global, local);
        }
        let local = full_local.then(|| {
            let positions = Tensor::arange(seq, (Kind::Int64, keys.device()));
            let near = (positions.unsqueeze(1) - positions.unsqueeze(0)).abs().le(self.window);
            Mask::new(near.logical_and(&keys))
        });
        (inputs.padded.then(|| Mask::new(keys)), local)
    }

    /// Local layers attend by blocks where that saves work: a query's three blocks of keys
    /// (3 x window/2) must be well under the sequence.
    fn use_windows(&self, seq: i64) -> bool {
        seq > 6 * self.window
    }

    /// Every layer; with `last_at`, the last one (a global layer) only at those positions.
    fn encode(&self, inputs: &Inputs, opts: ForwardOptions, last_at: Option<&Tensor>) -> EncoderOutput {
        let packing = Packing::for_inputs(inputs, &opts, self.unpadding);
        let words = match &inputs.inputs_embeds {
            Some(embeds) => embeds.shallow_clone(),
            None => {
                let ids = packed(packing.as_ref(), &inputs.input_ids);
                Tensor::embedding(&self.tok_embeddings, &ids, self.pad_token_id, false, false)
            }
        };
        let mut xs = dropout(&self.embedding_norm.forward(&words), self.embedding_dropout, opts.train);
        let (global, local) = self.contexts(inputs, &opts, packing.as_ref());
        let last_at = last_at.map(|p| query_rows(packing.as_ref(), p));
        let (mut hidden_states, mut attentions) = (Vec::new(), Vec::new());
        let recompute = self.gradient_checkpointing && xs.requires_grad() && !opts.wants_probs();
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.output_hidden_states {
                hidden_states.push(unpacked(packing.as_ref(), &xs, None));
            }
            let cx = if layer.local { &local } else { &global };
            if let Some(positions) = last_at.as_ref().filter(|_| i + 1 == self.layers.len()) {
                xs = layer.forward_at(&xs, cx, opts.train, positions);
                break;
            }
            if recompute {
                let (layer, cx, train) = (layer.shallow_clone(), cx.shallow_clone(), opts.train);
                xs = recomputed(&xs, move |x| layer.forward(x, &cx, train, Probs::Unwanted).0);
                continue;
            }
            let (out, probs) = layer.forward(&xs, cx, opts.train, opts.probs(i));
            xs = out;
            attentions.extend(probs);
        }
        let xs = self.final_norm.forward(&xs);
        let xs = unpacked(packing.as_ref(), &xs, last_at.as_ref());
        if opts.output_hidden_states {
            // transformers' last hidden state in the list is the normalised one.
            hidden_states.push(xs.shallow_clone());
        }
        EncoderOutput { last_hidden_state: xs, hidden_states, attentions, pooled: None }
    }

    /// What the global and the local layers read: padded, their masks and windows; packed, the
    /// rotation at each packed row and each sequence's reach in a local layer.
    fn contexts(&self, inputs: &Inputs, opts: &ForwardOptions, packing: Option<&Packing>) -> (Context, Context) {
        let (seq, device) = (inputs.input_ids.size()[1], inputs.input_ids.device());
        let (global_rotation, local_rotation) = (
            Rotation::new(self.global_theta, self.head_dim, seq, device),
            Rotation::new(self.local_theta, self.head_dim, seq, device),
        );
        if let Some(p) = packing {
            let positions = p.positions();
            let reach = p.lengths().map(|len| self.reach(len, device)).collect();
            let packed = |rotation: Rotation, reach| Context {
                mask: None,
                rotation: rotation.packed(&positions),
                windows: None,
                packed: Some((p.shallow_clone(), reach)),
            };
            return (packed(global_rotation, Vec::new()), packed(local_rotation, reach));
        }
        let windowed = self.use_windows(seq);
        let (global_mask, local_mask) = self.masks(inputs, seq, !windowed || opts.wants_probs());
        let global = Context { mask: global_mask, rotation: global_rotation, windows: None, packed: None };
        let windows = windowed.then(|| Windows::new(&inputs.attention_mask, self.window));
        (global, Context { mask: local_mask, rotation: local_rotation, windows, packed: None })
    }

    /// Which keys a local layer's queries reach in a packed sequence of `len` tokens: all of
    /// them when the window spans it, else those within the window (by blocks when long).
    fn reach(&self, len: i64, device: tch::Device) -> Reach {
        if len - 1 <= self.window {
            return Reach::All;
        }
        if self.use_windows(len) {
            return Reach::Blocks(Windows::new(&Tensor::ones([1, len], (Kind::Int64, device)), self.window));
        }
        let positions = Tensor::arange(len, (Kind::Int64, device));
        let near = (positions.unsqueeze(1) - positions.unsqueeze(0)).abs().le(self.window);
        Reach::Near(Mask::new(near.unsqueeze(0).unsqueeze(0)))
    }
}

impl Encoder for ModernBert {
    fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput {
        self.encode(inputs, opts, None)
    }

    /// A global last layer (ModernBERT-base's and -large's) runs at `positions` alone; a local
    /// one (whose windows make that no simpler) runs whole, then those positions are taken.
    fn forward_at(&self, inputs: &Inputs, opts: ForwardOptions, positions: &Tensor) -> Tensor {
        let opts = ForwardOptions { output_hidden_states: false, output_attentions: false, ..opts };
        if self.layers.last().is_some_and(|l| !l.local) {
            return self.encode(inputs, opts, Some(positions)).last_hidden_state;
        }
        let xs = self.encode(inputs, opts, None).last_hidden_state;
        let hidden = xs.size()[2];
        xs.gather(1, &positions.unsqueeze(-1).expand([-1, -1, hidden], false), false)
    }

    fn word_embeddings(&self) -> &Tensor {
        &self.tok_embeddings
    }

    fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
    }

    fn linears(&mut self) -> Vec<&mut Linear> {
        self.layers.iter_mut().flat_map(|l| [&mut l.wqkv, &mut l.wo, &mut l.wi, &mut l.mlp_wo]).collect()
    }

    fn set_unpadding(&mut self, unpadding: Unpadding) {
        self.unpadding = unpadding;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    /// The tiny fixture's settings with a global last layer, as ModernBERT-base has.
    fn model(vs: &VarStore) -> ModernBert {
        let json = serde_json::json!({"model_type": "modernbert", "vocab_size": 600, "hidden_size": 32,
            "intermediate_size": 48, "num_attention_heads": 4, "num_hidden_layers": 3, "local_attention": 4,
            "layer_types": ["full_attention", "sliding_attention", "full_attention"], "initializer_range": 0.5,
            "pad_token_id": 3, "max_position_embeddings": 64});
        let config = ModernBertConfig::from_model_config(&ModelConfig::from_json(json).unwrap()).unwrap();
        ModernBert::new(&vs.root().sub("model"), &config)
    }

    #[test]
    fn a_global_last_layer_at_some_positions_equals_the_whole_pass_there() {
        tch::manual_seed(0);
        let vs = VarStore::new(tch::Device::Cpu);
        let model = model(&vs);
        let ids = Tensor::randint(600, [2, 12], (Kind::Int64, tch::Device::Cpu));
        let mask = Tensor::ones([2, 12], (Kind::Int64, tch::Device::Cpu));
        let _ = mask.get(1).narrow(0, 9, 3).fill_(0);
        let inputs = Inputs::new(ids, mask, Tensor::zeros([2, 12], (Kind::Int64, tch::Device::Cpu)));
        let positions = Tensor::from_slice(&[0i64, 5, 0, 7]).view([2, 2]);
        let opts = ForwardOptions::default();
        let whole = model.forward(&inputs, opts).last_hidden_state;
        let whole = whole.gather(1, &positions.unsqueeze(-1).expand([-1, -1, 32], false), false);
        let at = model.forward_at(&inputs, opts, &positions);
        let diff = (&whole - &at).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "forward_at differs from the whole pass by {diff}");
        assert!(whole.abs().max().double_value(&[]) > 0.1);
    }
}
