//! What changed between two models over a whole set, gathered batch by batch from the forward
//! passes that also give their predictions: how far each head's attention moved (Jensen-Shannon
//! divergence between the two models' attention rows, per example, averaged over its tokens),
//! and each layer's sentence representation (mean over the tokens), for linear CKA at the end.

use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::divergence::js_rows;
use super::similarity::linear_cka_all;
use crate::encoder::AttentionSink;

/// A model's attention probabilities, every layer's `[batch, heads, seq, seq]`, kept as its
/// forward pass hands them over: made a few examples at a time in cache and written out once,
/// where the pass returning them writes and reads back each layer's scores whole. The memory is
/// kept from batch to batch: a fresh tensor is memory the kernel maps and zeroes again (filling
/// a new 32 x 12 x 256 x 256 layer takes 27 ms, a reused one 11).
pub struct KeptAttention {
    batch: i64,
    /// Per layer, flat, as large as the largest layer kept so far.
    buffers: Mutex<Vec<Tensor>>,
    /// This batch's layers: views of the buffers.
    layers: Mutex<Vec<Tensor>>,
}

impl KeptAttention {
    pub fn new(batch: i64) -> Self {
        KeptAttention { batch, buffers: Mutex::new(Vec::new()), layers: Mutex::new(Vec::new()) }
    }

    /// Ready for the next batch's pass, in the same memory: the last batch's layers are
    /// overwritten.
    pub fn next_batch(&mut self, batch: i64) {
        self.batch = batch;
        self.layers.get_mut().unwrap().clear();
    }

    /// The layers kept in this batch's pass (views, valid until the next batch's pass).
    pub fn layers(&self) -> Vec<Tensor> {
        self.layers.lock().unwrap().iter().map(Tensor::shallow_clone).collect()
    }
}

impl AttentionSink for KeptAttention {
    fn take(&self, layer: usize, first: i64, probs: &Tensor) {
        let mut target = {
            let mut layers = self.layers.lock().unwrap();
            if layer == layers.len() {
                let mut shape = probs.size();
                shape[0] = self.batch;
                let numel: i64 = shape.iter().product();
                let mut buffers = self.buffers.lock().unwrap();
                if buffers.len() == layer {
                    buffers.push(Tensor::empty([0], (probs.kind(), probs.device())));
                }
                if buffers[layer].numel() < numel as usize {
                    buffers[layer] = Tensor::empty([numel], (probs.kind(), probs.device()));
                }
                layers.push(buffers[layer].narrow(0, 0, numel).view(shape.as_slice()));
            }
            layers[layer].narrow(0, first, probs.size()[0])
        };
        // Outside the lock: threads copy their own examples' rows side by side.
        target.copy_(probs);
    }
}

/// Per example, per layer and head: the mean over its real query tokens of the Jensen-Shannon
/// divergence (natural log, in [0, ln 2]) between a first model's attention rows and a second's,
/// taken as the second model's forward pass makes them (its `ForwardOptions::attention_sink`):
/// the second model's probabilities are reduced while in cache and never kept.
pub(crate) struct AttentionDivergence<'a> {
    /// The first model's probabilities, `[batch, heads, seq, seq]` per layer.
    first: &'a [Tensor],
    /// 1 at real tokens, `[batch, seq]`.
    keep: Tensor,
    /// Real tokens per example, `[batch, 1]`.
    tokens: Tensor,
    /// `[batch, layers, heads]`, filled as the layers come.
    divergence: Tensor,
}

impl<'a> AttentionDivergence<'a> {
    /// Against `first` (every layer's probabilities), for a batch with `mask` (`[batch, seq]`).
    pub fn new(first: &'a [Tensor], mask: &Tensor) -> Self {
        let keep = mask.to_kind(Kind::Float);
        let tokens = keep.sum_dim_intlist(1, false, Kind::Float).view([-1, 1]);
        let heads = first.first().map_or(0, |layer| layer.size()[1]);
        let divergence = Tensor::zeros([mask.size()[0], first.len() as i64, heads], (Kind::Float, mask.device()));
        AttentionDivergence { first, keep, tokens, divergence }
    }

    /// `[batch, layers, heads]`, once the second model's pass has handed every layer over.
    pub fn into_divergence(self) -> Tensor {
        self.divergence
    }
}

// SAFETY: threads handing over chunks at once read `first`, `keep` and `tokens` (libtorch's
// tensors may be read from any thread) and write `divergence` at their own examples' rows.
unsafe impl Sync for AttentionDivergence<'_> {}

impl AttentionSink for AttentionDivergence<'_> {
    fn take(&self, layer: usize, first: i64, probs: &Tensor) {
        let n = probs.size()[0];
        let rows = row_divergence(&self.first[layer].narrow(0, first, n), probs);
        let keep = self.keep.narrow(0, first, n).unsqueeze(1);
        let mean = (rows * keep).sum_dim_intlist(-1, false, Kind::Float) / self.tokens.narrow(0, first, n);
        self.divergence.narrow(0, first, n).select(1, layer as i64).copy_(&mean);
    }
}

/// The Jensen-Shannon divergence of every attention row, `[batch, heads, seq]` from two
/// `[batch, heads, seq, seq]`: in one pass on the CPU (`divergence.rs`), as libtorch's ops on a
/// GPU: JS(p, q) = ½ Σ p ln p + ½ Σ q ln q − Σ m ln m with m = ½ (p + q).
fn row_divergence(p: &Tensor, q: &Tensor) -> Tensor {
    if p.device() == Device::Cpu {
        return js_rows(p, q);
    }
    let m = (p + q) * 0.5;
    // xlogy makes 0 ln 0 = 0 (padding keys).
    let term = |x: &Tensor| x.xlogy(x).sum_dim_intlist(-1, false, Kind::Float);
    ((term(p) + term(q)) * 0.5 - term(&m)).clamp_min(0.0)
}

/// Each layer's sentence representation (the embeddings' output first): the mean of the hidden
/// states over real tokens, `[batch, hidden]` per layer.
pub(crate) fn mean_pooled(hidden_states: &[Tensor], mask: &Tensor) -> Vec<Tensor> {
    let keep = mask.to_kind(Kind::Float).unsqueeze(-1);
    let count = keep.sum_dim_intlist(1, false, Kind::Float);
    hidden_states
        .iter()
        .map(|h| (h.to_kind(Kind::Float) * &keep).sum_dim_intlist(1, false, Kind::Float) / &count)
        .collect()
}

/// Sums over the set, filled batch by batch.
pub(crate) struct SetStatistics {
    /// Σ divergence per gold label (the last row: every example), `[labels + 1, layers, heads]`.
    divergence: Tensor,
    examples: Vec<f64>,
    /// Per model, per layer: the pooled representations of each batch, in order.
    pooled: [Vec<Vec<Tensor>>; 2],
}

impl SetStatistics {
    pub fn new(labels: usize, layers: i64, heads: i64) -> Self {
        SetStatistics {
            divergence: Tensor::zeros([labels as i64 + 1, layers, heads], (Kind::Double, Device::Cpu)),
            examples: vec![0.0; labels + 1],
            pooled: [vec![], vec![]],
        }
    }

    /// One batch: the divergence `[batch, layers, heads]`, each example's gold label (None for
    /// an example without one class: multi-label, regression) and both models' pooled states.
    pub fn add(&mut self, divergence: &Tensor, gold: &[Option<usize>], pooled: [Vec<Tensor>; 2]) {
        let divergence = divergence.to_kind(Kind::Double).to_device(Device::Cpu);
        let all = self.examples.len() - 1;
        for (i, label) in gold.iter().enumerate() {
            for row in label.iter().copied().chain([all]) {
                let mut slot = self.divergence.get(row as i64);
                slot += divergence.get(i as i64);
                self.examples[row] += 1.0;
            }
        }
        for (model, states) in pooled.into_iter().enumerate() {
            let states: Vec<Tensor> = states.iter().map(|s| s.to_device(Device::Cpu)).collect();
            self.pooled[model].push(states);
        }
    }

    /// Mean divergence `[layers][heads]` over the examples of `label` (None: every example).
    pub fn mean_divergence(&self, label: Option<usize>) -> Vec<Vec<f64>> {
        let row = label.unwrap_or(self.examples.len() - 1);
        let mean = self.divergence.get(row as i64) / self.examples[row].max(1.0);
        Vec::<Vec<f64>>::try_from(mean).expect("a [layers, heads] tensor")
    }

    /// Examples of each label seen (the last: all).
    pub fn examples(&self) -> &[f64] {
        &self.examples
    }

    /// Linear CKA of every layer of the first model with every layer of the second
    /// (`[layers a][layers b]`, the embeddings' output first).
    pub fn cka(&self) -> Vec<Vec<f64>> {
        let layers = |model: usize| -> Vec<Tensor> {
            let count = self.pooled[model].first().map_or(0, Vec::len);
            (0..count).map(|l| Tensor::cat(&self.pooled[model].iter().map(|b| &b[l]).collect::<Vec<_>>(), 0)).collect()
        };
        linear_cka_all(&layers(0), &layers(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The divergence as compare-models gets it: the second model's layers handed over whole
    /// (a chunk from example 0), or a few examples at a time.
    fn divergence(a: &[Tensor], b: &[Tensor], mask: &Tensor, chunk: i64) -> Tensor {
        let sink = AttentionDivergence::new(a, mask);
        for (layer, probs) in b.iter().enumerate() {
            let batch = probs.size()[0];
            for first in (0..batch).step_by(chunk as usize) {
                sink.take(layer, first, &probs.narrow(0, first, chunk.min(batch - first)));
            }
        }
        sink.into_divergence()
    }

    #[test]
    fn kept_attention_holds_each_batch_whatever_the_last_one_was() {
        let opts = (Kind::Float, Device::Cpu);
        let mut kept = KeptAttention::new(2);
        // Shorter sequences, then longer (the memory grows), then fewer examples (it is reused).
        for (batch, seq) in [(2, 3), (2, 5), (1, 4)] {
            kept.next_batch(batch);
            let layers: Vec<Tensor> = (0..2).map(|_| Tensor::rand([batch, 2, seq, seq], opts)).collect();
            for (layer, probs) in layers.iter().enumerate() {
                for first in 0..batch {
                    kept.take(layer, first, &probs.narrow(0, first, 1));
                }
            }
            let got = kept.layers();
            assert_eq!(got.len(), 2);
            for (got, want) in got.iter().zip(&layers) {
                assert_eq!(got.size(), want.size());
                assert!(got.equal(want), "batch of {batch} x {seq}");
            }
        }
    }

    #[test]
    fn divergence_is_zero_for_the_same_attention_and_ln2_for_disjoint_rows() {
        let opts = (Kind::Float, Device::Cpu);
        let a = Tensor::rand([2, 3, 4, 4], opts).softmax(-1, Kind::Float);
        let mask = Tensor::ones([2, 4], (Kind::Int64, Device::Cpu));
        let same = divergence(&[a.shallow_clone()], &[a.shallow_clone()], &mask, 2);
        assert_eq!(same.size(), [2, 1, 3]);
        assert!(same.abs().max().double_value(&[]) < 1e-6);
        // Each query attends to key 0 in one model, key 1 in the other; padding (key 3, query 3)
        // has no weight and does not count.
        let one_hot = |k: i64| Tensor::zeros([1, 1, 4, 4], opts).index_fill(3, &Tensor::from_slice(&[k]), 1.0);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 0]).view([1, 4]);
        let apart = divergence(&[one_hot(0)], &[one_hot(1)], &mask, 1);
        assert!((apart.double_value(&[0, 0, 0]) - 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn chunks_of_examples_give_what_whole_layers_give() {
        let opts = (Kind::Float, Device::Cpu);
        let layers = |seed| {
            tch::manual_seed(seed);
            (0..2).map(|_| Tensor::rand([5, 2, 6, 6], opts).softmax(-1, Kind::Float)).collect::<Vec<_>>()
        };
        let (a, b) = (layers(1), layers(2));
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 0, 0]).view([1, 6]).repeat([5, 1]);
        let whole = divergence(&a, &b, &mask, 5);
        for chunk in [1, 2, 3] {
            let chunked = divergence(&a, &b, &mask, chunk);
            assert!((&chunked - &whole).abs().max().double_value(&[]) < 1e-7, "chunks of {chunk}");
        }
        assert!(whole.min().double_value(&[]) > 0.0, "every example and layer filled");
    }

    #[test]
    fn statistics_average_per_label() {
        let mut s = SetStatistics::new(2, 1, 1);
        let d = Tensor::from_slice(&[0.1f32, 0.3, 0.5]).view([3, 1, 1]);
        let pooled = || vec![Tensor::randn([3, 4], (Kind::Float, Device::Cpu))];
        s.add(&d, &[Some(0), Some(1), Some(1)], [pooled(), pooled()]);
        assert!((s.mean_divergence(Some(1))[0][0] - 0.4).abs() < 1e-6);
        assert!((s.mean_divergence(None)[0][0] - 0.3).abs() < 1e-6);
        assert_eq!(s.examples(), &[1.0, 2.0, 3.0]);
        assert_eq!(s.cka().len(), 1);
    }
}
