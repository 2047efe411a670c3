//! BERT, read top to bottom: embeddings, encoder layers, pooler (`bert.*` in Hugging Face
//! checkpoints). The task heads on top are in `crate::task`.
//!
//! Parameters live in a tch `VarStore` under exactly the names Hugging Face uses
//! (`bert.encoder.layer.0.attention.self.query.weight`, ...), so loading and saving is a
//! matter of matching names (`names.rs` maps the variants). Initialisation follows
//! transformers' `BertPreTrainedModel._init_weights`, which matters for heads a checkpoint
//! does not have.

mod config;
mod names;

use anyhow::Result;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

pub use config::BertConfig;

use super::layers::{Activation, LayerNorm, Linear, dropout, explicit_attention, fused, path_at};
use super::packing::{Packing, Unpadding, packed, query_rows, unpacked};
use super::recompute::recomputed;
use super::{ClassifierKind, Encoder, EncoderOutput, Family, ForwardOptions, HeadLayout, Inputs, Probs};
use crate::encoder::ModelConfig;

/// BERT in the registry (`encoder::FAMILIES`).
pub const FAMILY: Family = Family {
    model_type: "bert",
    selects: None,
    class_stem: "Bert",
    dropout_keys: &["hidden_dropout_prob", "attention_probs_dropout_prob"],
    dims: |config| Ok(BertConfig::from_model_config(config)?.dims()),
    build,
    canonical_name: names::canonical,
    heads: HeadLayout {
        classifier: "classifier",
        classifier_kind: ClassifierKind::Pooled,
        multiple_choice: ClassifierKind::Pooled,
        mlm_dense: "cls.predictions.transform.dense",
        mlm_layer_norm: "cls.predictions.transform.LayerNorm",
        mlm_bias: "cls.predictions.bias",
        mlm_activation: None,
        qa_outputs: "qa_outputs",
        prefixes: &["qa_outputs.", "cls.", "classifier.", "bert.pooler."],
    },
};

fn build(root: &Path, config: &ModelConfig, with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let config = BertConfig::from_model_config(config)?;
    Ok(Box::new(Bert::new(root.sub("bert"), &config, with_pooler, Positions::Absolute, &BERT_LAYOUT)))
}

/// Where a BERT-shaped family keeps each parameter of its layer stack (dotted paths below the
/// encoder's), and the few places its arithmetic differs from BERT's.
pub(crate) struct Layout {
    /// The layers' list (`encoder.layer`); the rest is relative to one layer.
    pub layers: &'static str,
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_norm: &'static str,
    /// Whether the embeddings have token types (DistilBERT's have none).
    pub token_types: bool,
    /// Dropout after the attention's output projection (BERT: yes; DistilBERT: no).
    pub attention_output_dropout: bool,
}

/// BERT's names (RoBERTa's too).
pub(crate) const BERT_LAYOUT: Layout = Layout {
    layers: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
    token_types: true,
    attention_output_dropout: true,
};

/// How a sequence's positions are numbered for the position embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Positions {
    /// 0, 1, 2, ... (BERT).
    Absolute,
    /// Real tokens count from `padding_idx + 1`; padding keeps `padding_idx`, whose embedding
    /// row is never trained (RoBERTa's `create_position_ids_from_input_ids`).
    AfterPadding { padding_idx: i64 },
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    positions: Positions,
    /// None for a family without token types.
    token_type: Option<Tensor>,
    layer_norm: LayerNorm,
    pad_token_id: i64,
    dropout: f64,
}

impl Embeddings {
    fn new(p: Path, c: &BertConfig, positions: Positions, token_types: bool) -> Self {
        let init = Init::Randn { mean: 0., stdev: c.initializer_range };
        // nn.Embedding(padding_idx=pad) starts the padding row at zero and never updates it.
        let embedding = |name: &str, rows: i64, padding_idx: i64| {
            let weight = p.sub(name).var("weight", &[rows, c.embedding_size()], init);
            if (0..rows).contains(&padding_idx) {
                let _ = tch::no_grad(|| weight.get(padding_idx).zero_());
            }
            weight
        };
        let position_padding = match positions {
            Positions::Absolute => -1,
            Positions::AfterPadding { padding_idx } => padding_idx,
        };
        Embeddings {
            word: embedding("word_embeddings", c.vocab_size, c.pad_token_id),
            position: embedding("position_embeddings", c.max_position_embeddings, position_padding),
            positions,
            token_type: token_types
                .then(|| p.sub("token_type_embeddings").var("weight", &[c.type_vocab_size, c.embedding_size()], init)),
            layer_norm: LayerNorm::new(p.sub("LayerNorm"), c.embedding_size(), c.layer_norm_eps),
            pad_token_id: c.pad_token_id,
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `[batch, seq, hidden]`, or `[tokens, hidden]` when the batch is packed.
    fn forward(&self, inputs: &Inputs, packing: Option<&Packing>, train: bool) -> Tensor {
        let ids = &inputs.input_ids;
        let positions = match (self.positions, packing) {
            (Positions::Absolute, None) => {
                let seq = Tensor::arange(ids.size()[1], (Kind::Int64, ids.device()));
                self.position.index_select(0, &seq).unsqueeze(0)
            }
            (Positions::Absolute, Some(p)) => self.position.index_select(0, &p.positions()),
            (Positions::AfterPadding { padding_idx }, _) => {
                let real = ids.ne(padding_idx).to_kind(Kind::Int64);
                let position_ids = real.cumsum(1, Kind::Int64) * &real + padding_idx;
                Tensor::embedding(&self.position, &packed(packing, &position_ids), padding_idx, false, false)
            }
        };
        let words = match &inputs.inputs_embeds {
            Some(embeds) => packed(packing, embeds),
            None => Tensor::embedding(&self.word, &packed(packing, ids), self.pad_token_id, false, false),
        };
        // Summed in transformers' order: float addition is not associative.
        let xs = match &self.token_type {
            Some(types) => {
                words + Tensor::embedding(types, &packed(packing, &inputs.token_type_ids), -1, false, false) + positions
            }
            None => words + positions,
        };
        dropout(&self.layer_norm.forward(&xs), self.dropout, train)
    }
}

/// How a layer's input is laid out.
#[derive(Clone, Copy)]
enum Batch<'a> {
    /// `[batch, seq, hidden]`, with the additive mask (`[batch, 1, 1, seq]`: 0 where a key may
    /// be attended, a large negative number at padding; None: nothing padded).
    Padded(Option<&'a Tensor>),
    /// `[tokens, hidden]`: the real tokens alone.
    Packed(&'a Packing),
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
    /// After the output projection (0 where the family has none there).
    hidden_dropout: f64,
}

impl SelfAttention {
    /// `p` is the layer's path.
    fn new(p: &Path, c: &BertConfig, l: &Layout) -> Self {
        let (h, r) = (c.hidden_size, c.initializer_range);
        SelfAttention {
            query: Linear::new(path_at(p, l.query), h, h, r),
            key: Linear::new(path_at(p, l.key), h, h, r),
            value: Linear::new(path_at(p, l.value), h, h, r),
            output: Linear::new(path_at(p, l.attention_output), h, h, r),
            layer_norm: LayerNorm::new(path_at(p, l.attention_norm), h, c.layer_norm_eps),
            num_heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            attention_dropout: c.attention_probs_dropout_prob,
            hidden_dropout: if l.attention_output_dropout { c.hidden_dropout_prob } else { 0.0 },
        }
    }

    /// `xs` is `[batch, seq, hidden]` or packed `[tokens, hidden]` (`batch` says which).
    /// `queries` limits the output to some positions, which still attend to every key of their
    /// sequence: `[batch, m]` positions when padded, `[batch * m]` packed rows when packed.
    /// Returns the layer output (`[batch, seq or m, hidden]`, or `[tokens or batch * m, hidden]`)
    /// and, if asked, the probabilities.
    fn forward(
        &self,
        xs: &Tensor,
        batch: Batch,
        train: bool,
        probs: Probs,
        queries: Option<&Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let h = *xs.size().last().expect("a hidden dimension");
        let (xq, q, k, v) = self.project(xs, batch, queries);
        let scale = (self.head_dim as f64).powf(-0.5);
        let dropout_p = if train { self.attention_dropout } else { 0.0 };
        // SDPA's fused CPU kernel has no dropout, so training on the CPU would take its math
        // fallback, which keeps a float dropout mask and scaled copies of Q and K for backward:
        // written out here instead, with a one-byte mask, the same arithmetic otherwise.
        let explicit = probs.wanted() || (dropout_p > 0.0 && xs.device() == tch::Device::Cpu);
        // [batch, heads, n, head_dim] queries, keys and values.
        let attend = |q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, probs: Probs| {
            if explicit {
                explicit_attention(q, k, v, scale, mask, dropout_p, probs)
            } else {
                // Fused kernel (flash attention where the device has it), same result.
                let mask = mask.map(|m| m.to_kind(q.kind()));
                (Tensor::scaled_dot_product_attention(q, k, v, mask.as_ref(), dropout_p, false, scale, false), None)
            }
        };
        let (context, probs) = match batch {
            Batch::Padded(mask) => {
                let (c, probs) = attend(&q.transpose(1, 2), &k.transpose(1, 2), &v.transpose(1, 2), mask, probs);
                (c.transpose(1, 2).reshape([xs.size()[0], -1, h]), probs)
            }
            Batch::Packed(packing) => {
                let per_sequence = queries.map(|rows| rows.size()[0] / packing.sequences());
                (packing.attend(&q, &k, &v, per_sequence, |_, q, k, v| attend(q, k, v, None, Probs::Unwanted).0), None)
            }
        };
        let out = dropout(&self.output.forward(&context), self.hidden_dropout, train);
        (self.layer_norm.forward(&(out + xq)), probs)
    }

    /// The queries' input rows (all of `xs`, or those `queries` picks) and the queries, keys and
    /// values, `[..., n, heads, head_dim]` each.
    fn project(&self, xs: &Tensor, batch: Batch, queries: Option<&Tensor>) -> (Tensor, Tensor, Tensor, Tensor) {
        let (heads, d) = (self.num_heads, self.head_dim);
        // [..., n, heads, head_dim] from [..., n * hidden]: the same rows, heads apart.
        let split = |t: Tensor, n: i64| {
            let mut shape = t.size();
            shape.pop();
            shape.extend([n, heads, d]);
            t.view(shape.as_slice())
        };
        let Some(rows) = queries else {
            // One matmul for Q, K and V instead of three: the weights stay separate (HF names).
            let qkv = split(fused(&[&self.query, &self.key, &self.value], xs), 3);
            return (xs.shallow_clone(), qkv.select(-3, 0), qkv.select(-3, 1), qkv.select(-3, 2));
        };
        let xq = match batch {
            Batch::Padded(_) => xs.gather(1, &rows.unsqueeze(-1).expand([-1, -1, heads * d], false), false),
            Batch::Packed(_) => xs.index_select(0, rows),
        };
        let q = split(self.query.forward(&xq), 1).select(-3, 0);
        let kv = split(fused(&[&self.key, &self.value], xs), 2);
        (xq, q, kv.select(-3, 0), kv.select(-3, 1))
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
    fn new(p: Path, c: &BertConfig, l: &Layout) -> Self {
        let (h, r) = (c.hidden_size, c.initializer_range);
        Layer {
            attention: SelfAttention::new(&p, c, l),
            intermediate: Linear::new(path_at(&p, l.intermediate), h, c.intermediate_size, r),
            output: Linear::new(path_at(&p, l.output), c.intermediate_size, h, r),
            layer_norm: LayerNorm::new(path_at(&p, l.output_norm), h, c.layer_norm_eps),
            activation: Activation::parse(&c.hidden_act).expect("validated config"),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(
        &self,
        xs: &Tensor,
        batch: Batch,
        train: bool,
        probs: Probs,
        queries: Option<&Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let (xs, probs) = self.attention.forward(xs, batch, train, probs, queries);
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
pub(crate) struct Bert {
    embeddings: Embeddings,
    /// ELECTRA's `embeddings_project`, from a narrower embedding to the layers' width.
    projection: Option<Linear>,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
    /// Recompute each layer's activations in backward instead of keeping them (training only).
    gradient_checkpointing: bool,
    unpadding: Unpadding,
}

impl Bert {
    /// `p` is the encoder's path (`bert`, `roberta`). BertForMaskedLM has no pooler
    /// (`add_pooling_layer=False`).
    pub fn new(p: Path, config: &BertConfig, with_pooler: bool, positions: Positions, layout: &Layout) -> Self {
        let layers = path_at(&p, layout.layers);
        Bert {
            embeddings: Embeddings::new(p.sub("embeddings"), config, positions, layout.token_types),
            projection: (config.embedding_size() != config.hidden_size).then(|| {
                let (e, h) = (config.embedding_size(), config.hidden_size);
                Linear::new(p.sub("embeddings_project"), e, h, config.initializer_range)
            }),
            layers: (0..config.num_hidden_layers).map(|i| Layer::new(layers.sub(i), config, layout)).collect(),
            pooler: with_pooler.then(|| {
                let h = config.hidden_size;
                Linear::new(p.sub("pooler").sub("dense"), h, h, config.initializer_range)
            }),
            gradient_checkpointing: false,
            unpadding: Unpadding::default(),
        }
    }

    fn encode(&self, inputs: &Inputs, opts: ForwardOptions, last_positions: Option<&Tensor>) -> EncoderOutput {
        let packing = Packing::for_inputs(inputs, &opts, self.unpadding);
        let mut xs = self.embeddings.forward(inputs, packing.as_ref(), opts.train);
        if let Some(projection) = &self.projection {
            xs = projection.forward(&xs);
        }
        // Additive mask as in transformers: 0 for tokens, the dtype's minimum for padding. None
        // when nothing is padded (or the batch is packed): attention then skips the addition
        // (and SDPA may use a fused kernel that takes no mask).
        let mask = (inputs.padded && packing.is_none()).then(|| {
            let keep = inputs.attention_mask.to_kind(Kind::Float);
            ((-keep + 1.0) * f32::MIN as f64).unsqueeze(1).unsqueeze(1)
        });
        let batch = packing.as_ref().map_or(Batch::Padded(mask.as_ref()), Batch::Packed);
        let last_queries = last_positions.map(|p| query_rows(packing.as_ref(), p));
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        let recompute = self.gradient_checkpointing && xs.requires_grad() && !opts.wants_probs();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.output_hidden_states {
                hidden_states.push(unpacked(packing.as_ref(), &xs, None));
            }
            let queries = if i == last { last_queries.as_ref() } else { None };
            if recompute {
                let (layer, train) = (layer.shallow_clone(), opts.train);
                let (mask, queries) = (mask.as_ref().map(Tensor::shallow_clone), queries.map(Tensor::shallow_clone));
                let packing = packing.as_ref().map(Packing::shallow_clone);
                xs = recomputed(&xs, move |x| {
                    let batch = packing.as_ref().map_or(Batch::Padded(mask.as_ref()), Batch::Packed);
                    layer.forward(x, batch, train, Probs::Unwanted, queries.as_ref()).0
                });
                continue;
            }
            let (out, probs) = layer.forward(&xs, batch, opts.train, opts.probs(i), queries);
            xs = out;
            attentions.extend(probs);
        }
        xs = unpacked(packing.as_ref(), &xs, last_queries.as_ref());
        if opts.output_hidden_states {
            hidden_states.push(xs.shallow_clone());
        }
        let pooled = if last_positions.is_none() { self.pool(&xs.select(1, 0)) } else { None };
        EncoderOutput { last_hidden_state: xs, hidden_states, attentions, pooled }
    }
}

impl Encoder for Bert {
    fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput {
        self.encode(inputs, opts, None)
    }

    fn forward_at(&self, inputs: &Inputs, opts: ForwardOptions, positions: &Tensor) -> Tensor {
        let opts = ForwardOptions { output_hidden_states: false, output_attentions: false, ..opts };
        self.encode(inputs, opts, Some(positions)).last_hidden_state
    }

    fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word
    }

    fn pool(&self, first: &Tensor) -> Option<Tensor> {
        self.pooler.as_ref().map(|p| p.forward(first).tanh())
    }

    fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
    }

    fn set_unpadding(&mut self, unpadding: Unpadding) {
        self.unpadding = unpadding;
    }

    fn linears(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            let SelfAttention { query, key, value, output, .. } = &mut l.attention;
            out.extend([query, key, value, output, &mut l.intermediate, &mut l.output]);
        }
        out
    }
}
