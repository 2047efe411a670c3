//! The study's report: `report.json` (every number, per seed) and `report.md` (the tables a
//! reader compares, the paired tests in words, the commands behind every number).

use serde_json::{Value, json};

use super::{Adapted, Args, Arm, path, probes, read_json};
use anyhow::Result;
use bertkit::fsutil::atomic_write;
use bertkit::metrics::{mean_sd, paired_t};

/// What the study measured besides pretraining and fine-tuning.
pub(super) struct Measured {
    /// Each model's masked-token scores on --general-corpus, by name (empty without it).
    pub forgetting: serde_json::Map<String, Value>,
    /// `domain-fit`'s report on the domain text.
    pub domain_fit: Value,
}

/// `report.json` and `report.md`: each pretraining's held-out masked-token scores before and
/// after, every model's downstream scores over the seeds, each adapted model's paired test
/// against the original, and the commands that made each number.
pub(super) fn write_report(
    args: &Args,
    adapted: &[Adapted],
    arms: &[Arm],
    chosen_by: &str,
    measured: &Measured,
    commands: &[String],
) -> Result<()> {
    let out = &args.output;
    let mut pretraining = serde_json::Map::new();
    let metric = super::probe_metric(args);
    for a in adapted {
        let p = &a.pretraining;
        let before = read_json(&p.output.join("eval_before.json"))?["metrics"].clone();
        let after = read_json(&p.output.join("eval_results.json"))?["metrics"].clone();
        let probes = a.probes.as_ref().map(|s| s.to_json(&metric));
        let probe_seconds: Option<f64> = a.probes.as_ref().map(|s| s.points.iter().map(|p| p.seconds).sum());
        pretraining.insert(
            p.name.into(),
            json!({"from": p.from, "corpus": p.corpus, "before": before, "after": after, "seconds": a.seconds,
                "probes": probes, "probe_seconds": probe_seconds, "fine_tuned_model": path(&a.model),
                "perplexity_by_step": probes::perplexities(&p.output)?}),
        );
    }
    if adapted.iter().any(|a| a.probes.is_some()) {
        probes::plot(adapted, &metric, &out.join("curves"))?;
    }
    let original = arms[0].values(chosen_by);
    let tests: serde_json::Map<String, Value> = arms[1..]
        .iter()
        .map(|arm| (arm.name.to_string(), json!(paired_t(&original, &arm.values(chosen_by)))))
        .collect();
    let eval_split = args.eval.is_none().then_some(args.eval_split);
    let report = json!({
        "model": args.model,
        "task": {"train": args.train, "eval": args.eval, "eval_split": eval_split, "test": super::test_set(args)},
        "checkpoint_metric": chosen_by,
        "reported_on": if super::test_set(args).is_some() { "test" } else { "selection" },
        "seeds": arms[0].runs.iter().map(|(seed, _)| seed).collect::<Vec<_>>(),
        "pretraining": pretraining,
        "domain_fit": measured.domain_fit,
        "general_domain": {"corpus": args.general_corpus, "scores": measured.forgetting},
        "downstream": arms.iter().map(|arm| (arm.name.to_string(), arm_json(arm))).collect::<serde_json::Map<_, _>>(),
        "comparison": {"metric": chosen_by, "paired_t": tests},
        "commands": commands,
    });
    atomic_write(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    let md = markdown(args, &report, arms, chosen_by, commands);
    atomic_write(&out.join("report.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}

/// One model's scores: per seed, and mean and sd of each metric (sd null with one seed).
fn arm_json(arm: &Arm) -> Value {
    let keys = arm.metric_names();
    let (mut mean, mut sd) = (serde_json::Map::new(), serde_json::Map::new());
    for key in keys {
        let (m, s) = mean_sd(&arm.values(&key));
        mean.insert(key.clone(), json!(m));
        sd.insert(key, json!(s));
    }
    let runs: Vec<Value> = arm.runs.iter().map(|(seed, metrics)| json!({"seed": seed, "metrics": metrics})).collect();
    json!({"mean": mean, "sd": sd, "runs": runs})
}

fn markdown(args: &Args, report: &Value, arms: &[Arm], chosen_by: &str, commands: &[String]) -> String {
    let selection = match &args.eval {
        Some(e) => format!("`{}`", e.display()),
        None => format!("{}% of `{}` held out", args.eval_split * 100.0, args.train.display()),
    };
    let reported = match super::test_set(args) {
        Some(t) => format!("the test set {t} (never used to choose)"),
        None => "**the selection set itself**: it chose the checkpoints, which flatters every model; pass `--test` for unbiased numbers".into(),
    };
    let seeds: Vec<String> = report["seeds"].as_array().into_iter().flatten().map(|s| s.to_string()).collect();
    let mut md = format!(
        "# Domain adaptation of {}\n\nTask: `{}`. Each fine-tune's checkpoint is chosen by **{chosen_by}** on {selection}. \
         The downstream scores below are on {reported}. Seeds: {}.\n\n",
        args.model,
        args.train.display(),
        seeds.join(", ")
    );
    md += &domain_fit_summary(&report["domain_fit"]);
    md += &pretraining_table(&report["pretraining"]);
    md += &probe_table(args, &report["pretraining"]);
    md += &forgetting_table(&report["general_domain"]);
    md += &downstream_table(arms, chosen_by);
    for arm in &arms[1..] {
        md += &verdict(arm.name, &report["comparison"]["paired_t"][arm.name], chosen_by);
    }
    md += "\n## Commands\n\nEvery number above comes from these, in this order:\n\n```\n";
    md += &commands.iter().map(|c| format!("$ {c}\n")).collect::<String>();
    md + "```\n"
}

/// Before training: how finely the tokenizer cuts the domain, its vocabulary overlap with the
/// general text, the verdict, and the words cut worst.
fn domain_fit_summary(fit: &Value) -> String {
    let line = |name: &str, f: &Value| {
        format!(
            "| {name} | {} | {:.3} | {:.1}% |\n",
            f["words"],
            f["tokens_per_word"].as_f64().unwrap_or(f64::NAN),
            100.0 * f["split_share"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let mut md = "## Domain fit (before training)\n\n| text | words | tokens per word | words cut into 2+ pieces |\n|---|---|---|---|\n"
        .to_string();
    md += &line("domain", &fit["domain"]);
    if !fit["reference_fragmentation"].is_null() {
        md += &line("general", &fit["reference_fragmentation"]);
        let overlap = 100.0 * fit["vocabulary_overlap"].as_f64().unwrap_or(f64::NAN);
        md += &format!("\nTop-{} vocabulary overlap with the general text: {overlap:.1}%.", fit["top"]);
    }
    let worst: Vec<String> = fit["worst_split"]
        .as_array()
        .into_iter()
        .flatten()
        .take(10)
        .map(|w| {
            let pieces: Vec<&str> = w["pieces"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
            format!("{} ({})", w["word"].as_str().unwrap_or(""), pieces.join(" "))
        })
        .collect();
    md += &format!(
        " {}.\n\nFrequent domain words cut worst: {}.\n\n",
        fit["verdict"].as_str().unwrap_or(""),
        worst.join(", ")
    );
    md
}

fn pretraining_table(pretraining: &Value) -> String {
    let mut md = "## Further pretraining (held-out masked-token prediction on its own corpus)\n\n\
                  | model | corpus | loss before | loss after | perplexity before | perplexity after |\n|---|---|---|---|---|---|\n"
        .to_string();
    for (name, p) in pretraining.as_object().into_iter().flatten() {
        let corpus: Vec<String> =
            p["corpus"].as_array().into_iter().flatten().map(|c| format!("`{}`", c.as_str().unwrap_or(""))).collect();
        let num = |side: &str, key: &str| p[side][key].as_f64().unwrap_or(f64::NAN);
        md += &format!(
            "| {name} | {} | {:.4} | {:.4} | {:.2} | {:.2} |\n",
            corpus.join(", "),
            num("before", "eval_loss"),
            num("after", "eval_loss"),
            num("before", "perplexity"),
            num("after", "perplexity")
        );
    }
    md + "\nA model published without an MLM head (such as all-MiniLM-L6-v2) starts from a freshly initialised head, so its \"before\" perplexity measures that head, not the encoder.\n"
}

/// Each pretraining's probed checkpoints: step, held-out perplexity, probe score, the best one,
/// and what the probes cost (nothing without --probe-every).
fn probe_table(args: &Args, pretraining: &Value) -> String {
    let Some(every) = args.probe_every else { return String::new() };
    let how = match args.probe {
        probes::ProbeKind::Linear => "a linear probe on frozen features",
        probes::ProbeKind::Finetune => "a short fine-tune",
    };
    let mut md = format!(
        "\n## Checkpoints scored by the task\n\nEvery {every} pretraining steps, {how} ({} training examples) \
         scored on the selection set, beside the held-out perplexity.\n\n![perplexity and probe score by step](curves.png)\n\n",
        args.probe_examples
    );
    let (mut pretrain_s, mut probe_s) = (0.0, 0.0);
    for (name, p) in pretraining.as_object().into_iter().flatten() {
        let metric = p["probes"]["metric"].as_str().unwrap_or("");
        let best = p["probes"]["best_step"].as_u64();
        md += &format!("**{name}** | step | perplexity | probe {metric} |\n|---|---|---|---|\n");
        let perplexity = |step: u64| {
            let pairs = p["perplexity_by_step"].as_array().cloned().unwrap_or_default();
            pairs.iter().find(|v| v[0].as_f64() == Some(step as f64)).and_then(|v| v[1].as_f64())
        };
        for point in p["probes"]["points"].as_array().into_iter().flatten() {
            let step = point["step"].as_u64().unwrap_or(0);
            let mark = if Some(step) == best { " (best)" } else { "" };
            let ppl = perplexity(step).map_or("-".into(), |v| format!("{v:.2}"));
            md +=
                &format!("| | {step}{mark} | {ppl} | {:.4} |\n", point["metrics"][metric].as_f64().unwrap_or(f64::NAN));
        }
        md += &format!("\nFine-tuned below: `{}`.\n\n", p["fine_tuned_model"].as_str().unwrap_or(""));
        pretrain_s += p["seconds"].as_f64().unwrap_or(0.0);
        probe_s += p["probe_seconds"].as_f64().unwrap_or(0.0);
    }
    md + &format!(
        "The probes took {probe_s:.0} s against {pretrain_s:.0} s of pretraining ({:.0}% more; a model probed once counts once).\n",
        100.0 * probe_s / pretrain_s.max(1e-9)
    )
}

/// Masked-token scores of every model on the general-domain text (nothing without it).
fn forgetting_table(general: &Value) -> String {
    let Some(scores) = general["scores"].as_object().filter(|s| !s.is_empty()) else { return String::new() };
    let corpus: Vec<String> =
        general["corpus"].as_array().into_iter().flatten().map(|c| format!("`{}`", c.as_str().unwrap_or(""))).collect();
    let mut md = format!(
        "\n## General-domain text (what adaptation costs elsewhere)\n\nMasked-token scores on {}, the same masks for every model.\n\n\
         | model | loss | perplexity | accuracy |\n|---|---|---|---|\n",
        corpus.join(", ")
    );
    for (name, m) in scores {
        let num = |key: &str| m[key].as_f64().unwrap_or(f64::NAN);
        md += &format!("| {name} | {:.4} | {:.2} | {:.4} |\n", num("eval_loss"), num("perplexity"), num("accuracy"));
    }
    md
}

/// The task's own metrics (the checkpoint metric first, the loss last), mean ± sd over seeds,
/// each adapted model's change against the original in brackets.
fn downstream_table(arms: &[Arm], chosen_by: &str) -> String {
    let names: Vec<&str> = arms.iter().map(|a| a.name).collect();
    let mut md = format!(
        "\n## Downstream task (same data, settings and seeds; a fresh head on every model)\n\n| | {} |\n|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    // A search reports how many queries it counted: a size, not a score.
    let mut keys: Vec<String> = arms[0].metric_names().into_iter().filter(|k| k != "queries").collect();
    keys.sort_by_key(|k| (k != chosen_by, k == "eval_loss"));
    for key in &keys {
        let base = mean_sd(&arms[0].values(key)).0;
        let cells: Vec<String> = arms
            .iter()
            .enumerate()
            .map(|(i, arm)| {
                let (m, s) = mean_sd(&arm.values(key));
                let spread = if s.is_nan() { String::new() } else { format!(" ± {s:.4}") };
                let change = if i == 0 { String::new() } else { format!(" ({:+.4})", m - base) };
                format!("{m:.4}{spread}{change}")
            })
            .collect();
        md += &format!("| {key} | {} |\n", cells.join(" | "));
    }
    md
}

/// What the paired test of `name` against the original says, in words.
fn verdict(name: &str, test: &Value, metric: &str) -> String {
    let Some(p) = test["p_value"].as_f64() else {
        if test.is_null() {
            return format!(
                "\n{name}: one seed, so no test of significance. Pass `--seeds 3` or more before concluding that it helps or hurts.\n"
            );
        }
        return format!("\n{name}: the same {metric} as the original on every seed.\n");
    };
    let (change, t, n) = (
        test["mean_difference"].as_f64().unwrap_or(0.0),
        test["t"].as_f64().unwrap_or(0.0),
        test["pairs"].as_u64().unwrap_or(0),
    );
    let better = (change > 0.0) == bertkit::train::TrainConfig::greater_is_better(metric);
    let conclusion = match p < 0.05 {
        true if better => "it helps (p < 0.05)",
        true => "it hurts (p < 0.05)",
        false => "the difference is within the noise between seeds (p >= 0.05)",
    };
    format!(
        "\n{name} against original, paired t-test over {n} seeds on {metric}: mean change {change:+.4}, t = {t:.2}, p = {p:.3}: {conclusion}.\n"
    )
}
