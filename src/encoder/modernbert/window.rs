//! Sliding-window attention by blocks: a local layer's queries cut into blocks of `half`
//! (the window's reach each side), each block attending the keys of the block before, its own
//! and the block after (3 x `half` keys), masked to the exact window. The same result as
//! transformers' full attention under a distance mask, for O(seq x window) work and memory
//! instead of O(seq^2): what makes ModernBERT's long contexts affordable.

use tch::{Kind, Tensor};

use crate::encoder::layers::dropout;

/// Which keys of its three blocks each query may attend, for one batch.
pub(crate) struct Windows {
    half: i64,
    /// `[batch, 1, blocks, half, 3 half]`: 0 where allowed, the float minimum elsewhere
    /// (beyond the window, padding, before the start or past the end).
    additive: Tensor,
    /// `[batch, 1, blocks, half, 1]`: 1 for a query with any key to attend, else 0: such a
    /// (padding) query gets zeros, as transformers' SDPA path gives it.
    any: Tensor,
}

impl Windows {
    /// `keep`: `[batch, seq]`, nonzero for real tokens; a query sees keys at most `half` away.
    pub fn new(keep: &Tensor, half: i64) -> Self {
        let (seq, device) = (keep.size()[1], keep.device());
        let blocks = (seq + half - 1) / half;
        // Keys of block i: positions (i - 1) half .. (i + 2) half, absent outside the sequence.
        let keys = keep.ne(0).to_kind(Kind::Float).constant_pad_nd([half, blocks * half - seq + half]);
        let keys = keys.unfold(1, 3 * half, half).ne(0); // [batch, blocks, 3 half]
        let row = Tensor::arange(half, (Kind::Int64, device)).unsqueeze(1);
        let column = Tensor::arange(3 * half, (Kind::Int64, device)).unsqueeze(0);
        let near = (row + half - column).abs().le(half); // query r, key c of the three blocks
        let allowed = near.unsqueeze(0).unsqueeze(0).logical_and(&keys.unsqueeze(2)).unsqueeze(1);
        let min = Tensor::from(f32::MIN).to_device(device);
        let additive = Tensor::zeros([1], (Kind::Float, device)).where_self(&allowed, &min);
        let any = allowed.any_dim(-1, true).to_kind(Kind::Float);
        Windows { half, additive, any }
    }

    /// Attention of `q`, `k`, `v` (`[batch, heads, seq, head_dim]`) within the windows:
    /// `[batch, heads, seq, head_dim]`.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, dropout_p: f64, train: bool) -> Tensor {
        let (b, h, seq, d) = q.size4().expect("[batch, heads, seq, head_dim]");
        let half = self.half;
        let blocks = self.additive.size()[2];
        let padded = blocks * half;
        let queries = q.constant_pad_nd([0, 0, 0, padded - seq]).view([b, h, blocks, half, d]);
        // [batch, heads, blocks, head_dim, 3 half]: views of the padded keys and values.
        let windows = |t: &Tensor| t.constant_pad_nd([0, 0, half, padded - seq + half]).unfold(2, 3 * half, half);
        let scores = queries.matmul(&windows(k)) * scale + &self.additive;
        let probs = scores.softmax(-1, Kind::Float).to_kind(q.kind()) * &self.any.to_kind(q.kind());
        let out = dropout(&probs, dropout_p, train).matmul(&windows(v).transpose(-1, -2));
        out.view([b, h, padded, d]).narrow(2, 0, seq)
    }

    pub fn shallow_clone(&self) -> Self {
        Windows { half: self.half, additive: self.additive.shallow_clone(), any: self.any.shallow_clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against full attention under the distance and padding mask, padding rows cut off from
    /// every key included (zeros, as SDPA gives them).
    #[test]
    fn blocks_give_full_attention_under_the_window_mask() {
        tch::manual_seed(1);
        let (b, h, seq, d, half) = (2, 3, 37, 4, 5);
        let [q, k, v] =
            [0, 1, 2].map(|_| Tensor::randn([b, h, seq, d], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true));
        let keep = Tensor::ones([b, seq], (Kind::Int64, tch::Device::Cpu));
        let _ = keep.get(1).narrow(0, 20, seq - 20).fill_(0);
        let got = Windows::new(&keep, half).attend(&q, &k, &v, 0.5, 0.0, false);

        let positions = Tensor::arange(seq, (Kind::Int64, tch::Device::Cpu));
        let near = (positions.unsqueeze(1) - positions.unsqueeze(0)).abs().le(half);
        let allowed = near.unsqueeze(0).logical_and(&keep.ne(0).unsqueeze(1)).unsqueeze(1);
        let want = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&allowed), 0.0, false, 0.5, false);
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");

        // The same gradients too, for a weighting of the outputs that no shortcut could pass.
        let weights = Tensor::randn([b, h, seq, d], (Kind::Float, tch::Device::Cpu));
        let grads =
            |out: &Tensor| Tensor::run_backward(&[(out * &weights).sum(Kind::Float)], &[&q, &k, &v], true, false);
        for (g, w) in grads(&got).iter().zip(grads(&want).iter()) {
            let diff = (g - w).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "gradient {diff}");
        }
    }
}
