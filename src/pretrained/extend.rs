//! Vocabulary extension: a model directory with domain words added to its WordPiece vocabulary,
//! each word's embedding (and MLM output bias) the mean of the pieces it was cut into before
//! (the usual initialisation). Either into the `[unusedK]` slots BERT vocabularies keep for this
//! (the size, and so every shape, unchanged) or as new rows at the end (`vocab_size` grows, and
//! the word embeddings and the MLM bias with it). The result is a directory transformers loads
//! unchanged: tokenizer.json and vocab.txt say the same, config.json has the new size.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tch::Tensor;

use super::{ModelDir, read_weights, save_pretrained};
use crate::data::vocabulary::NewWord;
use crate::fsutil::atomic_write;

/// Where added words go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VocabSlots {
    /// `[unusedK]` slots where the vocabulary has enough of them, else new rows.
    Auto,
    /// The `[unusedK]` slots (BERT's 994): the vocabulary keeps its size.
    Unused,
    /// New ids after the last one.
    NewRows,
}

/// The vocabulary (token -> id) of a WordPiece tokenizer, from tokenizer.json or vocab.txt.
struct Vocabulary {
    tokens: BTreeMap<String, u32>,
    /// tokenizer.json, when the model has one (its `model.vocab` is rewritten).
    json: Option<Value>,
}

impl Vocabulary {
    fn read(dir: &Path) -> Result<Vocabulary> {
        let json_path = dir.join("tokenizer.json");
        if json_path.exists() {
            let json: Value = serde_json::from_slice(&std::fs::read(&json_path)?)
                .with_context(|| format!("{}", json_path.display()))?;
            if json["model"]["type"] != "WordPiece" {
                bail!(
                    "{}: --add-vocab extends WordPiece vocabularies (BERT, DistilBERT, ELECTRA); this tokenizer is {}",
                    json_path.display(),
                    json["model"]["type"]
                );
            }
            let tokens =
                serde_json::from_value(json["model"]["vocab"].clone()).context("tokenizer.json: model.vocab")?;
            return Ok(Vocabulary { tokens, json: Some(json) });
        }
        let text = std::fs::read_to_string(dir.join("vocab.txt"))
            .with_context(|| format!("{}: no tokenizer.json or vocab.txt", dir.display()))?;
        Ok(Vocabulary {
            tokens: text.lines().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect(),
            json: None,
        })
    }

    /// The ids of the `[unusedK]` tokens, in order.
    fn unused_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .tokens
            .iter()
            .filter(|(t, _)| {
                t.strip_prefix("[unused").and_then(|r| r.strip_suffix(']')).is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .map(|(_, &id)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn write(&self, dir: &Path) -> Result<()> {
        if let Some(json) = &self.json {
            let mut json = json.clone();
            json["model"]["vocab"] = serde_json::to_value(&self.tokens)?;
            atomic_write(&dir.join("tokenizer.json"), serde_json::to_string(&json)?.as_bytes())?;
        }
        let mut by_id: Vec<(&u32, &String)> = self.tokens.iter().map(|(t, id)| (id, t)).collect();
        by_id.sort();
        let lines: String = by_id.into_iter().map(|(_, t)| format!("{t}\n")).collect();
        atomic_write(&dir.join("vocab.txt"), lines.as_bytes())
    }
}

/// Writes `model` with `words` added to its vocabulary into `out`; returns each word's id.
pub(crate) fn extend_vocabulary(
    model: &ModelDir,
    words: &[NewWord],
    slots: VocabSlots,
    out: &Path,
) -> Result<Vec<u32>> {
    let mut vocab = Vocabulary::read(&model.dir)?;
    if let Some(w) = words.iter().find(|w| vocab.tokens.contains_key(&w.word)) {
        bail!("{:?} is already in the vocabulary", w.word);
    }
    let unused = vocab.unused_ids();
    let slots = match slots {
        VocabSlots::Auto if unused.len() >= words.len() => VocabSlots::Unused,
        VocabSlots::Auto => VocabSlots::NewRows,
        VocabSlots::Unused if unused.len() < words.len() => {
            crate::error::refuse!(
                "--add-vocab {}: the vocabulary has {} [unusedK] slots (--add-vocab-into new-rows adds rows instead)",
                words.len(),
                unused.len()
            )
        }
        s => s,
    };
    let size = vocab.tokens.values().max().map_or(0, |&m| m + 1);
    let ids: Vec<u32> = match slots {
        VocabSlots::Unused => unused[..words.len()].to_vec(),
        _ => (size..size + words.len() as u32).collect(),
    };
    vocab.tokens.retain(|_, id| !ids.contains(id));
    vocab.tokens.extend(words.iter().zip(&ids).map(|(w, &id)| (w.word.clone(), id)));
    let new_size = vocab.tokens.values().max().map_or(0, |&m| m + 1) as i64;

    let mut tensors = read_weights(&model.dir, model.family)?;
    for (name, t) in tensors.iter_mut() {
        let is_vocab_rows = name.ends_with("embeddings.word_embeddings.weight") || name == model.family.heads.mlm_bias;
        if is_vocab_rows && t.size()[0] == size as i64 {
            *t = with_word_rows(t, words, &ids, new_size);
        }
    }
    let mut config = model.config.clone();
    config.set("vocab_size", Value::from(new_size));
    let architecture = model
        .config
        .architectures()
        .first()
        .map_or_else(|| model.family.architecture("ForMaskedLM"), |a| a.to_string());
    save_pretrained(out, &tensors, &config, &architecture, &model.dir)?;
    vocab.write(out)?;
    Ok(ids)
}

/// `rows` (`[vocab, ...]`) grown to `new_size` rows, row `ids[i]` the mean of the rows of
/// `words[i]`'s pieces.
fn with_word_rows(rows: &Tensor, words: &[NewWord], ids: &[u32], new_size: i64) -> Tensor {
    let mut shape = rows.size();
    let grown = if new_size > shape[0] {
        shape[0] = new_size - shape[0];
        Tensor::cat(&[rows, &rows.new_zeros(shape.as_slice(), (rows.kind(), rows.device()))], 0)
    } else {
        rows.copy()
    };
    for (w, &id) in words.iter().zip(ids) {
        let pieces = Tensor::from_slice(&w.piece_ids.iter().map(|&p| p as i64).collect::<Vec<_>>());
        let mean = rows.index_select(0, &pieces).mean_dim(0, false, rows.kind());
        grown.get(id as i64).copy_(&mean);
    }
    grown
}
