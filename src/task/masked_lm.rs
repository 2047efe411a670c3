//! Masked-language modelling (`BertForMaskedLM` and its kin): the transform (dense,
//! activation, layer norm), then a decoder tied to the word embeddings plus a bias. Scored only
//! at the masked positions: the same loss as transformers' projection of every position, at
//! ~15% of that work.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{IGNORE_INDEX, TaskModel, Transform};
use crate::device::upload;
use crate::encoder::ModelConfig;
use crate::encoder::layers::path_at;
use crate::encoder::{Dims, Encoder, Family, ForwardOptions, Inputs};

struct MaskedLmHead {
    transform: Transform,
    /// None where the family's decoder has none (ModernBERT's `decoder_bias = false`).
    bias: Option<Tensor>,
}

impl MaskedLmHead {
    fn new(root: &Path, family: &Family, d: &Dims) -> Self {
        let h = &family.heads;
        // The bias is a tensor inside the head's module (`cls.predictions.bias`), not a module.
        let (module, name) = h.mlm_bias.rsplit_once('.').expect("the MLM bias lies inside the head's module");
        let bias = d.head.decoder_bias.then(|| path_at(root, module).zeros(name, &[d.vocab_size]));
        let activation = h.mlm_activation.or(d.head.activation).unwrap_or(d.hidden_act);
        // Into the embeddings' width, which the tied decoder expects (ELECTRA's is narrower).
        let transform = Transform::new(root, h.mlm_dense, h.mlm_layer_norm, d, activation, d.embedding_size);
        MaskedLmHead { transform, bias }
    }

    fn forward(&self, hidden: &Tensor, word_embeddings: &Tensor) -> Tensor {
        self.transform.forward(hidden).linear(word_embeddings, self.bias.as_ref())
    }
}

pub struct MaskedLm {
    pub encoder: Box<dyn Encoder>,
    head: MaskedLmHead,
}

impl TaskModel for MaskedLm {
    const ARCHITECTURE: &'static str = "ForMaskedLM";

    /// BertForMaskedLM has no pooler (`add_pooling_layer=False`), nor has any MLM model.
    fn pooler(_: &Family) -> bool {
        false
    }

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, _: &ModelConfig) -> Self {
        MaskedLm { encoder, head: MaskedLmHead::new(root, family, dims) }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
}

/// Where an MLM batch is scored, laid out for `Encoder::forward_at`: the masked positions of each
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
    /// Logits `[batch, seq, vocab]` at every position, as transformers computes them.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Tensor {
        let out = self.encoder.forward(inputs, opts);
        self.head.forward(&out.last_hidden_state, self.encoder.word_embeddings())
    }

    /// Runs the last layer and projects onto the vocabulary only at the masked positions. The
    /// loss equals transformers' (cross-entropy over all positions with ignore_index), at ~15%
    /// of the vocabulary projection's work and ~30% of the last layer's.
    pub fn forward_masked(&self, inputs: &Inputs, masked: &MaskedTargets, opts: ForwardOptions) -> MaskedLmOutput {
        let out = self.encoder.forward_at(inputs, opts, &masked.slots);
        let hidden = out.flatten(0, 1).index_select(0, &masked.take);
        let targets = masked.ids.shallow_clone();
        let logits = self.head.forward(&hidden, self.encoder.word_embeddings());
        let loss = if targets.numel() == 0 {
            logits.sum(Kind::Float) // zero, but still connected to the graph
        } else {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, IGNORE_INDEX, 0.0)
        };
        MaskedLmOutput { loss, logits, targets }
    }
}
