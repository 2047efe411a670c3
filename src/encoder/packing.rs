//! Unpadded execution: a padded batch's real tokens packed one after another into
//! `[tokens, hidden]`, so that the embeddings, every projection, the feed-forward layers, the
//! norms and the heads never compute a padding position, and attention runs within each
//! sequence alone (no mask: a sequence's keys are all real). Real data is far from full length
//! (IMDB reviews run from 10 to 1 000+ tokens; CUAD's random batches were 48% padding), and the
//! batches keep their composition (unlike grouping by length), so the results are the padded
//! path's at every real position, to float32 rounding.
//!
//! What differs is only what no head reads: the hidden states at padding come back as zeros.
//! Attention probabilities (`[batch, heads, seq, seq]`) and `inputs_embeds` (attributions, whose
//! gradients are wanted at every position) keep the padded path.

use tch::{Device, Kind, Tensor};

use super::{ForwardOptions, Inputs};

/// Whether an encoder packs its padded batches (`--unpad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unpadding {
    /// Where the batch has enough padding for packing to pay (`AUTO_PADDING`).
    #[default]
    Auto,
    /// Every padded batch.
    Always,
    /// Never: the padded path, as transformers runs it.
    Never,
}

/// The share of padding from which `Unpadding::Auto` packs a batch. Packing costs a gather of
/// the embeddings' inputs, a scatter of the output and one attention call per sequence; below
/// this share of padding that costs more than it saves (measured: docs/benchmarks.md, "Unpadded
/// execution").
pub const AUTO_PADDING: f64 = 0.1;

/// Whether a batch of rows of `lengths` out of `seq` positions is packed. Never a batch with an
/// empty row (nothing to attend to, as in the padded path).
fn wanted(lengths: &[i64], seq: i64, unpadding: Unpadding) -> bool {
    let real: i64 = lengths.iter().sum();
    let padding = 1.0 - real as f64 / (lengths.len() as i64 * seq).max(1) as f64;
    let wanted = match unpadding {
        Unpadding::Never => false,
        Unpadding::Always => padding > 0.0,
        Unpadding::Auto => padding >= AUTO_PADDING,
    };
    wanted && !lengths.contains(&0)
}

/// Each sequence's first packed row and length.
fn spans(lengths: &[i64]) -> Vec<(i64, i64)> {
    let starts = lengths.iter().scan(0, |next, &len| {
        let start = *next;
        *next += len;
        Some((start, len))
    });
    starts.collect()
}

/// `t` (`[batch, seq, ...]`) as the layers take it: its real tokens where the batch is packed,
/// else as it is.
pub(crate) fn packed(packing: Option<&Packing>, t: &Tensor) -> Tensor {
    packing.map_or_else(|| t.shallow_clone(), |p| p.pack(t))
}

/// `[batch, m]` positions as the last layer takes them when only those are read: their packed
/// rows where the batch is packed, else as they are.
pub(crate) fn query_rows(packing: Option<&Packing>, positions: &Tensor) -> Tensor {
    packing.map_or_else(|| positions.shallow_clone(), |p| p.rows(positions))
}

/// A layer's output as the encoder returns it: `[batch, seq, hidden]` (zeros at padding where
/// the batch was packed), or `[batch, m, hidden]` where it ran at `query_rows` alone.
pub(crate) fn unpacked(packing: Option<&Packing>, xs: &Tensor, rows: Option<&Tensor>) -> Tensor {
    match (packing, rows) {
        (None, _) => xs.shallow_clone(),
        (Some(p), None) => p.unpack(xs),
        // [batch * m, hidden] rows -> [batch, m, hidden].
        (Some(p), Some(rows)) => xs.view([p.batch, rows.size()[0] / p.batch, -1]),
    }
}

/// Where a padded batch's real tokens lie once packed.
pub(crate) struct Packing {
    /// Row-major flat indices (into `[batch * seq]`) of the real tokens, `[tokens]`.
    index: Tensor,
    /// Each flat position's row in the packing (meaningful at real tokens only), `[batch * seq]`.
    row_of: Tensor,
    /// Each sequence's first row in the packing and its number of real tokens.
    spans: Vec<(i64, i64)>,
    batch: i64,
    seq: i64,
}

impl Packing {
    /// How a forward pass's batch packs: where it is padded, `unpadding` says so, and the caller
    /// wants nothing only the padded batch has (attention maps, gradients at every position of
    /// `inputs_embeds`).
    pub fn for_inputs(inputs: &Inputs, opts: &ForwardOptions, unpadding: Unpadding) -> Option<Packing> {
        if !inputs.padded || opts.wants_probs() || inputs.inputs_embeds.is_some() {
            return None;
        }
        match &inputs.lengths {
            Some(lengths) => {
                Packing::of_lengths(lengths, inputs.input_ids.size()[1], inputs.input_ids.device(), unpadding)
            }
            None => Packing::of(&inputs.attention_mask, unpadding),
        }
    }

    /// How `attention_mask` (`[batch, seq]`, 1 at real tokens) packs, if `unpadding` says to.
    pub fn of(attention_mask: &Tensor, unpadding: Unpadding) -> Option<Packing> {
        let (batch, seq) = attention_mask.size2().expect("attention mask is [batch, seq]");
        let lengths = attention_mask.sum_dim_intlist(1, false, Kind::Int64).to_device(Device::Cpu);
        let lengths = Vec::<i64>::try_from(&lengths).expect("int64 lengths");
        if !wanted(&lengths, seq, unpadding) {
            return None;
        }
        let flat = attention_mask.flatten(0, 1).ne(0);
        Some(Packing {
            index: flat.nonzero().squeeze_dim(1),
            row_of: flat.cumsum(0, Kind::Int64) - 1,
            spans: spans(&lengths),
            batch,
            seq,
        })
    }

    /// The same from each row's length, its real tokens first (`Inputs::lengths`): built on the
    /// host and uploaded, no read of the device.
    pub fn of_lengths(lengths: &[i64], seq: i64, device: Device, unpadding: Unpadding) -> Option<Packing> {
        if !wanted(lengths, seq, unpadding) {
            return None;
        }
        let (mut index, mut row_of) = (Vec::new(), vec![-1i64; lengths.len() * seq as usize]);
        for (row, &len) in lengths.iter().enumerate() {
            for position in 0..len {
                let flat = row as i64 * seq + position;
                row_of[flat as usize] = index.len() as i64;
                index.push(flat);
            }
        }
        let upload = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        Some(Packing {
            index: upload(&index),
            row_of: upload(&row_of),
            spans: spans(lengths),
            batch: lengths.len() as i64,
            seq,
        })
    }

    /// How many sequences the batch has.
    pub fn sequences(&self) -> i64 {
        self.batch
    }

    /// `[batch, seq, ...]` -> `[tokens, ...]`: the real tokens, sequence after sequence.
    pub fn pack(&self, t: &Tensor) -> Tensor {
        t.flatten(0, 1).index_select(0, &self.index)
    }

    /// `[tokens, hidden]` -> `[batch, seq, hidden]`, zeros at padding.
    pub fn unpack(&self, t: &Tensor) -> Tensor {
        let hidden = t.size()[1];
        let zeros = Tensor::zeros([self.batch * self.seq, hidden], (t.kind(), t.device()));
        zeros.index_copy(0, &self.index, t).view([self.batch, self.seq, hidden])
    }

    /// Each real token's position in its sequence (the padded batch's column), `[tokens]`.
    pub fn positions(&self) -> Tensor {
        self.index.remainder(self.seq)
    }

    /// The packed rows of `[batch, m]` positions (each a real token of its sequence), `[batch * m]`
    /// in row-major order: what `Encoder::forward_at` computes its last layer at.
    pub fn rows(&self, positions: &Tensor) -> Tensor {
        let first = Tensor::arange(self.batch, (Kind::Int64, positions.device())).unsqueeze(1) * self.seq;
        self.row_of.index_select(0, &(positions + first).flatten(0, 1))
    }

    /// Attention within each sequence. `q` is `[rows, heads, head_dim]`: every packed token, or
    /// (`queries_per_sequence`) the same number of rows of each sequence, as `rows` orders them;
    /// `k` and `v` are `[tokens, heads, head_dim]`. `attend` gets a sequence's index and its
    /// queries, keys and values as `[1, heads, n, head_dim]`, and returns its context in that
    /// shape. Returns `[rows, heads * head_dim]`.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        queries_per_sequence: Option<i64>,
        attend: impl Fn(usize, &Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Tensor {
        let heads_first = |t: &Tensor, start: i64, len: i64| t.narrow(0, start, len).transpose(0, 1).unsqueeze(0);
        let contexts: Vec<Tensor> = (self.spans.iter().enumerate())
            .map(|(i, &(start, len))| {
                let (q_start, q_len) = queries_per_sequence.map_or((start, len), |m| (i as i64 * m, m));
                let (q, k, v) =
                    (heads_first(q, q_start, q_len), heads_first(k, start, len), heads_first(v, start, len));
                let context = attend(i, &q, &k, &v);
                context.squeeze_dim(0).transpose(0, 1)
            })
            .collect();
        Tensor::cat(&contexts, 0).flatten(1, 2)
    }

    /// `f` applied to each sequence's rows of packed `t` (`[tokens, ...]`) alone, the results
    /// packed again.
    pub fn per_sequence(&self, t: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
        let parts: Vec<Tensor> = self.spans.iter().map(|&(start, len)| f(&t.narrow(0, start, len))).collect();
        Tensor::cat(&parts, 0)
    }

    /// Each sequence's number of real tokens.
    pub fn lengths(&self) -> impl Iterator<Item = i64> + '_ {
        self.spans.iter().map(|&(_, len)| len)
    }

    /// The same packing, sharing its tensors: what a checkpointed layer keeps for backward.
    pub fn shallow_clone(&self) -> Packing {
        Packing {
            index: self.index.shallow_clone(),
            row_of: self.row_of.shallow_clone(),
            spans: self.spans.clone(),
            batch: self.batch,
            seq: self.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&[i64]]) -> Tensor {
        let len = rows[0].len() as i64;
        Tensor::from_slice(&rows.concat()).view([rows.len() as i64, len])
    }

    #[test]
    fn packs_real_tokens_in_order_and_unpacks_with_zeros_at_padding() {
        let m = mask(&[&[1, 1, 1, 0], &[1, 0, 0, 0], &[1, 1, 1, 1]]);
        let p = Packing::of(&m, Unpadding::Always).unwrap();
        assert_eq!(p.spans, [(0, 3), (3, 1), (4, 4)]);
        let x = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4, 1]);
        let packed = p.pack(&x);
        assert_eq!(Vec::<f32>::try_from(packed.flatten(0, 1)).unwrap(), [0., 1., 2., 4., 8., 9., 10., 11.]);
        assert_eq!(Vec::<i64>::try_from(p.positions()).unwrap(), [0, 1, 2, 0, 0, 1, 2, 3]);
        let back = p.unpack(&packed);
        assert_eq!(
            Vec::<f32>::try_from(back.flatten(0, -1)).unwrap(),
            [0., 1., 2., 0., 4., 0., 0., 0., 8., 9., 10., 11.]
        );
        // The first token of each sequence, then positions 2 and 0.
        let rows = p.rows(&Tensor::from_slice(&[0i64, 0, 0]).view([3, 1]));
        assert_eq!(Vec::<i64>::try_from(rows).unwrap(), [0, 3, 4]);
        let rows = p.rows(&Tensor::from_slice(&[2i64, 0, 0, 0, 3, 1]).view([3, 2]));
        assert_eq!(Vec::<i64>::try_from(rows).unwrap(), [2, 0, 3, 3, 7, 5]);
    }

    #[test]
    fn lengths_known_on_the_host_pack_as_the_mask_does() {
        let m = mask(&[&[1, 1, 1, 0], &[1, 0, 0, 0], &[1, 1, 1, 1]]);
        let (a, b) = (
            Packing::of(&m, Unpadding::Always).unwrap(),
            Packing::of_lengths(&[3, 1, 4], 4, Device::Cpu, Unpadding::Always).unwrap(),
        );
        assert_eq!(a.spans, b.spans);
        assert_eq!(Vec::<i64>::try_from(&a.index).unwrap(), Vec::<i64>::try_from(&b.index).unwrap());
        // Rows at padding are never read; at real tokens they agree.
        let real = m.flatten(0, 1).ne(0);
        assert!(a.row_of.masked_select(&real).equal(&b.row_of.masked_select(&real)));
        assert!(Packing::of_lengths(&[4, 4], 4, Device::Cpu, Unpadding::Always).is_none(), "nothing to unpad");
        assert!(Packing::of_lengths(&[4, 0], 4, Device::Cpu, Unpadding::Always).is_none(), "an empty row");
    }

    #[test]
    fn packs_only_where_asked_and_where_it_can() {
        let full = mask(&[&[1, 1], &[1, 1]]);
        assert!(Packing::of(&full, Unpadding::Always).is_none(), "nothing to unpad");
        let little = mask(&[&[1; 20], &[[1; 19].as_slice(), &[0]].concat()]);
        assert!(Packing::of(&little, Unpadding::Always).is_some());
        assert!(Packing::of(&little, Unpadding::Auto).is_none(), "1 of 40 positions is padding");
        assert!(Packing::of(&little, Unpadding::Never).is_none());
        let half = mask(&[&[1, 1, 1, 1], &[1, 0, 0, 0]]);
        assert!(Packing::of(&half, Unpadding::Auto).is_some());
        let empty_row = mask(&[&[1, 1], &[0, 0]]);
        assert!(Packing::of(&empty_row, Unpadding::Always).is_none());
    }

    #[test]
    fn attends_within_each_sequence_as_a_masked_padded_batch_does() {
        let m = mask(&[&[1, 1, 1, 1, 1], &[1, 1, 0, 0, 0], &[1, 1, 1, 0, 0]]);
        let p = Packing::of(&m, Unpadding::Always).unwrap();
        let (heads, d) = (2, 4);
        let qkv = Tensor::randn([3, 3, 5, heads, d], (Kind::Float, Device::Cpu));
        let additive = ((-m.to_kind(Kind::Float) + 1.0) * f32::MIN as f64).view([3, 1, 1, 5]);
        let sdpa = |q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>| {
            Tensor::scaled_dot_product_attention(q, k, v, mask, 0.0, false, None, false)
        };
        // Padded: [batch, heads, seq, d], masked.
        let heads_first = |t: Tensor| t.transpose(1, 2);
        let want = sdpa(&heads_first(qkv.get(0)), &heads_first(qkv.get(1)), &heads_first(qkv.get(2)), Some(&additive));
        let want = p.pack(&want.transpose(1, 2)).flatten(1, 2);
        let (q, k, v) = (p.pack(&qkv.get(0)), p.pack(&qkv.get(1)), p.pack(&qkv.get(2)));
        let got = p.attend(&q, &k, &v, None, |_, q, k, v| sdpa(q, k, v, None));
        assert!((&got - &want).abs().max().double_value(&[]) < 1e-6);
        // Queries at two positions of each sequence only.
        let rows = p.rows(&Tensor::from_slice(&[0i64, 4, 1, 0, 2, 1]).view([3, 2]));
        let got = p.attend(&q.index_select(0, &rows), &k, &v, Some(2), |_, q, k, v| sdpa(q, k, v, None));
        assert!((got - want.index_select(0, &rows)).abs().max().double_value(&[]) < 1e-6);
    }
}
