//! Every Hugging Face naming variant of a BERT tensor, mapped to the one name bertkit uses.
//!
//! Checkpoints in the wild differ in small ways: a bare `BertModel` has no `bert.` prefix,
//! old TF-converted ones call LayerNorm parameters `gamma`/`beta`, some store the MLM bias as
//! `cls.predictions.decoder.bias`, and most carry the `position_ids` buffer. The canonical name is
//! the one `BertFor*` models use in transformers today.

use crate::encoder::Mapped;

pub(crate) fn canonical(name: &str) -> Mapped {
    if name.ends_with("position_ids") || name == "cls.predictions.decoder.weight" {
        // position_ids is arange(max_positions); the decoder weight is tied to the embeddings.
        return Mapped::Skip;
    }
    let mut name = name.to_string();
    for (old, new) in [("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias")] {
        if let Some(stem) = name.strip_suffix(old) {
            name = format!("{stem}{new}");
        }
    }
    if ["embeddings.", "encoder.", "pooler."].iter().any(|p| name.starts_with(p)) {
        name = format!("bert.{name}");
    }
    if name == "cls.predictions.decoder.bias" {
        name = "cls.predictions.bias".into();
    }
    Mapped::Param(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str) -> String {
        match canonical(name) {
            Mapped::Param(n) => n,
            Mapped::Skip => panic!("{name} skipped"),
        }
    }

    #[test]
    fn variants_map_to_one_name() {
        assert_eq!(param("embeddings.word_embeddings.weight"), "bert.embeddings.word_embeddings.weight");
        assert_eq!(param("bert.embeddings.word_embeddings.weight"), "bert.embeddings.word_embeddings.weight");
        assert_eq!(
            param("encoder.layer.3.attention.output.LayerNorm.gamma"),
            "bert.encoder.layer.3.attention.output.LayerNorm.weight"
        );
        assert_eq!(param("bert.embeddings.LayerNorm.beta"), "bert.embeddings.LayerNorm.bias");
        assert_eq!(param("pooler.dense.bias"), "bert.pooler.dense.bias");
        assert_eq!(param("cls.predictions.decoder.bias"), "cls.predictions.bias");
        assert_eq!(param("classifier.weight"), "classifier.weight");
        assert_eq!(canonical("embeddings.position_ids"), Mapped::Skip);
        assert_eq!(canonical("cls.predictions.decoder.weight"), Mapped::Skip);
    }
}
