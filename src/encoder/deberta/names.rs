//! Every naming variant of a DeBERTa-v2/v3 tensor, mapped to the one name bertkit uses: a bare
//! `DebertaV2Model` has no `deberta.` prefix, the legacy MLM decoder is tied to the word
//! embeddings (weight) and to `cls.predictions.bias` (bias), and `position_ids` is a buffer.

use crate::encoder::Mapped;

pub(crate) fn canonical(name: &str) -> Mapped {
    if name.ends_with("position_ids") || name == "cls.predictions.decoder.weight" {
        return Mapped::Skip;
    }
    if name == "cls.predictions.decoder.bias" {
        return Mapped::Param("cls.predictions.bias".into());
    }
    if ["embeddings.", "encoder."].iter().any(|p| name.starts_with(p)) {
        return Mapped::Param(format!("deberta.{name}"));
    }
    Mapped::Param(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_headed_checkpoints_map_to_one_name() {
        let param = |n: &str| match canonical(n) {
            Mapped::Param(p) => p,
            Mapped::Skip => panic!("{n} skipped"),
        };
        assert_eq!(param("encoder.rel_embeddings.weight"), "deberta.encoder.rel_embeddings.weight");
        assert_eq!(param("deberta.encoder.rel_embeddings.weight"), "deberta.encoder.rel_embeddings.weight");
        assert_eq!(param("embeddings.word_embeddings.weight"), "deberta.embeddings.word_embeddings.weight");
        assert_eq!(param("cls.predictions.decoder.bias"), "cls.predictions.bias");
        assert_eq!(param("pooler.dense.weight"), "pooler.dense.weight");
        assert_eq!(canonical("cls.predictions.decoder.weight"), Mapped::Skip);
        assert_eq!(canonical("deberta.embeddings.position_ids"), Mapped::Skip);
    }
}
