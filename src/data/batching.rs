//! From texts to padded batches: tokenise once, group by length, pad each batch to its own
//! longest sequence (dynamic padding).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::labelled::Example;
use crate::encoder::Inputs;
use crate::tokenizer::Tokenizer;

/// One tokenised example: `[CLS] a [SEP] (b [SEP])`, already truncated.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u8>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl From<&tokenizers::Encoding> for Encoded {
    fn from(e: &tokenizers::Encoding) -> Self {
        Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().iter().map(|&t| t as u8).collect() }
    }
}

/// Tokenised texts and how many had to be cut to fit `max_len`.
pub struct Tokenized {
    pub items: Vec<Encoded>,
    pub truncated: usize,
}

/// Tokenises (in parallel, in chunks to bound memory) texts with optional second segments.
pub fn tokenize(
    tokenizer: &Tokenizer,
    texts: &[&str],
    pairs: Option<&[&str]>,
    max_len: usize,
) -> anyhow::Result<Tokenized> {
    const CHUNK: usize = 2048;
    let mut items = Vec::with_capacity(texts.len());
    let mut truncated = 0;
    for start in (0..texts.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(texts.len());
        let encodings = tokenizer.encode_batch(&texts[start..end], pairs.map(|p| &p[start..end]), max_len)?;
        truncated += encodings.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        items.extend(encodings.iter().map(Encoded::from));
    }
    Ok(Tokenized { items, truncated })
}

/// Tokenises examples (text, and second text when they have one).
pub fn tokenize_examples(tokenizer: &Tokenizer, examples: &[Example], max_len: usize) -> anyhow::Result<Tokenized> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let pairs: Option<Vec<&str>> = examples.iter().map(|e| e.pair.as_deref()).collect();
    if pairs.is_none() && examples.iter().any(|e| e.pair.is_some()) {
        anyhow::bail!("some examples have a second text and others not");
    }
    tokenize(tokenizer, &texts, pairs.as_deref(), max_len)
}

/// A padded batch on the host, row-major `[rows, len]`, before any tensor exists: MLM masking
/// corrupts `ids` here, then the tensors are made once.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub type_ids: Vec<i64>,
    pub rows: usize,
    pub len: usize,
}

impl HostBatch {
    /// Real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }

    pub fn into_inputs(self) -> Inputs {
        let shape = [self.rows as i64, self.len as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_kind(Kind::Int64);
        let padded = self.attention_mask.contains(&0);
        // The collator puts each row's real tokens first.
        let lengths = self.attention_mask.chunks(self.len.max(1)).map(|row| row.iter().sum()).collect();
        Inputs {
            input_ids: t(&self.ids),
            attention_mask: t(&self.attention_mask),
            token_type_ids: t(&self.type_ids),
            padded,
            lengths: Some(lengths),
            inputs_embeds: None,
        }
    }
}

/// Pads a batch to its longest member: `[PAD]`, attention mask 0, token type 0.
#[derive(Debug, Clone, Copy)]
pub struct Collator {
    pub pad_id: u32,
}

impl Collator {
    pub fn pad(&self, batch: &[&Encoded]) -> HostBatch {
        let len = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let rows = batch.len();
        let mut b = HostBatch {
            ids: vec![self.pad_id as i64; rows * len],
            attention_mask: vec![0; rows * len],
            type_ids: vec![0; rows * len],
            rows,
            len,
        };
        for (r, e) in batch.iter().enumerate() {
            let row = r * len;
            for (c, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                b.ids[row + c] = id as i64;
                b.type_ids[row + c] = ty as i64;
                b.attention_mask[row + c] = 1;
            }
        }
        b
    }

    pub fn collate(&self, batch: &[&Encoded]) -> Inputs {
        self.pad(batch).into_inputs()
    }

    /// The same, straight from the tokenizer's output.
    pub fn collate_encodings(&self, encodings: &[tokenizers::Encoding]) -> Inputs {
        let items: Vec<Encoded> = encodings.iter().map(Encoded::from).collect();
        self.collate(&items.iter().collect::<Vec<_>>())
    }
}

/// How training examples are put into batches (transformers' `train_sampling_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Shuffled examples, cut into batches (Trainer's default).
    Random,
    /// Batches of similar lengths: less padding, so faster on texts of mixed lengths, but the
    /// batches are less random (0.7 entity-F1 points on CoNLL in the README's runs).
    #[value(name = "group_by_length", alias = "group-by-length")]
    GroupByLength,
}

/// The training batches of one epoch, as indices into the dataset; a pure function of
/// (seed, epoch) so that a resumed run sees exactly the batches it would have seen.
///
/// Grouping by length is transformers' `LengthGroupedSampler`: examples are shuffled, cut into
/// windows of 50 batches, each window sorted by length and cut into batches, and the batches
/// shuffled, so batches hold similar lengths while their order stays random.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
    sampling: Sampling,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    if sampling == Sampling::Random {
        return order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    }
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for window in order.chunks(batch_size * 50) {
        let mut window = window.to_vec();
        window.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Evaluation batches: sorted by length (least padding; order does not change any metric).
pub fn eval_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_batches_cover_every_example_once_and_are_reproducible() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 300 + 5).collect();
        for sampling in [Sampling::Random, Sampling::GroupByLength] {
            let a = epoch_batches(&lengths, 16, 42, 3, sampling);
            assert_eq!(a, epoch_batches(&lengths, 16, 42, 3, sampling));
            assert_ne!(a, epoch_batches(&lengths, 16, 42, 4, sampling), "epochs differ");
            let mut all: Vec<usize> = a.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..1000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn grouping_by_length_reduces_padding() {
        let lengths: Vec<usize> = (0..2000).map(|i| (i * 7919) % 500 + 10).collect();
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches.iter().map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap()).sum()
        };
        let plain = padded(&epoch_batches(&lengths, 16, 1, 0, Sampling::Random));
        let bucketed = padded(&epoch_batches(&lengths, 16, 1, 0, Sampling::GroupByLength));
        let real: usize = lengths.iter().sum();
        assert!(bucketed < plain, "bucketed {bucketed} vs plain {plain}");
        assert!((bucketed as f64) < 1.1 * real as f64, "bucketed padding overhead {bucketed} vs {real}");
    }

    #[test]
    fn collate_pads_to_longest() {
        let a = Encoded { ids: vec![2, 5, 3], type_ids: vec![0, 0, 0] };
        let b = Encoded { ids: vec![2, 6, 7, 3, 8, 3], type_ids: vec![0, 0, 0, 0, 1, 1] };
        let x = Collator { pad_id: 0 }.collate(&[&a, &b]);
        assert_eq!(
            Vec::<Vec<i64>>::try_from(&x.input_ids).unwrap(),
            vec![vec![2, 5, 3, 0, 0, 0], vec![2, 6, 7, 3, 8, 3]]
        );
        assert_eq!(Vec::<Vec<i64>>::try_from(&x.attention_mask).unwrap(), vec![vec![1, 1, 1, 0, 0, 0], vec![1; 6]]);
        assert_eq!(Vec::<Vec<i64>>::try_from(&x.token_type_ids).unwrap(), vec![vec![0; 6], vec![0, 0, 0, 0, 1, 1]]);
    }
}
