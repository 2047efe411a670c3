//! The classes of a task and their ids.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result, bail};

use super::{Example, Label};

/// The classes of a task and their ids, as `id2label`/`label2id` hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, i64>,
}

impl LabelSet {
    pub fn new(names: Vec<String>) -> Self {
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i as i64)).collect();
        LabelSet { names, index }
    }

    /// The labels seen in training data (every name of multi-label sets): numeric order when
    /// all are integers ("0" < "2" < "10"), else sorted as text, as transformers' example
    /// scripts do.
    pub fn from_examples(examples: &[Example]) -> Self {
        let set: BTreeSet<&str> = examples
            .iter()
            .flat_map(|e| match &e.label {
                Some(Label::One(l)) => std::slice::from_ref(l),
                Some(Label::Many(names)) => names.as_slice(),
                None => &[],
            })
            .map(String::as_str)
            .collect();
        let mut names: Vec<String> = set.into_iter().map(String::from).collect();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap());
        }
        LabelSet::new(names)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn get(&self, label: &str) -> Option<i64> {
        self.index.get(label).copied()
    }

    /// Class ids of labelled examples; a label outside the set is an error naming the row.
    pub fn ids(&self, examples: &[Example], role: &str) -> Result<Vec<i64>> {
        examples
            .iter()
            .map(|e| match &e.label {
                Some(Label::One(label)) => self.known(label, e, role),
                Some(Label::Many(names)) => bail!(
                    "{}: {} labels where one is expected ({}); pass --task multi-label",
                    e.at,
                    names.len(),
                    names.join(", ")
                ),
                None => bail!("{}: no label", e.at),
            })
            .collect()
    }

    /// Multi-label targets, `[examples][labels]` 0/1 rows; a single label is a set of one.
    pub fn multi_hot(&self, examples: &[Example], role: &str) -> Result<Vec<Vec<f32>>> {
        examples
            .iter()
            .map(|e| {
                let names = match &e.label {
                    Some(Label::One(l)) => std::slice::from_ref(l),
                    Some(Label::Many(names)) => names.as_slice(),
                    None => bail!("{}: no label", e.at),
                };
                let mut row = vec![0.0; self.len()];
                for name in names {
                    row[self.known(name, e, role)? as usize] = 1.0;
                }
                Ok(row)
            })
            .collect()
    }

    fn known(&self, label: &str, e: &Example, role: &str) -> Result<i64> {
        self.get(label).with_context(|| {
            format!("{}: label {label:?} is not among the {role} labels ({})", e.at, self.names.join(", "))
        })
    }
}
