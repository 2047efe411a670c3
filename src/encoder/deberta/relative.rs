//! DeBERTa's relative positions: the distance `i - j` from query `i` to key `j`, log-bucketed
//! beyond `position_buckets / 2` (`make_log_bucket_position`), and the indices into the
//! relative embeddings that content-to-position and position-to-content attention read.

use tch::{Device, Kind, Tensor};

/// Where each pair `(i, j)` of a sequence looks up its relative embedding, `[seq, seq]` int64:
/// `c2p` for the query's view of the key's position, `p2c` for the key's view of the query's.
pub(crate) struct RelativeIndex {
    pub c2p: Tensor,
    pub p2c: Tensor,
}

impl RelativeIndex {
    /// `span`: embeddings each side of zero (`att_span`); `buckets` and `max_position` as the
    /// config's `position_buckets` and `max_relative_positions` (no bucketing when either is
    /// not positive).
    pub fn new(seq: i64, span: i64, buckets: i64, max_position: i64, device: Device) -> Self {
        // Computed on the CPU, where transformers' reference values come from: the float
        // logarithm decides bucket boundaries.
        let ids = Tensor::arange(seq, (Kind::Int64, Device::Cpu));
        let mut relative = ids.unsqueeze(1) - ids.unsqueeze(0);
        if buckets > 0 && max_position > 0 {
            relative = log_buckets(&relative, buckets, max_position);
        }
        let index = |r: Tensor| r.clamp(0, 2 * span - 1).to_device(device);
        RelativeIndex { c2p: index(&relative + span), p2c: index(-&relative + span) }
    }
}

/// transformers' `make_log_bucket_position`, operation for operation (float32, as there):
/// distances within `buckets / 2` stay, longer ones grow logarithmically up to `max_position`.
fn log_buckets(relative: &Tensor, buckets: i64, max_position: i64) -> Tensor {
    let mid = buckets / 2;
    let sign = relative.sign();
    let near = relative.lt(mid).logical_and(&relative.gt(-mid));
    let abs = Tensor::from(mid - 1).where_self(&near, &relative.abs());
    let ratio = abs.to_kind(Kind::Float) / mid as f64;
    let base = Tensor::from(((max_position - 1) as f64 / mid as f64) as f32).log();
    let log_pos = ((ratio.log() / base) * (mid - 1) as f64).ceil() + mid as f64;
    relative.to_kind(Kind::Float).where_self(&abs.le(mid), &(log_pos * sign)).to_kind(Kind::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_distances_stay_and_far_ones_share_log_buckets() {
        // buckets 8 (mid 4), max 512: transformers gives these for distances 0..=12 and 511.
        let rel = Tensor::from_slice(&[0i64, 1, 3, 4, 5, 6, 8, 12, 511, -5, -511]);
        let got = Vec::<i64>::try_from(log_buckets(&rel, 8, 512)).unwrap();
        assert_eq!(got, [0, 1, 3, 4, 5, 5, 5, 5, 7, -5, -7]);
    }
}
