//! BERT's masked-language-model corruption, as transformers' DataCollatorForLanguageModeling
//! does it: each real (non-special, non-padding) token is chosen with probability 0.15; of the
//! chosen, 80% become `[MASK]`, 10% a random token, 10% stay; labels are the original ids at the
//! chosen positions and -100 elsewhere. Masking is redrawn every time a batch is seen.

use rand::Rng;

use super::batching::HostBatch;
use crate::task::IGNORE_INDEX;
use crate::tokenizer::Tokenizer;

pub struct Masker {
    pub probability: f64,
    pub whole_word: bool,
    mask_id: i64,
    vocab_size: usize,
    /// Per vocabulary id: never masked (`[CLS]`, `[SEP]`, `[PAD]`, ...).
    special: Vec<bool>,
}

impl Masker {
    pub fn new(tokenizer: &Tokenizer, probability: f64, whole_word: bool) -> Self {
        let vocab_size = tokenizer.vocab_size();
        let special = (0..vocab_size as u32).map(|id| tokenizer.is_special(id)).collect();
        Masker { probability, whole_word, mask_id: tokenizer.mask_id as i64, vocab_size, special }
    }

    /// Corrupts every row of a padded batch in place, row r with the draws of `rng_of_row(r)`;
    /// returns the labels, row-major. `continues` (row-major too) says which tokens continue the
    /// word before them.
    pub fn mask_batch<R: Rng>(
        &self,
        batch: &mut HostBatch,
        continues: &[bool],
        mut rng_of_row: impl FnMut(usize) -> R,
    ) -> Vec<i64> {
        let mut labels = Vec::with_capacity(batch.ids.len());
        for r in 0..batch.rows {
            let span = r * batch.len..(r + 1) * batch.len;
            let (ids, attention) = (&mut batch.ids[span.clone()], &batch.attention_mask[span.clone()]);
            labels.extend(self.mask_row(ids, attention, &continues[span], &mut rng_of_row(r)));
        }
        labels
    }

    /// Corrupts `ids` (one row of a batch, padding included) in place; returns the labels.
    /// `continues[i]`: token i belongs to the word of token i - 1 (whole-word masking's words,
    /// from the tokenizer's word ids).
    pub fn mask_row(&self, ids: &mut [i64], attention: &[i64], continues: &[bool], rng: &mut impl Rng) -> Vec<i64> {
        let maskable = |i: usize| attention[i] == 1 && !self.special[ids[i] as usize];
        let mut chosen = vec![false; ids.len()];
        if self.whole_word {
            // A word is a token and the pieces that continue it; it is chosen as a whole.
            let mut i = 0;
            while i < ids.len() {
                let mut end = i + 1;
                while end < ids.len() && maskable(end) && continues[end] {
                    end += 1;
                }
                if maskable(i) && rng.random_bool(self.probability) {
                    chosen[i..end].iter_mut().for_each(|c| *c = true);
                }
                i = end;
            }
        } else {
            for (i, c) in chosen.iter_mut().enumerate() {
                *c = maskable(i) && rng.random_bool(self.probability);
            }
        }
        let mut labels = vec![IGNORE_INDEX; ids.len()];
        for i in 0..ids.len() {
            if !chosen[i] {
                continue;
            }
            labels[i] = ids[i];
            if rng.random_bool(0.8) {
                ids[i] = self.mask_id;
            } else if rng.random_bool(0.5) {
                ids[i] = rng.random_range(0..self.vocab_size) as i64;
            }
        }
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tiny() -> Tokenizer {
        Tokenizer::from_dir(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert"))
            .unwrap()
    }

    #[test]
    fn proportions_match_bert() {
        let tok = tiny();
        let masker = Masker::new(&tok, 0.15, false);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (cls, sep, pad) = (tok.cls_id as i64, tok.sep_id as i64, tok.pad_id as i64);
        let (mut real, mut chosen, mut as_mask, mut random, mut kept) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for _ in 0..2000 {
            let mut ids: Vec<i64> = vec![cls];
            ids.extend((0..60).map(|i| 10 + (i * 7) % 300));
            ids.push(sep);
            ids.extend([pad; 10]);
            let attention: Vec<i64> = ids.iter().map(|&i| i64::from(i != pad)).collect();
            let original = ids.clone();
            let labels = masker.mask_row(&mut ids, &attention, &vec![false; attention.len()], &mut rng);
            assert_eq!(labels[0], IGNORE_INDEX, "[CLS] never masked");
            assert_eq!(labels[61], IGNORE_INDEX, "[SEP] never masked");
            assert!(labels[62..].iter().all(|&l| l == IGNORE_INDEX), "padding never masked");
            assert!(ids[62..].iter().all(|&i| i == pad));
            real += 60;
            for i in 0..ids.len() {
                if labels[i] == IGNORE_INDEX {
                    assert_eq!(ids[i], original[i], "unchosen tokens unchanged");
                    continue;
                }
                assert_eq!(labels[i], original[i]);
                chosen += 1;
                if ids[i] == tok.mask_id as i64 {
                    as_mask += 1;
                } else if ids[i] == original[i] {
                    kept += 1;
                } else {
                    random += 1;
                }
            }
        }
        let frac = |a: usize, b: usize| a as f64 / b as f64;
        assert!((frac(chosen, real) - 0.15).abs() < 0.005, "chosen {}", frac(chosen, real));
        assert!((frac(as_mask, chosen) - 0.8).abs() < 0.01, "[MASK] {}", frac(as_mask, chosen));
        // A random draw can hit the original token (1 in 355 here): it then counts as kept.
        assert!((frac(random, chosen) - 0.1).abs() < 0.01, "random {}", frac(random, chosen));
        assert!((frac(kept, chosen) - 0.1).abs() < 0.01, "kept {}", frac(kept, chosen));
    }

    #[test]
    fn whole_words_are_masked_together() {
        let tok = tiny();
        let masker = Masker::new(&tok, 0.3, true);
        let enc = tok.encode_batch(&["sublicense the premises unconscionably herein"], None, 64).unwrap();
        let base: Vec<i64> = enc[0].get_ids().iter().map(|&i| i as i64).collect();
        let words = enc[0].get_word_ids().to_vec();
        let continues: Vec<bool> =
            (0..words.len()).map(|i| i > 0 && words[i].is_some() && words[i] == words[i - 1]).collect();
        let attention = vec![1i64; base.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut saw_multi_piece_word = false;
        for _ in 0..500 {
            let mut ids = base.clone();
            let labels = masker.mask_row(&mut ids, &attention, &continues, &mut rng);
            for w in words.iter().flatten() {
                let pieces: Vec<usize> = (0..ids.len()).filter(|&i| words[i] == Some(*w)).collect();
                let masked: Vec<bool> = pieces.iter().map(|&i| labels[i] != IGNORE_INDEX).collect();
                assert!(masked.iter().all(|&m| m == masked[0]), "word {w} partly masked: {masked:?}");
                saw_multi_piece_word |= pieces.len() > 1 && masked[0];
            }
        }
        assert!(saw_multi_piece_word);
    }
}
