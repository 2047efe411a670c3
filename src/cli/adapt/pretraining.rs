//! The steps before fine-tuning: the domain corpus measured (`domain-fit`), the further
//! pretrainings (DAPT, TAPT, DAPT+TAPT) run and probed, and every model's perplexity on
//! general-domain text.

use super::*;

/// One further pretraining of the study: `name` (dapt, tapt, dapt+tapt), from the model
/// `from`, on `corpus`.
pub(super) struct Pretraining {
    pub(super) name: &'static str,
    pub(super) from: String,
    pub(super) corpus: Vec<PathBuf>,
    pub(super) output: PathBuf,
}

/// A pretraining done: how long it took, its probes, and the model that stands for it.
pub(super) struct Adapted {
    pub(super) pretraining: Pretraining,
    pub(super) seconds: f64,
    pub(super) probes: Option<Series>,
    pub(super) model: PathBuf,
}

/// DAPT on --corpus, TAPT on the task text, and DAPT+TAPT (TAPT from the DAPT model) when both.
pub(super) fn pretrainings(args: &Args, task_text: &Path) -> Vec<Pretraining> {
    let dir = args.output.join("pretrained");
    let task_text = vec![task_text.to_path_buf()];
    let dapt =
        Pretraining { name: "dapt", from: args.model.clone(), corpus: args.corpus.clone(), output: dir.join("dapt") };
    let tapt =
        Pretraining { name: "tapt", from: args.model.clone(), corpus: task_text.clone(), output: dir.join("tapt") };
    let both =
        Pretraining { name: "dapt+tapt", from: path(&dapt.output), corpus: task_text, output: dir.join("dapt-tapt") };
    match (args.corpus.is_empty(), args.tapt) {
        (false, false) => vec![dapt],
        (true, _) => vec![tapt],
        (false, true) => vec![dapt, tapt, both],
    }
}

/// The task's own training text for TAPT: each example's text as one paragraph (a tagged
/// sentence's words joined by spaces; for pairs, each distinct text of every text column:
/// a retrieval task's passages are most of its domain text); labels are never read.
pub(super) fn write_task_text(args: &Args, out: &Path) -> Result<()> {
    let texts: Vec<String> = if super::question_answering(args) {
        // The contexts, each once (CUAD's contracts), not the questions asked of them.
        let (data, _) = bertkit::data::question_answering::read_questions(&args.train, OnBadRow::Skip)?;
        data.contexts
    } else if is_conll(&args.train) || is_tagged_jsonl(&args.train) {
        let (sentences, _) = read_tagged(&args.train, TagColumn::Last, false, OnBadRow::Skip)?;
        sentences.into_iter().map(|s| s.words.join(" ")).collect()
    } else {
        let text_columns =
            std::iter::once(&args.text_column).chain(&args.text_pair_column).chain(&args.negative_columns);
        let (pairs, mut seen) = (args.text_pair_column.is_some(), std::collections::HashSet::new());
        let mut texts = Vec::new();
        for column in text_columns {
            let columns = Columns { text: column.clone(), pair: None, label: LabelSource::None };
            let examples = read_examples(&args.train, None, &columns, OnBadRow::Skip)?.examples;
            texts.extend(examples.into_iter().map(|e| e.text).filter(|t| !pairs || seen.insert(t.clone())));
        }
        texts
    };
    tracing::info!("TAPT corpus: {} texts of {} in {}", texts.len(), args.train.display(), out.display());
    atomic_write(out, texts.join("\n\n").as_bytes())
}

/// `domain-fit` of the domain corpus (the task text for TAPT alone) against the general-domain
/// text, before any training: whether adaptation is likely to pay.
pub(super) fn domain_fit(args: &Args, task_text: &Path, commands: &mut Commands) -> Result<Value> {
    let json = args.output.join("domain-fit.json");
    let mut v: Vec<String> = vec!["domain-fit".into(), "--model".into(), args.model.clone(), "--corpus".into()];
    match args.corpus.is_empty() {
        true => v.push(path(task_text)),
        false => v.extend(args.corpus.iter().map(|c| path(c))),
    }
    if !args.general_corpus.is_empty() {
        v.push("--reference".into());
        v.extend(args.general_corpus.iter().map(|c| path(c)));
    }
    v.extend(["--json".into(), path(&json)]);
    commands.run(v)?;
    read_json(&json)
}

/// Runs each pretraining of the plan (DAPT+TAPT from the model that stands for DAPT), probes
/// its checkpoints when asked, and picks the model that stands for it downstream.
pub(super) fn further_pretrain(args: &Args, plan: Vec<Pretraining>, commands: &mut Commands) -> Result<Vec<Adapted>> {
    let metric = probe_metric(args);
    let mut probed = BTreeMap::new();
    let mut adapted: Vec<Adapted> = Vec::new();
    for mut pretraining in plan {
        if let (true, Some(dapt)) = (pretraining.name == "dapt+tapt", adapted.first()) {
            pretraining.from = path(&dapt.model);
        }
        let seconds = commands.run(pretrain_command(args, &pretraining))?;
        let probes = match args.probe_every {
            Some(_) => Some(probes::probe_pretraining(args, &pretraining, commands, &mut probed)?),
            None => None,
        };
        let model = match args.adapted_checkpoint {
            AdaptedCheckpoint::Loss => pretraining.output.clone(),
            AdaptedCheckpoint::Probe => probes::chosen_model(&pretraining, probes.as_ref(), &metric),
        };
        adapted.push(Adapted { pretraining, seconds, probes, model });
    }
    Ok(adapted)
}

/// Each model's masked-token scores on `--general-corpus` (empty without it), by model name.
pub(super) fn general_domain_scores(
    args: &Args,
    adapted: &[Adapted],
    commands: &mut Commands,
) -> Result<serde_json::Map<String, Value>> {
    let mut scores = serde_json::Map::new();
    if args.general_corpus.is_empty() {
        return Ok(scores);
    }
    let dir = args.output.join("general");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let models = std::iter::once(("original", args.model.clone()))
        .chain(adapted.iter().map(|a| (a.pretraining.name, path(&a.model))));
    for (name, model) in models {
        let json = dir.join(format!("{}.json", name.replace('+', "-")));
        let mut v: Vec<String> = vec!["evaluate".into(), "--model".into(), model, "--corpus".into()];
        v.extend(args.general_corpus.iter().map(|c| path(c)));
        v.extend(["--max-len".into(), args.pretrain_max_len.to_string(), "--json".into(), path(&json)]);
        v.extend(placement_flags(args));
        commands.run(v)?;
        scores.insert(name.into(), read_json(&json)?["metrics"].clone());
    }
    Ok(scores)
}
