//! Token classification from files: fine-tuning (`FineTune` hands over here for a tagger),
//! evaluating and predicting a `{Family}ForTokenClassification` model on CoNLL or JSONL
//! `{"tokens", "tags"}` data (and, for `predict`, raw text, answered with entities and their
//! character offsets).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use super::finetune::{FineTune as FinetuneArgs, Trained, split};
use super::session;
use crate::data::token_classification::{TagColumn, TaggedSentence, is_conll, read_tagged};
use crate::data::{LabelSet, OnBadRow};
use crate::distributed::Spread;
use crate::predict::{Aggregation, TaggedSet, Tagger, entities_in_texts};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::TaskKind;
use crate::train::TokenClassification;
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::train;
use crate::values::positive;

#[derive(clap::Args, Clone, Debug)]
pub struct TagFlags {
    /// CoNLL: the column holding the tag, counting the word as 1 (default: the last column).
    #[arg(long, value_parser = tag_column)]
    pub tag_column: Option<usize>,
    /// Train on every sub-token of a word (later ones with the word's tag, `B-` as `I-`), not
    /// only the first.
    #[arg(long)]
    pub label_all_tokens: bool,
}

fn tag_column(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if n < 2 {
        return Err("must be at least 2 (column 1 is the word)".into());
    }
    Ok(n)
}

impl TagFlags {
    pub fn column(&self) -> TagColumn {
        self.tag_column.map_or(TagColumn::Last, TagColumn::Nth)
    }
}

/// Whether `finetune` trains a tagger: --task says so, else the checkpoint's head, else the
/// training file is CoNLL.
pub fn is_tagging(args: &FinetuneArgs, model: &ModelDir, new_head: bool) -> Result<bool> {
    let head = (!new_head && model.has_classifier()?).then(|| TaskKind::of(&model.config));
    Ok(match (args.task, head) {
        (Some(task), _) => task == TaskKind::TokenClassification,
        (None, None) => is_conll(&args.train),
        (None, Some(TaskKind::TokenClassification)) => true,
        (None, Some(h)) if is_conll(&args.train) => bail!(
            "{}: CoNLL data, but {} has a {} head; pass --new-head (and --task token-classification)",
            args.train.display(),
            model.dir.display(),
            h.name()
        ),
        (None, Some(_)) => false,
    })
}

/// Reads tagged sentences, reporting skipped ones.
fn read(path: &Path, flags: &TagFlags, with_tags: bool, on_bad: OnBadRow) -> Result<Vec<TaggedSentence>> {
    let (sentences, skipped) = read_tagged(path, flags.column(), with_tags, on_bad)?;
    if !skipped.is_empty() {
        tracing::warn!("{}: skipped {} bad sentences, e.g. {}", path.display(), skipped.len(), skipped[0]);
    }
    Ok(sentences)
}

/// The tag set: a checkpoint's head keeps its ids; otherwise the training tags, sorted.
fn tag_set(model: &ModelDir, train: &[TaggedSentence], new_head: bool) -> Result<LabelSet> {
    if let (Some(names), false) = (model.config.id2label(), new_head)
        && model.has_classifier()?
    {
        return Ok(LabelSet::new(names.to_vec()));
    }
    let mut names: Vec<String> = train.iter().flat_map(|s| s.tags.iter().flatten().cloned()).collect();
    names.sort();
    names.dedup();
    Ok(LabelSet::new(names))
}

/// Every tag of the sentences is one of `tags`, or an error naming the sentence.
fn check_tags(sentences: &[TaggedSentence], tags: &LabelSet) -> Result<()> {
    for s in sentences {
        if let Some(bad) = s.tags.iter().flatten().find(|t| tags.get(t).is_none()) {
            bail!("{}: tag {bad:?} is not among the model's tags ({})", s.at, tags.names().join(", "));
        }
    }
    Ok(())
}

pub(crate) fn finetune(
    args: &FinetuneArgs,
    mut model: ModelDir,
    device: tch::Device,
    new_head: bool,
) -> Result<Trained> {
    let cfg = &args.cfg;
    if args.class_weights.is_some() || args.pos_weight.is_some() || args.tune_thresholds {
        crate::error::refuse!(
            "--class-weights, --pos-weight and --tune-thresholds apply to text-level tasks, not token classification"
        );
    }
    let max_len = model.max_len(args.data.max_len)?;
    let on_bad = args.data.on_bad_row;
    let train_sentences = read(&args.train, &args.tags, true, on_bad)?;
    let (train_sentences, eval_sentences) = match (&args.eval, args.eval_split) {
        (Some(path), _) => (train_sentences, Some(read(path, &args.tags, true, on_bad)?)),
        (None, Some(f)) => split(train_sentences, f, cfg.hyper.seed).map(|(t, e)| (t, Some(e)))?,
        (None, None) => (train_sentences, None),
    };
    let tags = tag_set(&model, &train_sentences, new_head)?;
    if tags.len() < 2 {
        bail!("{}: fewer than two tags ({})", args.train.display(), tags.names().join(", "));
    }
    check_tags(&train_sentences, &tags)?;
    check_tags(eval_sentences.as_deref().unwrap_or_default(), &tags)?;
    model.config.set_labels(tags.names());
    model.config.remove("problem_type");
    let data = card_data(args, &train_sentences, eval_sentences.as_deref());

    let run = RunDir::new(&cfg.control);
    run.prepare()?;
    let options = session::load_options(cfg, device, new_head);
    let tagger: Tagger = pretrained::load(&model, &options)?;
    let stride = args.data.stride;
    let windowed = |sentences: &[TaggedSentence], role: &str| -> Result<TaggedSet> {
        let set = TaggedSet::new(&tagger.tokenizer, sentences, &tags, max_len, stride, args.tags.label_all_tokens)?;
        tracing::info!(
            "{role}: {} sentences in {} windows of at most {max_len} tokens",
            sentences.len(),
            set.windows.len()
        );
        Ok(set)
    };
    let train_set = windowed(&train_sentences, "train")?;
    let eval_set = eval_sentences.as_deref().map(|s| windowed(s, "eval")).transpose()?;
    tracing::info!("task token-classification | tags: {} | device {device:?}", tags.names().join(", "));
    let batch_size = session::global_batch(cfg);
    let num_batches = train_set.windows.len().div_ceil(batch_size);
    let sampling = cfg.hyper.train_sampling_strategy;
    let task = TokenClassification { tagger, train: train_set, eval: eval_set, batch_size, sampling };
    let outcome = train(&task, cfg, options.autocast, num_batches)?;
    let card = ModelCard {
        base_model: &args.model,
        pipeline_tag: "token-classification",
        task: "token-classification",
        data,
        hyper: &cfg.hyper,
    };
    session::finish(outcome, cfg, &card)
}

/// The data files for the model card, with the words carrying each tag.
fn card_data(args: &FinetuneArgs, train: &[TaggedSentence], eval: Option<&[TaggedSentence]>) -> Vec<DataFile> {
    args.card_files(train, eval, |role, path, sentences| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for tag in sentences.iter().flat_map(|s| s.tags.iter().flatten()) {
            *counts.entry(tag.clone()).or_default() += 1;
        }
        DataFile { role, path, examples: sentences.len(), labels: counts.into_iter().collect() }
    })
}

/// How evaluate and predict read tagged data and cut it into windows.
pub struct Reading<'a> {
    pub tags: &'a TagFlags,
    pub max_len: usize,
    pub stride: usize,
    pub on_bad: OnBadRow,
}

/// `evaluate` of a tagger: entity-level scores on tagged sentences.
pub fn evaluate(
    model: &ModelDir,
    data: &Path,
    how: &Reading,
    options: &LoadOptions,
    batch_size: usize,
) -> Result<crate::predict::Evaluation> {
    let tags = LabelSet::new(model.config.label_names());
    let sentences = read(data, how.tags, true, how.on_bad)?;
    check_tags(&sentences, &tags)?;
    let tagger: Tagger = pretrained::load(model, options)?;
    let set = TaggedSet::new(&tagger.tokenizer, &sentences, &tags, how.max_len, how.stride, false)?;
    tracing::info!("{}: {} sentences in {} windows", data.display(), sentences.len(), set.windows.len());
    tagger.evaluate_set(&set, batch_size, Spread::Ranks)
}

/// `predict` of a tagger: tags per word for CoNLL/JSONL sentences, else entities in raw texts.
pub fn predict(
    tagger: &Tagger,
    input: &Path,
    texts: Option<&[String]>,
    reading: &Reading,
    how: Aggregation,
    batch_size: usize,
) -> Result<Vec<u8>> {
    let names = tagger.config.label_names();
    let (max_len, stride) = (reading.max_len, reading.stride);
    let mut out = Vec::new();
    let Some(texts) = texts else {
        let sentences = read(input, reading.tags, false, reading.on_bad)?;
        let set = TaggedSet::new(&tagger.tokenizer, &sentences, &LabelSet::new(names.clone()), max_len, stride, false)?;
        let (probs, ..) = tagger.window_probs(&set, batch_size, Spread::Alone)?;
        for (s, words) in sentences.iter().zip(tagger.word_predictions(&set, &probs, how)?) {
            let tags: Vec<&str> = words.iter().map(|w| w.map_or("O", |(t, _)| names[t].as_str())).collect();
            let scores: Vec<f32> = words.iter().map(|w| w.map_or(0.0, |(_, p)| p)).collect();
            writeln!(out, "{}", json!({"tokens": s.words, "tags": tags, "scores": scores}))?;
        }
        return Ok(out);
    };
    for (text, entities) in texts.iter().zip(entities_in_texts(tagger, texts, max_len, stride, how, batch_size)?) {
        writeln!(out, "{}", json!({"text": text, "entities": entities}))?;
    }
    Ok(out)
}
