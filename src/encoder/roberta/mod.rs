//! RoBERTa and XLM-RoBERTa: BERT's layers (`encoder::bert`) under `roberta.*`, with positions
//! counted from `padding_idx + 1`, one token type, no pooler under its task heads, a two-layer
//! classification head on `<s>` and an `lm_head` whose transform always uses GELU.
//! XLM-RoBERTa is the same network with another vocabulary (SentencePiece) and class names.

mod names;

use anyhow::{Result, bail};
use tch::nn::Path;

use super::bert::{BERT_LAYOUT, Bert, BertConfig, Positions};
use super::{Activation, ClassifierKind, Dims, Encoder, Family, HeadLayout};
use crate::encoder::ModelConfig;

const HEADS: HeadLayout = HeadLayout {
    classifier: "classifier",
    classifier_kind: ClassifierKind::FirstTokenDense { activation: Activation::Tanh },
    // RobertaForMultipleChoice reads the pooler, as BERT's does.
    multiple_choice: ClassifierKind::Pooled,
    mlm_dense: "lm_head.dense",
    mlm_layer_norm: "lm_head.layer_norm",
    mlm_bias: "lm_head.bias",
    mlm_activation: Some(Activation::Gelu),
    qa_outputs: "qa_outputs",
    prefixes: &["qa_outputs.", "lm_head.", "classifier.", "roberta.pooler."],
};

/// RoBERTa in the registry (`encoder::FAMILIES`).
pub const FAMILY: Family = Family {
    model_type: "roberta",
    selects: None,
    class_stem: "Roberta",
    dropout_keys: &["hidden_dropout_prob", "attention_probs_dropout_prob"],
    dims,
    build,
    canonical_name: names::canonical,
    heads: HEADS,
};

/// XLM-RoBERTa: RoBERTa's network and weight names, its own classes.
pub(crate) const XLM_FAMILY: Family = Family { model_type: "xlm-roberta", class_stem: "XLMRoberta", ..FAMILY };

/// RoBERTa's config.json keys are BERT's; only `pad_token_id` defaults differently (1).
fn config(config: &ModelConfig) -> Result<BertConfig> {
    let mut c = BertConfig::from_model_config(config)?;
    if !config.json().contains_key("pad_token_id") {
        c.pad_token_id = 1;
    }
    if c.max_position_embeddings <= c.pad_token_id + 1 {
        bail!(
            "max_position_embeddings {} leaves no position after padding_idx {}",
            c.max_position_embeddings,
            c.pad_token_id
        );
    }
    Ok(c)
}

/// Positions start after `padding_idx`, so a sequence may be `max_position_embeddings -
/// padding_idx - 1` tokens long (512 for roberta-base's 514).
fn dims(model: &ModelConfig) -> Result<Dims> {
    let c = config(model)?;
    Ok(Dims { max_positions: c.max_position_embeddings - c.pad_token_id - 1, ..c.dims() })
}

fn build(root: &Path, model: &ModelConfig, with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let c = config(model)?;
    let positions = Positions::AfterPadding { padding_idx: c.pad_token_id };
    Ok(Box::new(Bert::new(root.sub("roberta"), &c, with_pooler, positions, &BERT_LAYOUT)))
}
