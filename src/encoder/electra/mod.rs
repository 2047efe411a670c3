//! ELECTRA discriminators (and generators) as encoders: BERT's layers under `electra.*`, with
//! embeddings of their own width (`embedding_size`) projected up to the layers'
//! (`embeddings_project`) when the two differ, no pooler, a GELU classification head on the
//! first token, and an MLM head shaped as ElectraForMaskedLM's (`generator_predictions` into the
//! embeddings' width, then `generator_lm_head` tied to the word embeddings).

use anyhow::Result;
use tch::nn::Path;

use super::bert::{BERT_LAYOUT, Bert, BertConfig, Positions};
use super::{Activation, ClassifierKind, Encoder, Family, HeadLayout, Mapped};
use crate::encoder::ModelConfig;

/// ELECTRA in the registry (`encoder::FAMILIES`).
pub const FAMILY: Family = Family {
    model_type: "electra",
    selects: None,
    class_stem: "Electra",
    dropout_keys: &["hidden_dropout_prob", "attention_probs_dropout_prob"],
    dims: |config| Ok(BertConfig::from_model_config(config)?.dims()),
    build,
    canonical_name,
    heads: HeadLayout {
        classifier: "classifier",
        classifier_kind: ClassifierKind::FirstTokenDense { activation: Activation::Gelu },
        multiple_choice: ClassifierKind::Summary { dense: "sequence_summary.summary" },
        mlm_dense: "generator_predictions.dense",
        mlm_layer_norm: "generator_predictions.LayerNorm",
        mlm_bias: "generator_lm_head.bias",
        mlm_activation: Some(Activation::Gelu),
        // discriminator_predictions: the replaced-token-detection head of ElectraForPreTraining.
        qa_outputs: "qa_outputs",
        prefixes: &[
            "qa_outputs.",
            "generator_predictions.",
            "generator_lm_head.",
            "classifier.",
            "sequence_summary.",
            "discriminator_predictions.",
        ],
    },
};

fn build(root: &Path, config: &ModelConfig, _with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let c = BertConfig::from_model_config(config)?;
    // ELECTRA has no pooler: `embed --pooling pooler` says so.
    Ok(Box::new(Bert::new(root.sub("electra"), &c, false, Positions::Absolute, &BERT_LAYOUT)))
}

/// A bare `ElectraModel` has no `electra.` prefix; the generator's decoder weight is tied to the
/// word embeddings.
fn canonical_name(name: &str) -> Mapped {
    if name.ends_with("position_ids") || name == "generator_lm_head.weight" {
        return Mapped::Skip;
    }
    if ["embeddings.", "embeddings_project.", "encoder."].iter().any(|p| name.starts_with(p)) {
        return Mapped::Param(format!("electra.{name}"));
    }
    Mapped::Param(name.to_string())
}
