//! DeBERTa-v2 and v3 (He et al. 2021; `model_type` "deberta-v2"), read top to bottom as
//! transformers 5.24's `modeling_deberta_v2.py` computes it: word embeddings (plus absolute
//! positions and token types where the config keeps them), a layer norm and the padding zeroed;
//! then BERT-shaped post-norm layers whose attention adds to the content scores two
//! disentangled terms, content-to-position and position-to-content, read from relative-position
//! embeddings shared by every layer (log-bucketed distances, `relative.rs`); v2's large models
//! add a convolution after the first layer. A padded batch runs packed (`encoder::packing`):
//! each sequence attends its own keys, its relative positions its own. Weights live under transformers' names
//! (`deberta.encoder.layer.0.attention.self.query_proj.weight`, `pooler.dense`, `classifier`,
//! `cls.predictions.*`, or `lm_predictions.lm_head.*` where the config says `legacy: false`);
//! the heads are `crate::task`'s, in `ContextPooler` shape.

mod config;
mod names;
mod relative;

use anyhow::Result;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use self::config::DebertaConfig;
use self::relative::RelativeIndex;
use super::layers::{Activation, LayerNorm, Linear, attention_softmax, dropout, fused};
use super::packing::{Packing, Unpadding, packed, unpacked};
use super::recompute::recomputed;
use super::{ClassifierKind, Encoder, EncoderOutput, Family, ForwardOptions, HeadLayout, Inputs, Probs, Selector};
use crate::encoder::ModelConfig;

/// DeBERTa-v2/v3 in the registry (`encoder::FAMILIES`), with transformers' default (`legacy`)
/// MLM head, `cls.predictions`.
pub const FAMILY: Family = Family {
    model_type: "deberta-v2",
    selects: None,
    class_stem: "DebertaV2",
    dropout_keys: &["hidden_dropout_prob", "attention_probs_dropout_prob"],
    dims: |config| Ok(DebertaConfig::from_model_config(config)?.dims()),
    build,
    canonical_name: names::canonical,
    heads: HeadLayout {
        classifier: "classifier",
        classifier_kind: ClassifierKind::ContextPooler { dense: "pooler.dense" },
        multiple_choice: ClassifierKind::ContextPooler { dense: "pooler.dense" },
        mlm_dense: "cls.predictions.transform.dense",
        mlm_layer_norm: "cls.predictions.transform.LayerNorm",
        mlm_bias: "cls.predictions.bias",
        mlm_activation: None,
        // lm_predictions / mask_predictions: the original checkpoints' MLM and replaced-token
        // heads, which the legacy classes do not read (carried through unchanged).
        qa_outputs: "qa_outputs",
        prefixes: &["qa_outputs.", "cls.", "classifier.", "pooler.", "lm_predictions.", "mask_predictions."],
    },
};

/// DeBERTa with `legacy: false`: the original checkpoints' MLM head, `lm_predictions.lm_head`
/// (dense, activation, layer norm, the word embeddings and a bias: the legacy head's arithmetic
/// under other names), where Microsoft's checkpoints that ship a pretrained MLM head (v2's)
/// keep it.
pub(crate) const LM_PREDICTIONS_FAMILY: Family = Family {
    selects: Some(Selector {
        reads: |config| config.json().get("legacy").and_then(serde_json::Value::as_bool) == Some(false),
        setting: "\"legacy\": false",
    }),
    heads: HeadLayout {
        mlm_dense: "lm_predictions.lm_head.dense",
        mlm_layer_norm: "lm_predictions.lm_head.LayerNorm",
        mlm_bias: "lm_predictions.lm_head.bias",
        ..FAMILY.heads
    },
    ..FAMILY
};

fn build(root: &Path, config: &ModelConfig, _with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let config = DebertaConfig::from_model_config(config)?;
    Ok(Box::new(Deberta::new(&root.sub("deberta"), &config)))
}

/// The lowest finite value of a score's dtype (`torch.finfo(dtype).min`), what transformers
/// writes where a pair may not attend: the float32 one would round to -inf in bfloat16.
fn lowest(kind: Kind) -> f64 {
    match kind {
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        Kind::Half => -65504.0,
        _ => f32::MIN as f64,
    }
}

/// What every layer reads besides its input: which pairs may attend (None: all), the relative
/// embeddings (before their layer norm, which each layer applies: a checkpointed layer must
/// compute from parameters, not from a tensor of the outer graph) and where each pair reads them.
/// A packed batch (`encoder::packing`) blocks no pair: each sequence attends its own keys.
struct Context {
    blocked: Option<Tensor>,
    relative: Option<(Tensor, RelativeIndex)>,
    relative_norm: Option<LayerNorm>,
    packing: Option<Packing>,
}

impl Context {
    fn relative_embeddings(&self) -> Option<(Tensor, &RelativeIndex)> {
        let (weight, index) = self.relative.as_ref()?;
        Some((self.relative_norm.as_ref().map_or_else(|| weight.shallow_clone(), |n| n.forward(weight)), index))
    }

    fn shallow_clone(&self) -> Self {
        Context {
            blocked: self.blocked.as_ref().map(Tensor::shallow_clone),
            relative: self.relative.as_ref().map(|(w, i)| {
                (w.shallow_clone(), RelativeIndex { c2p: i.c2p.shallow_clone(), p2c: i.p2c.shallow_clone() })
            }),
            relative_norm: self.relative_norm.as_ref().map(LayerNorm::shallow_clone),
            packing: self.packing.as_ref().map(Packing::shallow_clone),
        }
    }
}

/// The relative embeddings as one layer's keys (c2p) and queries (p2c) see them.
struct RelativeKeys {
    pos_key: Option<Tensor>,
    pos_query: Option<Tensor>,
}

/// `DisentangledSelfAttention`: content scores plus c2p and p2c, all over sqrt(d x terms).
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Projections of the relative embeddings of their own (None: `share_att_key`, the
    /// content ones serve).
    pos_key: Option<Linear>,
    pos_query: Option<Linear>,
    c2p: bool,
    p2c: bool,
    heads: i64,
    head_dim: i64,
    dropout: f64,
    /// Dropout on the relative embeddings (`pos_dropout`, the hidden dropout).
    pos_dropout: f64,
}

impl Attention {
    fn new(p: Path, c: &DebertaConfig) -> Self {
        let h = c.hidden_size;
        let own = |name: &str, wanted: bool| {
            (c.relative_attention && !c.share_att_key && wanted)
                .then(|| Linear::new(p.sub(name), h, h, c.initializer_range))
        };
        Attention {
            query: Linear::new(p.sub("query_proj"), h, h, c.initializer_range),
            key: Linear::new(p.sub("key_proj"), h, h, c.initializer_range),
            value: Linear::new(p.sub("value_proj"), h, h, c.initializer_range),
            pos_key: own("pos_key_proj", c.c2p()),
            pos_query: own("pos_query_proj", c.p2c()),
            c2p: c.relative_attention && c.c2p(),
            p2c: c.relative_attention && c.p2c(),
            heads: c.num_attention_heads,
            head_dim: c.head_dim(),
            dropout: c.attention_probs_dropout_prob,
            pos_dropout: c.hidden_dropout_prob,
        }
    }

    /// `[batch, seq, heads x head_dim]` (packed: `[tokens, heads x head_dim]`) and, if asked, the
    /// probabilities `[batch, heads, seq, seq]`.
    fn forward(&self, xs: &Tensor, cx: &Context, train: bool, wanted: Probs) -> (Tensor, Option<Tensor>) {
        // One matmul for Q, K and V (the weights stay separate, under transformers' names). Under
        // autocast it also casts the input once, whether or not it is a checkpointed leaf.
        let mut shape = xs.size();
        shape.pop();
        shape.extend([3, self.heads, self.head_dim]);
        let qkv = fused(&[&self.query, &self.key, &self.value], xs).view(shape.as_slice());
        // The relative embeddings' projections, once a layer (not once a sequence).
        let relative = cx.relative_embeddings().map(|(embeddings, index)| {
            (self.relative_projections(&dropout(&embeddings, self.pos_dropout, train)), index)
        });
        let relative = relative.as_ref().map(|(p, index)| (p, *index));
        let Some(packing) = &cx.packing else {
            // [batch, heads, seq, head_dim] each.
            let qkv = qkv.permute([2, 0, 3, 1, 4]);
            let (b, l) = (xs.size()[0], xs.size()[1]);
            let (context, probs) =
                self.attend(&qkv.get(0), &qkv.get(1), &qkv.get(2), relative, cx.blocked.as_ref(), train);
            return (context.transpose(1, 2).reshape([b, l, -1]), wanted.deliver(probs));
        };
        let (q, k, v) = (qkv.select(1, 0), qkv.select(1, 1), qkv.select(1, 2));
        let context = packing.attend(&q, &k, &v, None, |_, q, k, v| self.attend(q, k, v, relative, None, train).0);
        (context, None)
    }

    /// Content plus relative scores of `[batch, heads, seq, head_dim]` queries, keys and values,
    /// blocked pairs masked: the context and the probabilities.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        relative: Option<(&RelativeKeys, &RelativeIndex)>,
        blocked: Option<&Tensor>,
        train: bool,
    ) -> (Tensor, Tensor) {
        let terms = 1 + self.c2p as i64 + self.p2c as i64;
        // A float32 scalar tensor, divided by as transformers divides (not a multiplication).
        let scale = Tensor::from(((self.head_dim * terms) as f32).sqrt()).to_device(q.device());
        let content = q.matmul(&(k.transpose(-1, -2) / &scale.to_kind(q.kind())));
        let scores = match relative {
            Some((keys, index)) => content + self.relative_scores(q, k, keys, index, &scale),
            None => content,
        };
        let scores = match blocked {
            Some(blocked) => scores.masked_fill(blocked, lowest(scores.kind())),
            None => scores,
        };
        let probs = attention_softmax(scores).to_kind(v.kind());
        (dropout(&probs, self.dropout, train).matmul(v), probs)
    }

    /// The relative embeddings projected as keys (c2p) and as queries (p2c), each
    /// `[1, heads, head_dim, rows]`.
    fn relative_projections(&self, embeddings: &Tensor) -> RelativeKeys {
        let rows = embeddings.size()[0];
        let project = |layer: &Linear| {
            layer.forward(embeddings).view([1, rows, self.heads, self.head_dim]).transpose(1, 2).transpose(-1, -2)
        };
        RelativeKeys {
            pos_key: self.c2p.then(|| project(self.pos_key.as_ref().unwrap_or(&self.key))),
            pos_query: self.p2c.then(|| project(self.pos_query.as_ref().unwrap_or(&self.query))),
        }
    }

    /// c2p: each query against the embedding of its distance to each key; p2c: each key
    /// against the embedding of the query's distance to it (transposed into query rows). A
    /// sequence shorter than the index reads its top-left corner (distances depend on the two
    /// positions alone).
    fn relative_scores(
        &self,
        q: &Tensor,
        k: &Tensor,
        keys: &RelativeKeys,
        index: &RelativeIndex,
        scale: &Tensor,
    ) -> Tensor {
        let (b, h, l, _) = q.size4().expect("[batch, heads, seq, head_dim]");
        let pairs = [b, h, l, l];
        let corner = |t: &Tensor| t.narrow(0, 0, l).narrow(1, 0, l).expand(pairs, false);
        let c2p = keys
            .pos_key
            .as_ref()
            .map(|pos_key| q.matmul(pos_key).gather(-1, &corner(&index.c2p), false) / scale.to_kind(q.kind()));
        let p2c = keys.pos_query.as_ref().map(|pos_query| {
            k.matmul(pos_query).gather(-1, &corner(&index.p2c), false).transpose(-1, -2) / scale.to_kind(q.kind())
        });
        match (c2p, p2c) {
            (Some(c2p), Some(p2c)) => c2p + p2c,
            (Some(score), None) | (None, Some(score)) => score,
            (None, None) => unreachable!("relative attention has c2p or p2c"),
        }
    }

    fn shallow_clone(&self) -> Self {
        Attention {
            query: self.query.shallow_clone(),
            key: self.key.shallow_clone(),
            value: self.value.shallow_clone(),
            pos_key: self.pos_key.as_ref().map(Linear::shallow_clone),
            pos_query: self.pos_query.as_ref().map(Linear::shallow_clone),
            ..*self
        }
    }
}

/// `DebertaV2Layer`: attention, dense + dropout + residual layer norm, then the feed-forward
/// the same way (BERT's post-norm arrangement).
struct Layer {
    attention: Attention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    activation: Activation,
    hidden_dropout: f64,
}

impl Layer {
    fn new(p: Path, c: &DebertaConfig) -> Self {
        let (h, i, r) = (c.hidden_size, c.intermediate_size, c.initializer_range);
        Layer {
            attention: Attention::new(p.sub("attention").sub("self"), c),
            attention_output: Linear::new(p.sub("attention").sub("output").sub("dense"), h, h, r),
            attention_norm: LayerNorm::new(p.sub("attention").sub("output").sub("LayerNorm"), h, c.layer_norm_eps),
            intermediate: Linear::new(p.sub("intermediate").sub("dense"), h, i, r),
            output: Linear::new(p.sub("output").sub("dense"), i, h, r),
            output_norm: LayerNorm::new(p.sub("output").sub("LayerNorm"), h, c.layer_norm_eps),
            activation: Activation::parse(&c.hidden_act).expect("validated config"),
            hidden_dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, xs: &Tensor, cx: &Context, train: bool, probs: Probs) -> (Tensor, Option<Tensor>) {
        let (context, probs) = self.attention.forward(xs, cx, train, probs);
        let attended = dropout(&self.attention_output.forward(&context), self.hidden_dropout, train);
        let attended = self.attention_norm.forward(&(attended + xs));
        let inner = self.activation.apply(&self.intermediate.forward(&attended));
        let out = dropout(&self.output.forward(&inner), self.hidden_dropout, train);
        (self.output_norm.forward(&(out + attended)), probs)
    }

    fn shallow_clone(&self) -> Self {
        Layer {
            attention: self.attention.shallow_clone(),
            attention_output: self.attention_output.shallow_clone(),
            attention_norm: self.attention_norm.shallow_clone(),
            intermediate: self.intermediate.shallow_clone(),
            output: self.output.shallow_clone(),
            output_norm: self.output_norm.shallow_clone(),
            ..*self
        }
    }
}

/// `ConvLayer` (DeBERTa-v2 xlarge/xxlarge): a convolution over the embeddings' output, added to
/// the first layer's output before a layer norm, padding zeroed.
struct Convolution {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
    activation: Activation,
    norm: LayerNorm,
    dropout: f64,
}

impl Convolution {
    fn new(p: Path, c: &DebertaConfig) -> Self {
        let (h, k) = (c.hidden_size, c.conv_kernel_size);
        let conv = p.sub("conv");
        Convolution {
            weight: conv.var(
                "weight",
                &[h, h / c.conv_groups, k],
                Init::Randn { mean: 0., stdev: c.initializer_range },
            ),
            bias: conv.zeros("bias", &[h]),
            groups: c.conv_groups,
            activation: Activation::parse(&c.conv_act).expect("validated config"),
            norm: LayerNorm::new(p.sub("LayerNorm"), h, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn shallow_clone(&self) -> Self {
        Convolution {
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
            norm: self.norm.shallow_clone(),
            ..*self
        }
    }

    /// `embedded`: the first layer's input; `residual`: its output; `keep`: `[batch, seq]` 0/1.
    /// Packed (`[tokens, hidden]`), each sequence is convolved alone, zero-padded at its ends
    /// as the padded batch's zeroed padding pads it.
    fn forward(
        &self,
        embedded: &Tensor,
        residual: &Tensor,
        keep: &Tensor,
        packing: Option<&Packing>,
        train: bool,
    ) -> Tensor {
        let padding = (self.weight.size()[2] - 1) / 2;
        let conv = |t: &Tensor| {
            let out = t.permute([0, 2, 1]).conv1d(&self.weight, Some(&self.bias), [1], [padding], [1], self.groups);
            out.permute([0, 2, 1])
        };
        if let Some(packing) = packing {
            let out = packing.per_sequence(embedded, |t| conv(&t.unsqueeze(0)).squeeze_dim(0));
            let out = self.activation.apply(&dropout(&out, self.dropout, train));
            return self.norm.forward(&(residual + out));
        }
        let out = conv(embedded).masked_fill(&keep.eq(0).unsqueeze(-1), 0.0);
        let out = self.activation.apply(&dropout(&out, self.dropout, train));
        self.norm.forward(&(residual + out)) * keep.unsqueeze(2).to_kind(residual.kind())
    }
}

/// `DebertaV2Embeddings`: words (+ absolute positions, + token types, where the config has
/// them), projected up when narrower than the layers, layer norm, padding zeroed, dropout.
struct Embeddings {
    word: Tensor,
    position: Option<Tensor>,
    token_type: Option<Tensor>,
    projection: Option<Linear>,
    norm: LayerNorm,
    pad_token_id: i64,
    dropout: f64,
}

impl Embeddings {
    fn new(p: Path, c: &DebertaConfig) -> Self {
        let (e, h, r) = (c.embedding_size(), c.hidden_size, c.initializer_range);
        let table = |name: &str, rows: i64| p.sub(name).var("weight", &[rows, e], Init::Randn { mean: 0., stdev: r });
        let word = table("word_embeddings", c.vocab_size);
        let pad_token_id = c.pad_token_id.unwrap_or(-1);
        if (0..c.vocab_size).contains(&pad_token_id) {
            // nn.Embedding(padding_idx=pad) starts the padding row at zero.
            let _ = tch::no_grad(|| word.get(pad_token_id).zero_());
        }
        let projection = (e != h).then(|| {
            let init = Tensor::randn([h, e], (Kind::Float, p.device())) * r;
            Linear::with_init(p.sub("embed_proj"), e, h, init, false)
        });
        Embeddings {
            word,
            position: c.position_biased_input.then(|| table("position_embeddings", c.max_position_embeddings)),
            token_type: (c.type_vocab_size > 0).then(|| table("token_type_embeddings", c.type_vocab_size)),
            projection,
            norm: LayerNorm::new(p.sub("LayerNorm"), h, c.layer_norm_eps),
            pad_token_id,
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `[batch, seq, hidden]`, or `[tokens, hidden]` when the batch is packed.
    fn forward(&self, inputs: &Inputs, packing: Option<&Packing>, train: bool) -> Tensor {
        let mut xs = match &inputs.inputs_embeds {
            Some(embeds) => packed(packing, embeds),
            None => Tensor::embedding(&self.word, &packed(packing, &inputs.input_ids), self.pad_token_id, false, false),
        };
        // Summed in transformers' order (words, positions, token types): not in place, since
        // `xs` may be the caller's `inputs_embeds`.
        if let Some(position) = &self.position {
            xs = match packing {
                Some(p) => &xs + position.index_select(0, &p.positions()),
                None => &xs + position.narrow(0, 0, inputs.input_ids.size()[1]),
            };
        }
        if let Some(token_type) = &self.token_type {
            xs = &xs + Tensor::embedding(token_type, &packed(packing, &inputs.token_type_ids), -1, false, false);
        }
        if let Some(projection) = &self.projection {
            xs = projection.forward(&xs);
        }
        let mut xs = self.norm.forward(&xs);
        if inputs.padded && packing.is_none() {
            xs = &xs * inputs.attention_mask.unsqueeze(2).to_kind(xs.kind());
        }
        dropout(&xs, self.dropout, train)
    }
}

/// The encoder shared by every task: `deberta.*` in Hugging Face checkpoints.
pub(crate) struct Deberta {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// `rel_embeddings`: `2 x span` rows (None without relative attention).
    relative: Option<Tensor>,
    relative_norm: Option<LayerNorm>,
    span: i64,
    buckets: i64,
    max_relative_positions: i64,
    conv: Option<Convolution>,
    gradient_checkpointing: bool,
    unpadding: Unpadding,
}

impl Deberta {
    fn new(p: &Path, c: &DebertaConfig) -> Self {
        let encoder = p.sub("encoder");
        let layers = encoder.sub("layer");
        let init = Init::Randn { mean: 0., stdev: c.initializer_range };
        let span = c.attention_span();
        Deberta {
            embeddings: Embeddings::new(p.sub("embeddings"), c),
            layers: (0..c.num_hidden_layers).map(|i| Layer::new(layers.sub(i), c)).collect(),
            relative: c
                .relative_attention
                .then(|| encoder.sub("rel_embeddings").var("weight", &[2 * span, c.hidden_size], init)),
            relative_norm: (c.relative_attention && c.norm_relative_embeddings())
                .then(|| LayerNorm::new(encoder.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps)),
            span,
            buckets: c.position_buckets,
            max_relative_positions: c.max_relative_positions(),
            conv: (c.conv_kernel_size > 0).then(|| Convolution::new(encoder.sub("conv"), c)),
            gradient_checkpointing: false,
            unpadding: Unpadding::default(),
        }
    }

    /// Pairs where the query or the key is padding may not attend (`get_attention_mask`: the
    /// mask times its transpose), so a padding row attends everything alike. Packed, there is no
    /// such pair.
    fn context(&self, inputs: &Inputs, packing: Option<Packing>) -> Context {
        let (seq, device) = (inputs.input_ids.size()[1], inputs.input_ids.device());
        let blocked = (inputs.padded && packing.is_none()).then(|| {
            let keep = inputs.attention_mask.ne(0);
            keep.unsqueeze(2).logical_and(&keep.unsqueeze(1)).logical_not().unsqueeze(1)
        });
        let relative = self.relative.as_ref().map(|weight| {
            let index = RelativeIndex::new(seq, self.span, self.buckets, self.max_relative_positions, device);
            (weight.shallow_clone(), index)
        });
        let relative_norm = self.relative_norm.as_ref().map(LayerNorm::shallow_clone);
        Context { blocked, relative, relative_norm, packing }
    }

    fn encode(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput {
        let packing = Packing::for_inputs(inputs, &opts, self.unpadding);
        let mut xs = self.embeddings.forward(inputs, packing.as_ref(), opts.train);
        let cx = self.context(inputs, packing);
        let (mut hidden_states, mut attentions) = (Vec::new(), Vec::new());
        let recompute = self.gradient_checkpointing && xs.requires_grad() && !opts.wants_probs();
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.output_hidden_states {
                hidden_states.push(unpacked(cx.packing.as_ref(), &xs, None));
            }
            // The convolution reads the first layer's input too: it runs inside the same block,
            // so a checkpointed block sums that input's gradients as the plain backward does.
            let conv = self.conv.as_ref().filter(|_| i == 0);
            if recompute {
                let (layer, cx, train) = (layer.shallow_clone(), cx.shallow_clone(), opts.train);
                let conv = conv.map(Convolution::shallow_clone);
                let keep = inputs.attention_mask.shallow_clone();
                xs = recomputed(&xs, move |x| {
                    let out = layer.forward(x, &cx, train, Probs::Unwanted).0;
                    conv.as_ref().map_or(out.shallow_clone(), |c| c.forward(x, &out, &keep, cx.packing.as_ref(), train))
                });
            } else {
                let (out, probs) = layer.forward(&xs, &cx, opts.train, opts.probs(i));
                let keep = &inputs.attention_mask;
                xs = conv.map_or(out.shallow_clone(), |c| c.forward(&xs, &out, keep, cx.packing.as_ref(), opts.train));
                attentions.extend(probs);
            }
        }
        let xs = unpacked(cx.packing.as_ref(), &xs, None);
        if opts.output_hidden_states {
            hidden_states.push(xs.shallow_clone());
        }
        EncoderOutput { last_hidden_state: xs, hidden_states, attentions, pooled: None }
    }
}

impl Encoder for Deberta {
    fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput {
        self.encode(inputs, opts)
    }

    /// Every position through every layer, then those positions (the last layer's keys and
    /// values need every position, and its queries are a small part of its work).
    fn forward_at(&self, inputs: &Inputs, opts: ForwardOptions, positions: &Tensor) -> Tensor {
        let opts = ForwardOptions { output_hidden_states: false, output_attentions: false, ..opts };
        let xs = self.encode(inputs, opts).last_hidden_state;
        let hidden = xs.size()[2];
        xs.gather(1, &positions.unsqueeze(-1).expand([-1, -1, hidden], false), false)
    }

    fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word
    }

    fn set_gradient_checkpointing(&mut self, on: bool) {
        self.gradient_checkpointing = on;
    }

    fn linears(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            let Attention { query, key, value, pos_key, pos_query, .. } = &mut l.attention;
            out.extend([query, key, value]);
            out.extend(pos_key.as_mut().into_iter().chain(pos_query.as_mut()));
            out.extend([&mut l.attention_output, &mut l.intermediate, &mut l.output]);
        }
        out
    }

    fn set_unpadding(&mut self, unpadding: Unpadding) {
        self.unpadding = unpadding;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::family_of;

    fn config(edit: serde_json::Value) -> ModelConfig {
        let mut json = serde_json::json!({"model_type": "deberta-v2", "hidden_size": 32, "num_attention_heads": 4});
        json.as_object_mut().unwrap().extend(edit.as_object().unwrap().clone());
        ModelConfig::from_json(json).unwrap()
    }

    #[test]
    fn legacy_chooses_the_mlm_heads_names() {
        let mlm = |c: &ModelConfig| family_of(c).unwrap().heads.mlm_dense;
        assert_eq!(mlm(&config(serde_json::json!({}))), "cls.predictions.transform.dense");
        assert_eq!(mlm(&config(serde_json::json!({"legacy": true}))), "cls.predictions.transform.dense");
        assert_eq!(mlm(&config(serde_json::json!({"legacy": false}))), "lm_predictions.lm_head.dense");
        // Not a boolean: the legacy entry, whose config reader names the key.
        let odd = config(serde_json::json!({"legacy": "no"}));
        assert!(format!("{:#}", (family_of(&odd).unwrap().dims)(&odd).unwrap_err()).contains("legacy"));
    }

    #[test]
    fn a_fresh_legacy_head_beside_a_stored_one_says_how_to_read_it() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let fresh = names(&["cls.predictions.bias", "cls.predictions.transform.dense.weight"]);
        let stored = names(&["lm_predictions.lm_head.dense.weight", "mask_predictions.dense.weight"]);
        let note = FAMILY.mlm_head_elsewhere(&fresh, &stored).expect("a note");
        assert!(note.contains("set \"legacy\": false in config.json"), "{note}");
        // Nothing started fresh, or nothing stored elsewhere: nothing to say.
        assert_eq!(FAMILY.mlm_head_elsewhere(&[], &stored), None);
        assert_eq!(FAMILY.mlm_head_elsewhere(&fresh, &names(&["pooler.dense.weight"])), None);
        assert_eq!(LM_PREDICTIONS_FAMILY.mlm_head_elsewhere(&stored, &fresh), None);
    }

    #[test]
    fn lm_predictions_needs_embeddings_as_wide_as_the_layers() {
        let narrow = config(serde_json::json!({"legacy": false, "embedding_size": 16}));
        let err = (family_of(&narrow).unwrap().dims)(&narrow).unwrap_err().to_string();
        assert!(err.contains("legacy = false with embedding_size 16 != hidden_size 32"), "{err}");
        let legacy = config(serde_json::json!({"embedding_size": 16}));
        assert!((family_of(&legacy).unwrap().dims)(&legacy).is_ok());
    }
}
