//! A loaded token classifier: tagged sentences as windows with per-token labels, and word-level
//! prediction (one tag per word, from the window that owns it) that evaluation, `predict` and
//! `serve` share.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::Evaluation;
use crate::data::token_classification::{TagWindow, TaggedSentence, windows};
use crate::data::{Encoded, LabelSet, eval_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::metrics::entity_report;
use crate::pretrained::Pretrained;
use crate::task::{IGNORE_INDEX, TokenClassifier};
use crate::tokenizer::Tokenizer;

/// A model with a token-classification head, loaded.
pub type Tagger = Pretrained<TokenClassifier>;

/// Sentences cut into windows, with per-token labels where the sentences have tags.
pub struct TaggedSet {
    pub windows: Vec<TagWindow>,
    /// Per window, per token: the tag id, or `IGNORE_INDEX` (special tokens, later sub-tokens).
    pub labels: Vec<Vec<i64>>,
    /// Number of words of each sentence.
    pub sentence_words: Vec<usize>,
    /// Each sentence's tags, when the data has them.
    pub gold: Option<Vec<Vec<String>>>,
}

/// A word's predicted tag id and its probability (None: the tokenizer gave it no token).
pub type WordTag = Option<(usize, f32)>;

/// How the tokens of a word become its prediction (transformers' pipeline `aggregation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Aggregation {
    /// The word's first token.
    First,
    /// The mean of its tokens' probabilities.
    Average,
    /// The token with the most confident prediction.
    Max,
}

impl TaggedSet {
    /// Tokenises and windows sentences; tags outside `tags` are errors naming the sentence.
    /// With `label_all_tokens`, later sub-tokens carry the word's tag too (`B-` as `I-`), as in
    /// transformers' run_ner.py; otherwise only the first token of each word is trained on.
    pub fn new(
        tok: &Tokenizer,
        sentences: &[TaggedSentence],
        tags: &LabelSet,
        max_len: usize,
        stride: usize,
        label_all_tokens: bool,
    ) -> Result<Self> {
        let words: Vec<Vec<String>> = sentences.iter().map(|s| s.words.clone()).collect();
        let encodings = tok.encode_words(&words)?;
        let inside = |id: i64| {
            let name = &tags.names()[id as usize];
            name.strip_prefix("B-").and_then(|t| tags.get(&format!("I-{t}"))).unwrap_or(id)
        };
        let mut set = TaggedSet { windows: vec![], labels: vec![], sentence_words: vec![], gold: None };
        let mut gold = Vec::new();
        for (i, (s, e)) in sentences.iter().zip(&encodings).enumerate() {
            set.sentence_words.push(s.words.len());
            let ids: Option<Vec<i64>> = match &s.tags {
                None => None,
                Some(t) => Some(
                    t.iter()
                        .map(|tag| match tags.get(tag) {
                            Some(id) => Ok(id),
                            None => bail!(
                                "{}: tag {tag:?} is not among the model's tags ({})",
                                s.at,
                                tags.names().join(", ")
                            ),
                        })
                        .collect::<Result<_>>()?,
                ),
            };
            gold.extend(s.tags.clone());
            for w in windows((tok.cls_id, tok.sep_id), e.get_ids(), e.get_word_ids(), i, max_len, stride) {
                let labels = w.word_ids.iter().enumerate().map(|(p, word)| match (word, &ids) {
                    (Some(word), Some(ids)) if p == 0 || w.word_ids[p - 1] != Some(*word) => ids[*word],
                    (Some(word), Some(ids)) if label_all_tokens => inside(ids[*word]),
                    _ => IGNORE_INDEX,
                });
                set.labels.push(labels.collect());
                set.windows.push(w);
            }
        }
        set.gold = (gold.len() == sentences.len()).then_some(gold);
        Ok(set)
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.windows.iter().map(|w| w.encoded.len()).collect()
    }

    /// Labels of some windows, padded with `IGNORE_INDEX` to the longest: `[rows, len]`.
    pub(crate) fn label_tensor(&self, rows: &[usize]) -> Tensor {
        let len = rows.iter().map(|&r| self.labels[r].len()).max().unwrap_or(0);
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|&r| self.labels[r].iter().copied().chain(std::iter::repeat(IGNORE_INDEX)).take(len))
            .collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, len as i64])
    }
}

impl Tagger {
    /// Tag probabilities of every token of every window (`[len, tags]`, CPU), and the summed
    /// cross-entropy and count of the labelled tokens; spread over the ranks in the trainer.
    pub fn window_probs(&self, set: &TaggedSet, batch_size: usize, spread: Spread) -> Result<(Vec<Tensor>, f64, i64)> {
        let lengths = set.lengths();
        let starts: Vec<i64> = lengths.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n as i64))).collect();
        // Every window's rows in one tensor, and per batch the summed loss and count: zeros
        // where another rank computed them, added up in batch order below whoever did.
        let probs =
            Tensor::zeros([lengths.iter().sum::<usize>() as i64, self.config.num_labels()], (Kind::Float, Device::Cpu));
        let batches = eval_batches(&lengths, batch_size);
        let sums = Tensor::zeros([batches.len() as i64, 2], (Kind::Double, Device::Cpu));
        let mine = spread.take(batches);
        let bar = crate::progress::items_bar(mine.iter().map(|(_, b)| b.len() as u64).sum(), "windows");
        for (b, batch) in mine {
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &set.windows[i].encoded).collect();
            let inputs = self.collator().collate(&refs).to_device(self.device);
            let logits = tch::no_grad(|| self.autocast.run(|| self.model.forward(&inputs, ForwardOptions::eval())));
            let logits = logits.to_kind(Kind::Float).to_device(Device::Cpu);
            if !set.labels[batch[0]].is_empty() {
                let labels = set.label_tensor(&batch);
                let n = labels.ne(IGNORE_INDEX).sum(Kind::Int64).int64_value(&[]);
                let loss = tch::no_grad(|| self.model.loss(&logits, &labels, None)).double_value(&[]);
                sums.get(b as i64).copy_(&Tensor::from_slice(&[loss * n as f64, n as f64]));
            }
            let p = logits.softmax(-1, Kind::Float);
            for (row, &i) in batch.iter().enumerate() {
                let n = lengths[i] as i64;
                probs.narrow(0, starts[i], n).copy_(&p.get(row as i64).narrow(0, 0, n));
            }
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        spread.complete(&probs)?;
        let [loss_sum, count] = spread.totals(&sums)?[..] else { unreachable!("two columns") };
        let windows = starts.iter().zip(&lengths).map(|(&at, &n)| probs.narrow(0, at, n as i64)).collect();
        Ok((windows, loss_sum, count as i64))
    }

    /// One (tag id, probability) per word of each sentence; None for a word without tokens.
    pub fn word_predictions(&self, set: &TaggedSet, probs: &[Tensor], how: Aggregation) -> Result<Vec<Vec<WordTag>>> {
        let mut out: Vec<Vec<WordTag>> = set.sentence_words.iter().map(|&n| vec![None; n]).collect();
        for (w, p) in set.windows.iter().zip(probs) {
            let p = Vec::<Vec<f32>>::try_from(p)?;
            for &(word, first) in &w.predicts {
                let tokens: Vec<&Vec<f32>> =
                    (first..w.word_ids.len()).take_while(|&t| w.word_ids[t] == Some(word)).map(|t| &p[t]).collect();
                let scores: Vec<f32> = match how {
                    Aggregation::First => tokens[0].clone(),
                    Aggregation::Average => (0..tokens[0].len())
                        .map(|c| tokens.iter().map(|t| t[c]).sum::<f32>() / tokens.len() as f32)
                        .collect(),
                    Aggregation::Max => {
                        let top = |t: &&Vec<f32>| t.iter().copied().fold(f32::MIN, f32::max);
                        (*tokens.iter().max_by(|a, b| top(a).total_cmp(&top(b))).unwrap()).clone()
                    }
                };
                let best = super::argmax(&scores);
                out[w.sentence][word] = Some((best, scores[best]));
            }
        }
        Ok(out)
    }

    /// Entity-level precision/recall/F1 (seqeval), token accuracy and loss on tagged sentences.
    pub fn evaluate_set(&self, set: &TaggedSet, batch_size: usize, spread: Spread) -> Result<Evaluation> {
        let Some(gold) = &set.gold else { bail!("evaluation data has no tags") };
        let (probs, loss_sum, count) = self.window_probs(set, batch_size, spread)?;
        let names = self.config.label_names();
        let fallback = names.iter().position(|n| n == "O").unwrap_or(0);
        let predicted: Vec<Vec<String>> = self
            .word_predictions(set, &probs, Aggregation::First)?
            .into_iter()
            .map(|s| s.into_iter().map(|w| names[w.map_or(fallback, |(t, _)| t)].clone()).collect())
            .collect();
        let r = entity_report(&predicted, gold);
        let loss = loss_sum / count.max(1) as f64;
        let metrics = BTreeMap::from(
            [
                ("eval_loss", loss),
                ("precision", r.precision),
                ("recall", r.recall),
                ("f1", r.f1),
                ("accuracy", r.accuracy),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let mut report = serde_json::to_value(&r)?;
        report["eval_loss"] = json!(loss);
        Ok(Evaluation { metrics, report, summary: format!("eval_loss {loss:.4}\n{}", r.table()) })
    }
}

/// A run of words a tagger puts in one entity, as transformers' token-classification pipeline
/// reports it (`aggregation_strategy` other than none): its type, mean word score, text and
/// character offsets.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entity {
    pub entity_group: String,
    pub score: f32,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

impl Tagger {
    /// The fine-tuned token classifier in `dir`, on the CPU in float32.
    ///
    /// ```
    /// use bertkit::predict::Tagger;
    ///
    /// let tagger = Tagger::load("tests/fixtures/tiny-bert")?; // a tiny random model
    /// let found = tagger.entities(&["Ada Lovelace met Charles Babbage in London."])?;
    /// assert_eq!(found.len(), 1);
    /// assert!(found[0].iter().all(|e| e.start < e.end));
    /// # anyhow::Ok(())
    /// ```
    pub fn load(dir: impl AsRef<std::path::Path>) -> Result<Tagger> {
        let model = crate::pretrained::ModelDir::open(&dir.as_ref().display().to_string())?;
        if model.config.id2label().is_none() {
            bail!("{}: has no tag set (config.json has no id2label)", model.dir.display());
        }
        crate::pretrained::load(&model, &crate::pretrained::LoadOptions::default())
    }

    /// The entities of each text, a word's tag from its first token; a text longer than the
    /// model's default length is read in windows sharing 128 tokens.
    pub fn entities(&self, texts: &[&str]) -> Result<Vec<Vec<Entity>>> {
        let max_len = self.dims.max_positions.min(512) as usize;
        entities_in_texts(self, texts, max_len, 128.min(max_len / 2), Aggregation::First, 32)
    }
}

/// The entities of each raw text, texts longer than `max_len` read in windows.
pub fn entities_in_texts(
    tagger: &Tagger,
    texts: &[impl AsRef<str>],
    max_len: usize,
    stride: usize,
    how: Aggregation,
    batch_size: usize,
) -> Result<Vec<Vec<Entity>>> {
    let names = tagger.config.label_names();
    let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
    let encodings = tagger.tokenizer.encode_plain(&refs)?;
    let mut set = TaggedSet { windows: vec![], labels: vec![], sentence_words: vec![], gold: None };
    for (i, e) in encodings.iter().enumerate() {
        set.sentence_words.push(e.get_word_ids().iter().flatten().max().map_or(0, |&w| w as usize + 1));
        for w in windows(
            (tagger.tokenizer.cls_id, tagger.tokenizer.sep_id),
            e.get_ids(),
            e.get_word_ids(),
            i,
            max_len,
            stride,
        ) {
            set.labels.push(vec![]);
            set.windows.push(w);
        }
    }
    let (probs, ..) = tagger.window_probs(&set, batch_size, Spread::Alone)?;
    let words = tagger.word_predictions(&set, &probs, how)?;
    Ok(texts
        .iter()
        .zip(&encodings)
        .zip(words)
        .map(|((text, e), words)| entities(text.as_ref(), e, &words, &names))
        .collect())
}

/// Words grouped into entities: a `B-` tag or a change of type starts one, `I-` of the same
/// type continues it, `O` ends it; each entity has its type, mean word score, text and
/// character offsets (as transformers' pipeline reports them).
fn entities(text: &str, e: &tokenizers::Encoding, words: &[WordTag], names: &[String]) -> Vec<Entity> {
    let span = |w: usize| -> Option<(usize, usize)> {
        let tokens: Vec<usize> = (0..e.len()).filter(|&t| e.get_word_ids()[t] == Some(w as u32)).collect();
        Some((e.get_offsets()[*tokens.first()?].0, e.get_offsets()[*tokens.last()?].1))
    };
    let mut groups: Vec<(String, Vec<f32>, usize, usize, usize)> = Vec::new(); // type, scores, start, end, last word
    for (w, pred) in words.iter().enumerate() {
        let (Some((tag, score)), Some((start, end))) = (pred, span(w)) else { continue };
        let name = names[*tag].as_str();
        if name == "O" {
            continue;
        }
        let (bi, kind) = match name.split_once('-') {
            Some((p @ ("B" | "I" | "E" | "S"), k)) => (p, k),
            _ => ("I", name),
        };
        match groups.last_mut() {
            Some(g) if g.0 == kind && bi != "B" && bi != "S" && g.4 + 1 == w => {
                g.1.push(*score);
                (g.3, g.4) = (end, w);
            }
            _ => groups.push((kind.to_string(), vec![*score], start, end, w)),
        }
    }
    let chars: Vec<char> = text.chars().collect();
    groups
        .into_iter()
        .map(|(kind, scores, start, end, _)| {
            let word: String = chars[start..end].iter().collect();
            let score = scores.iter().sum::<f32>() / scores.len() as f32;
            Entity { entity_group: kind, score, word, start, end }
        })
        .collect()
}
