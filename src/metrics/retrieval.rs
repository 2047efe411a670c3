//! Search quality: each query's ranked hits against the passages relevant to it, as
//! sentence-transformers' InformationRetrievalEvaluator defines the measures (binary relevance;
//! NDCG's ideal ranking puts every relevant passage first; MAP@k divides by min(k, relevant);
//! queries without a relevant passage are not counted). A reranker's candidate lists are
//! scored as sentence-transformers' CrossEncoderRerankingEvaluator does (`reranking_metrics`).

use std::collections::{BTreeMap, BTreeSet};

/// The cut-offs reported: accuracy@k (a relevant hit in the top k), precision@k, recall@k,
/// MRR@10, NDCG@10 and MAP@100, as sentence-transformers' defaults plus recall@100.
const ACCURACY_AT: [usize; 4] = [1, 3, 5, 10];
const PRECISION_RECALL_AT: [usize; 4] = [1, 3, 5, 10];
const RECALL_ALSO_AT: usize = 100;
const MRR_AT: usize = 10;
const NDCG_AT: usize = 10;
const MAP_AT: usize = 100;

/// The deepest rank any measure reads: how many hits a search must return per query.
pub const DEEPEST: usize = 100;

/// Metric name (`ndcg_at_10`) to its mean over the queries that have a relevant passage.
/// `ranked[q]` is query q's hits, best first; `relevant[q]` the passages relevant to it.
pub fn retrieval_metrics(ranked: &[Vec<usize>], relevant: &[BTreeSet<usize>]) -> BTreeMap<String, f64> {
    let queries: Vec<usize> = (0..ranked.len()).filter(|&q| !relevant[q].is_empty()).collect();
    let n = queries.len().max(1) as f64;
    let mean = |f: &dyn Fn(&[usize], &BTreeSet<usize>) -> f64| {
        queries.iter().map(|&q| f(&ranked[q], &relevant[q])).sum::<f64>() / n
    };
    let hits = |top: &[usize], rel: &BTreeSet<usize>, k: usize| top.iter().take(k).filter(|h| rel.contains(h)).count();
    let mut out = BTreeMap::new();
    for k in ACCURACY_AT {
        out.insert(format!("accuracy_at_{k}"), mean(&|top, rel| (hits(top, rel, k) > 0) as u8 as f64));
    }
    for k in PRECISION_RECALL_AT {
        out.insert(format!("precision_at_{k}"), mean(&|top, rel| hits(top, rel, k) as f64 / k as f64));
    }
    for k in PRECISION_RECALL_AT.into_iter().chain([RECALL_ALSO_AT]) {
        out.insert(format!("recall_at_{k}"), mean(&|top, rel| hits(top, rel, k) as f64 / rel.len() as f64));
    }
    out.insert(format!("mrr_at_{MRR_AT}"), mean(&reciprocal_rank));
    out.insert(format!("ndcg_at_{NDCG_AT}"), mean(&ndcg));
    out.insert(format!("map_at_{MAP_AT}"), mean(&average_precision));
    out.insert("queries".into(), queries.len() as f64);
    out
}

/// 1 / the rank of the first relevant hit in the top `MRR_AT`, 0 without one.
fn reciprocal_rank(top: &[usize], relevant: &BTreeSet<usize>) -> f64 {
    top.iter().take(MRR_AT).position(|h| relevant.contains(h)).map_or(0.0, |r| 1.0 / (r + 1) as f64)
}

/// DCG of the top `NDCG_AT` over the DCG of the ideal ranking (every relevant passage first).
fn ndcg(top: &[usize], relevant: &BTreeSet<usize>) -> f64 {
    let dcg: f64 =
        top.iter().take(NDCG_AT).enumerate().filter(|(_, h)| relevant.contains(h)).map(|(r, _)| gain(r)).sum();
    let ideal: f64 = (0..relevant.len().min(NDCG_AT)).map(gain).sum();
    dcg / ideal
}

/// The precision at each relevant hit of the top `MAP_AT`, summed, over min(`MAP_AT`, relevant).
fn average_precision(top: &[usize], relevant: &BTreeSet<usize>) -> f64 {
    let mut found = 0;
    let mut sum = 0.0;
    for (rank, hit) in top.iter().take(MAP_AT).enumerate() {
        if relevant.contains(hit) {
            found += 1;
            sum += found as f64 / (rank + 1) as f64;
        }
    }
    sum / MAP_AT.min(relevant.len()) as f64
}

/// A reranker's measures over candidate lists, as sentence-transformers'
/// CrossEncoderRerankingEvaluator defines them: each query's candidates ordered by `scores`, a
/// candidate relevant where its `relevance` exceeds 0.5; MRR@10, NDCG@10 (scikit-learn's
/// `dcg_score`: tied scores share their positions' discounts) and MAP (scikit-learn's
/// `average_precision_score` over the whole list, ties as one threshold), each a mean over
/// every query, those without a relevant candidate counting 0. `query_of[i]`: candidate i's query.
pub fn reranking_metrics(scores: &[f32], relevance: &[f32], query_of: &[usize]) -> BTreeMap<String, f64> {
    let queries = query_of.iter().max().map_or(0, |&q| q + 1);
    let mut lists: Vec<Vec<(f32, bool)>> = vec![vec![]; queries];
    for ((&s, &r), &q) in scores.iter().zip(relevance).zip(query_of) {
        lists[q].push((s, r > 0.5));
    }
    let (mut mrr, mut ndcg, mut map) = (0.0, 0.0, 0.0);
    for list in lists.iter().filter(|l| l.iter().any(|&(_, relevant)| relevant)) {
        let groups = tie_groups(list);
        mrr += reranked_reciprocal_rank(list);
        ndcg += tied_dcg(&groups, list.len())
            / (0..list.iter().filter(|c| c.1).count().min(NDCG_AT)).map(gain).sum::<f64>();
        map += tied_average_precision(&groups);
    }
    let n = queries.max(1) as f64;
    BTreeMap::from([
        (format!("mrr_at_{MRR_AT}"), mrr / n),
        (format!("ndcg_at_{NDCG_AT}"), ndcg / n),
        ("map".to_string(), map / n),
        ("queries".to_string(), queries as f64),
    ])
}

/// DCG's discount at a 0-based rank.
fn gain(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}

/// (candidates, relevant ones) per distinct score, best score first.
fn tie_groups(list: &[(f32, bool)]) -> Vec<(usize, usize)> {
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<(usize, usize)> = vec![];
    for (i, &(score, relevant)) in sorted.iter().enumerate() {
        if i == 0 || score != sorted[i - 1].0 {
            groups.push((0, 0));
        }
        let last = groups.last_mut().expect("pushed above");
        (last.0, last.1) = (last.0 + 1, last.1 + relevant as usize);
    }
    groups
}

/// 1 / the rank of the first relevant candidate in the top `MRR_AT`, best score first. The
/// evaluator orders ties as numpy's `argsort(scores)[::-1]` leaves them, which depends on the
/// CPU's sort kernel; here tied candidates later in the list come first (a stable sort, reversed).
fn reranked_reciprocal_rank(list: &[(f32, bool)]) -> f64 {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|&a, &b| list[a].0.total_cmp(&list[b].0));
    order.reverse();
    order.iter().take(MRR_AT).position(|&i| list[i].1).map_or(0.0, |r| 1.0 / (r + 1) as f64)
}

/// DCG of the top `NDCG_AT`, each tie group's mean gain spread over the discounts of the ranks
/// it takes; a list of one is its own gain, as the evaluator has it.
fn tied_dcg(groups: &[(usize, usize)], len: usize) -> f64 {
    if len == 1 {
        return groups[0].1 as f64;
    }
    let mut start = 0;
    let mut dcg = 0.0;
    for &(size, relevant) in groups {
        let discounts: f64 = (start..(start + size).min(NDCG_AT)).map(gain).sum();
        dcg += relevant as f64 / size as f64 * discounts;
        start += size;
    }
    dcg
}

/// Σ (recall gained) × precision at each distinct score, best first.
fn tied_average_precision(groups: &[(usize, usize)]) -> f64 {
    let positives: usize = groups.iter().map(|g| g.1).sum();
    let (mut seen, mut found, mut ap) = (0, 0, 0.0);
    for &(size, relevant) in groups {
        (seen, found) = (seen + size, found + relevant);
        ap += relevant as f64 / positives as f64 * found as f64 / seen as f64;
    }
    ap
}

/// The line a terminal shows for a reranker.
pub fn reranking_summary(metrics: &BTreeMap<String, f64>) -> String {
    let get = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
    format!(
        "queries {:.0} | ndcg@10 {:.4} | mrr@10 {:.4} | map {:.4}",
        get("queries"),
        get("ndcg_at_10"),
        get("mrr_at_10"),
        get("map")
    )
}

/// The lines a terminal shows.
pub fn retrieval_summary(metrics: &BTreeMap<String, f64>) -> String {
    let get = |k: &str| metrics.get(k).copied().unwrap_or(f64::NAN);
    format!(
        "queries {:.0} | ndcg@10 {:.4} | mrr@10 {:.4} | map@100 {:.4} | recall@1 {:.4} | recall@10 {:.4} | recall@100 {:.4}",
        get("queries"),
        get("ndcg_at_10"),
        get("mrr_at_10"),
        get("map_at_100"),
        get("recall_at_1"),
        get("recall_at_10"),
        get("recall_at_100")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_by_hand() {
        // Relevant: 7 and 9; hits 3, 7, 5, 9: first relevant at rank 2, the second at rank 4.
        let m = retrieval_metrics(&[vec![3, 7, 5, 9]], &[BTreeSet::from([7, 9])]);
        assert_eq!(m["mrr_at_10"], 0.5);
        assert_eq!(m["accuracy_at_1"], 0.0);
        assert_eq!(m["recall_at_3"], 0.5);
        assert_eq!(m["precision_at_5"], 2.0 / 5.0);
        assert_eq!(m["map_at_100"], (1.0 / 2.0 + 2.0 / 4.0) / 2.0);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        assert!((m["ndcg_at_10"] - dcg / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);
    }

    #[test]
    fn queries_without_relevant_passages_are_not_counted() {
        let m = retrieval_metrics(&[vec![1], vec![2]], &[BTreeSet::from([1]), BTreeSet::new()]);
        assert_eq!((m["queries"], m["accuracy_at_1"]), (1.0, 1.0));
    }
}
