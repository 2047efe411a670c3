//! What a run trains on besides its hyper-parameters, as one SHA-256: the training examples as
//! the model sees them (token ids, labels) and the task's own settings (loss weights, masking).
//! Every checkpoint saves it and a run resumes only on the same one, so a changed data file,
//! `--max-len`, `--label-all-tokens`, `--class-weights` or masking rate is an error on resume,
//! not a silently different run.

use sha2::{Digest, Sha256};

use crate::data::Encoded;

pub(crate) struct Fingerprint(Sha256);

impl Fingerprint {
    /// `task` names the objective, so two tasks never share a fingerprint.
    pub fn new(task: &str) -> Self {
        let mut h = Sha256::new();
        h.update(task.as_bytes());
        Fingerprint(h)
    }

    /// Numbers, length first (so that `[1, 2] [3]` and `[1] [2, 3]` differ).
    pub fn ints(&mut self, values: impl ExactSizeIterator<Item = i64>) -> &mut Self {
        self.0.update((values.len() as u64).to_le_bytes());
        for v in values {
            self.0.update(v.to_le_bytes());
        }
        self
    }

    pub fn floats(&mut self, values: &[f32]) -> &mut Self {
        self.0.update((values.len() as u64).to_le_bytes());
        for v in values {
            self.0.update(v.to_le_bytes());
        }
        self
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.ints(std::iter::once(text.len() as i64));
        self.0.update(text.as_bytes());
        self
    }

    /// Token and segment ids of every item, in order.
    pub fn encoded<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a Encoded>) -> &mut Self {
        self.ints(std::iter::once(items.len() as i64));
        for e in items {
            self.ints(e.ids.iter().map(|&i| i as i64));
            self.ints(e.type_ids.iter().map(|&t| t as i64));
        }
        self
    }

    pub fn finish(self) -> String {
        self.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_counts_and_boundaries_matter() {
        let of = |task: &str, a: &[i64], b: &[i64]| {
            let mut f = Fingerprint::new(task);
            f.ints(a.iter().copied()).ints(b.iter().copied());
            f.finish()
        };
        let base = of("classification", &[1, 2], &[3]);
        assert_eq!(base, of("classification", &[1, 2], &[3]));
        assert_ne!(base, of("classification", &[1], &[2, 3]));
        assert_ne!(base, of("regression", &[1, 2], &[3]));
        assert_ne!(base, of("classification", &[1, 2], &[4]));
    }
}
