//! Exact search over embeddings: every query against every passage by cosine (the vectors are
//! unit length), the corpus in chunks (from memory or a mapped file) so that memory holds one
//! chunk's vectors and scores at a time, the best hits per query kept; and the search measures
//! that gives (`metrics::retrieval`).

use std::collections::BTreeSet;

use tch::{Kind, Tensor};

use super::Evaluation;
use crate::data::vectors::MappedVectors;
use crate::metrics::retrieval::{DEEPEST, retrieval_metrics, retrieval_summary};

/// Passages scored against the queries at once.
const CHUNK: i64 = 16_384;

/// The passages' vectors, read a chunk at a time: a tensor in memory, or an `.npy` file mapped.
pub trait CorpusVectors {
    /// Passages.
    fn count(&self) -> i64;
    /// Rows `start..start + n` as a `[n, dim]` float tensor.
    fn chunk(&self, start: i64, n: i64) -> Tensor;
}

impl CorpusVectors for Tensor {
    fn count(&self) -> i64 {
        self.size()[0]
    }

    fn chunk(&self, start: i64, n: i64) -> Tensor {
        self.narrow(0, start, n)
    }
}

impl CorpusVectors for MappedVectors {
    fn count(&self) -> i64 {
        self.rows as i64
    }

    fn chunk(&self, start: i64, n: i64) -> Tensor {
        Tensor::from_slice(&self.rows(start as usize, n as usize)).view([n, self.dim as i64])
    }
}

/// The best `k` passages of each query, best first, as (passage index, cosine). Equal scores
/// rank the lower index first, as sentence-transformers ranks equal scores by id, also where
/// ties straddle the k-th place (which `topk` would break arbitrarily).
pub fn search(queries: &Tensor, corpus: &dyn CorpusVectors, k: usize) -> Vec<Vec<(usize, f32)>> {
    let n = corpus.count();
    let mut hits: Vec<Vec<(usize, f32)>> = vec![Vec::new(); queries.size()[0] as usize];
    for start in (0..n).step_by(CHUNK as usize) {
        let chunk = corpus.chunk(start, CHUNK.min(n - start)).to_device(queries.device());
        let scores = queries.matmul(&chunk.tr()).to_kind(Kind::Float);
        let (values, indices) = scores.topk((k as i64).min(chunk.size()[0]), 1, true, true);
        let values = Vec::<Vec<f32>>::try_from(values).expect("2-d scores");
        let indices = Vec::<Vec<i64>>::try_from(indices).expect("2-d indices");
        for (q, (v, i)) in values.into_iter().zip(indices).enumerate() {
            let row = with_ties(&scores.get(q as i64), v, i);
            hits[q].extend(row.into_iter().map(|(i, s)| (start as usize + i as usize, s)));
            hits[q].sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits[q].truncate(k);
        }
    }
    hits
}

/// A row's best entries as `topk` gave them (`values`, `indices`), or, where ties straddle the
/// last place, every entry at or above its score (the caller orders and cuts them).
fn with_ties(row: &Tensor, values: Vec<f32>, indices: Vec<i64>) -> Vec<(i64, f32)> {
    let Some(&cut) = values.last() else { return vec![] };
    let at = Vec::<i64>::try_from(row.ge(cut as f64).nonzero().view([-1])).expect("1-d");
    if at.len() == values.len() {
        return indices.into_iter().zip(values).collect();
    }
    let scores = Vec::<f32>::try_from(row.index_select(0, &Tensor::from_slice(&at))).expect("1-d");
    at.into_iter().zip(scores).collect()
}

/// Search measures of `queries` against `corpus` (unit vectors), `relevant[q]` the passages
/// relevant to query q.
pub fn evaluate_search(queries: &Tensor, corpus: &dyn CorpusVectors, relevant: &[BTreeSet<usize>]) -> Evaluation {
    let ranked: Vec<Vec<usize>> =
        search(queries, corpus, DEEPEST).into_iter().map(|h| h.into_iter().map(|(i, _)| i).collect()).collect();
    let metrics = retrieval_metrics(&ranked, relevant);
    let summary = retrieval_summary(&metrics);
    let report = serde_json::json!({"corpus": corpus.count(), "metrics": metrics});
    Evaluation { metrics, report, summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_merge_into_the_best_hits_with_ties_by_index() {
        let q = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
        let rows: Vec<f32> = (0..40_000).flat_map(|i| [((i % 7) as f32) / 10.0, 1.0]).collect();
        let corpus = Tensor::from_slice(&rows).view([40_000, 2]);
        let hits = search(&q, &corpus, 3);
        // Score 0.6 at every index = 6 mod 7: the lowest three.
        assert_eq!(hits[0].iter().map(|h| h.0).collect::<Vec<_>>(), vec![6, 13, 20]);
    }
}
