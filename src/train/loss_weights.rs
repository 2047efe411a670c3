//! Loss weights for imbalanced labels: per-class weights of the cross-entropy
//! (`--class-weights`) and per-label positive weights of the multi-label BCE (`--pos-weight`),
//! either `balanced` from the training labels or read from a JSON file {label: weight}.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use crate::data::{LabelSet, Targets};
use crate::task::TaskKind;

#[derive(Debug, Clone, PartialEq)]
pub enum WeightSpec {
    Balanced,
    File(PathBuf),
}

impl FromStr for WeightSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "balanced" => Ok(WeightSpec::Balanced),
            "" => Err("expected `balanced` or a JSON file".into()),
            path if PathBuf::from(path).is_file() => Ok(WeightSpec::File(path.into())),
            path => Err(format!("{path}: no such file (expected `balanced` or a JSON file {{label: weight}})")),
        }
    }
}

/// The weights the flags ask for, in label order; a flag that does not fit the task is an error.
pub(crate) fn loss_weights(
    kind: TaskKind,
    class_weights: Option<&WeightSpec>,
    pos_weight: Option<&WeightSpec>,
    targets: &Targets,
    labels: &LabelSet,
) -> Result<Option<Vec<f32>>> {
    match (kind, class_weights, pos_weight, targets) {
        (_, None, None, _) => Ok(None),
        (TaskKind::Classification, Some(spec), None, Targets::Classes(ids)) => {
            let mut counts = vec![0usize; labels.len()];
            ids.iter().for_each(|&c| counts[c as usize] += 1);
            let n = ids.len() as f32;
            let balanced = counts.iter().map(|&c| if c == 0 { 1.0 } else { n / (labels.len() * c) as f32 }).collect();
            resolve(spec, balanced, labels, "--class-weights").map(Some)
        }
        (TaskKind::MultiLabel, None, Some(spec), Targets::Sets(rows)) => {
            let balanced = (0..labels.len())
                .map(|c| {
                    let positives = rows.iter().filter(|r| r[c] > 0.5).count();
                    if positives == 0 { 1.0 } else { (rows.len() - positives) as f32 / positives as f32 }
                })
                .collect();
            resolve(spec, balanced, labels, "--pos-weight").map(Some)
        }
        (_, Some(_), _, _) => {
            crate::error::refuse!("--class-weights applies to --task classification, not {}", kind.name())
        }
        (_, _, Some(_), _) => crate::error::refuse!("--pos-weight applies to --task multi-label, not {}", kind.name()),
    }
}

/// `balanced` as computed, or the file's weight for every label.
fn resolve(spec: &WeightSpec, balanced: Vec<f32>, labels: &LabelSet, flag: &str) -> Result<Vec<f32>> {
    let path = match spec {
        WeightSpec::Balanced => return Ok(balanced),
        WeightSpec::File(path) => path,
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag}: reading {}", path.display()))?;
    let map: BTreeMap<String, f64> = serde_json::from_str(&text)
        .with_context(|| format!("{flag}: {}: expected a JSON object {{label: weight}}", path.display()))?;
    if let Some(unknown) = map.keys().find(|k| labels.get(k).is_none()) {
        bail!("{flag}: {}: label {unknown:?} is not among the labels ({})", path.display(), labels.names().join(", "));
    }
    labels
        .names()
        .iter()
        .map(|name| match map.get(name) {
            Some(&w) if w.is_finite() && w > 0.0 => Ok(w as f32),
            Some(w) => bail!("{flag}: {}: weight of {name:?} is {w}, must be a positive number", path.display()),
            None => bail!("{flag}: {}: no weight for label {name:?}", path.display()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_as_scikit_learn_and_pos_weight_as_ratio() {
        let labels = LabelSet::new(vec!["a".into(), "b".into()]);
        // compute_class_weight("balanced", classes=[0,1], y=[0,0,0,1]) = [4/6, 4/2]
        let w = loss_weights(
            TaskKind::Classification,
            Some(&WeightSpec::Balanced),
            None,
            &Targets::Classes(vec![0, 0, 0, 1]),
            &labels,
        );
        assert_eq!(w.unwrap().unwrap(), vec![4.0 / 6.0, 2.0]);
        let sets = Targets::Sets(vec![vec![1.0, 0.0], vec![0.0, 0.0], vec![1.0, 1.0], vec![0.0, 0.0]]);
        let w = loss_weights(TaskKind::MultiLabel, None, Some(&WeightSpec::Balanced), &sets, &labels);
        assert_eq!(w.unwrap().unwrap(), vec![1.0, 3.0]);
        let wrong =
            loss_weights(TaskKind::Regression, Some(&WeightSpec::Balanced), None, &Targets::Scores(vec![1.0]), &labels);
        assert!(wrong.unwrap_err().to_string().contains("--class-weights applies to --task classification"));
    }
}
