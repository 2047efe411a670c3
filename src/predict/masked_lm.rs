//! A loaded masked-language model: the held-out masked-token loss, accuracy and perplexity
//! that `pretrain` and `adapt` report, and `fill-mask`.

use std::collections::BTreeMap;

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::Evaluation;
use crate::data::corpus::TokenCache;
use crate::data::masking::Masker;
use crate::data::{Encoded, eval_batches};
use crate::distributed::Spread;
use crate::encoder::{ForwardOptions, Inputs};
use crate::pretrained::Pretrained;
use crate::task::{MaskedLm, MaskedTargets};
use crate::tokenizer::Tokenizer;

/// Evaluation masks come from this seed, so numbers compare across runs and models.
pub const EVAL_MASK_SEED: u64 = 1234;

/// A set of blocks: indices into a token cache.
pub struct Blocks<'a> {
    pub cache: &'a TokenCache,
    pub indices: Vec<usize>,
}

impl Blocks<'_> {
    /// Block `i` as `[CLS] tokens [SEP]`, and per position whether it continues a word.
    fn encoded(&self, tokenizer: &Tokenizer, i: usize) -> (Encoded, Vec<bool>) {
        let (body, words) = (self.cache.block(self.indices[i]), self.cache.continues(self.indices[i]));
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(tokenizer.cls_id);
        ids.extend_from_slice(body);
        ids.push(tokenizer.sep_id);
        let continues = std::iter::once(false).chain(words.iter().map(|&w| w == 1)).chain([false]).collect();
        (Encoded { type_ids: vec![0; ids.len()], ids }, continues)
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.indices.iter().map(|&i| self.cache.block(i).len() + 2).collect()
    }
}

/// A model with a masked-language-model head, loaded.
pub type MaskedLanguageModel = Pretrained<MaskedLm>;

impl MaskedLanguageModel {
    /// A batch of blocks, masked on the host: inputs and targets on the device, and the real
    /// tokens. Each block's masks are drawn from `seed` and the block alone (a stream of its
    /// own), so they do not depend on the batch it is in or the rank that computes it.
    pub(crate) fn masked_batch(
        &self,
        masker: &Masker,
        blocks: &Blocks,
        batch: &[usize],
        seed: u64,
    ) -> (Inputs, MaskedTargets, usize) {
        let (items, words): (Vec<Encoded>, Vec<Vec<bool>>) =
            batch.iter().map(|&i| blocks.encoded(&self.tokenizer, i)).unzip();
        let refs: Vec<&Encoded> = items.iter().collect();
        let mut host = self.collator().pad(&refs);
        // Word continuation per position of the padded batch (padding continues nothing).
        let mut continues = vec![false; host.ids.len()];
        for (r, row) in words.iter().enumerate() {
            continues[r * host.len..r * host.len + row.len()].copy_from_slice(row);
        }
        let labels = masker.mask_batch(&mut host, &continues, |r| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(blocks.indices[batch[r]] as u64);
            rng
        });
        let (rows, tokens) = (host.rows, host.tokens());
        (
            host.into_inputs().to_device(self.device),
            MaskedTargets::from_label_slice(&labels, rows).to_device(self.device),
            tokens,
        )
    }

    /// Masked-token loss, accuracy and perplexity on held-out blocks, masked with a fixed seed;
    /// spread over the ranks in the trainer.
    pub fn evaluate_blocks(
        &self,
        masker: &Masker,
        blocks: &Blocks,
        batch_size: usize,
        spread: Spread,
    ) -> Result<Evaluation> {
        let batches = eval_batches(&blocks.lengths(), batch_size);
        // Per batch: summed loss, correct predictions, masked tokens (zeros where another rank
        // computed), added up in batch order below whoever computed them.
        let sums = Tensor::zeros([batches.len() as i64, 3], (Kind::Double, Device::Cpu));
        let mine = spread.take(batches);
        let bar = crate::progress::items_bar(mine.iter().map(|(_, b)| b.len() as u64).sum(), "blocks");
        bar.set_message("evaluating");
        for (b, batch) in mine {
            let (inputs, masked, _) = self.masked_batch(masker, blocks, &batch, EVAL_MASK_SEED);
            let out = tch::no_grad(|| {
                self.autocast.run(|| self.model.forward_masked(&inputs, &masked, ForwardOptions::eval()))
            });
            let n = out.targets.numel() as i64;
            if n > 0 {
                let loss_sum = out.loss.to_kind(Kind::Double).double_value(&[]) * n as f64;
                let correct = out.logits.argmax(-1, false).eq_tensor(&out.targets).sum(Kind::Int64).int64_value(&[]);
                sums.get(b as i64).copy_(&Tensor::from_slice(&[loss_sum, correct as f64, n as f64]));
            }
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        let [loss_sum, correct, count] = spread.totals(&sums)?[..] else { unreachable!("three columns") };
        let loss = loss_sum / count.max(1.0);
        let accuracy = correct / count.max(1.0);
        let metrics = BTreeMap::from([
            ("eval_loss".to_string(), loss),
            ("perplexity".to_string(), loss.exp()),
            ("accuracy".to_string(), accuracy),
        ]);
        let summary = format!(
            "masked-token loss {loss:.4}  perplexity {:.2}  accuracy {accuracy:.4}  ({} masked tokens in {} blocks)",
            loss.exp(),
            count as i64,
            blocks.indices.len()
        );
        Ok(Evaluation {
            report: json!({"metrics": metrics, "masked_tokens": count as i64, "blocks": blocks.indices.len()}),
            metrics,
            summary,
        })
    }

    /// The `top_k` most likely tokens at each `[MASK]` of `text`, with probabilities.
    pub fn fill_mask(&self, text: &str, top_k: usize) -> Result<Vec<Vec<(String, f64)>>> {
        let enc = self.tokenizer.encode_batch(&[text], None, self.dims.max_positions as usize)?;
        let inputs = self.collator().collate_encodings(&enc).to_device(self.device);
        let logits = tch::no_grad(|| self.model.forward(&inputs, ForwardOptions::eval()));
        let mut out = Vec::new();
        for (pos, &id) in enc[0].get_ids().iter().enumerate() {
            if id != self.tokenizer.mask_id {
                continue;
            }
            let probs = logits.get(0).get(pos as i64).softmax(-1, Kind::Float);
            let (values, indices) = probs.topk(top_k.min(self.dims.vocab_size as usize) as i64, -1, true, true);
            let values = Vec::<f64>::try_from(values.to_kind(Kind::Double))?;
            let indices = Vec::<i64>::try_from(indices)?;
            out.push(
                indices
                    .iter()
                    .zip(values)
                    .map(|(&i, p)| (self.tokenizer.id_to_token(i as u32).unwrap_or_else(|| format!("[{i}]")), p))
                    .collect(),
            );
        }
        Ok(out)
    }
}
