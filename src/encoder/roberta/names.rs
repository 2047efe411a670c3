//! Every naming variant of a RoBERTa (or XLM-RoBERTa) tensor, mapped to the one name bertkit
//! uses: a bare `RobertaModel` has no `roberta.` prefix, and the MLM decoder's weight (tied to the
//! word embeddings) and bias (tied to `lm_head.bias`) are copies.

use crate::encoder::Mapped;

pub(crate) fn canonical(name: &str) -> Mapped {
    if name.ends_with("position_ids") || name == "lm_head.decoder.weight" || name == "lm_head.decoder.bias" {
        return Mapped::Skip;
    }
    if ["embeddings.", "encoder.", "pooler."].iter().any(|p| name.starts_with(p)) {
        return Mapped::Param(format!("roberta.{name}"));
    }
    Mapped::Param(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_to_one_name() {
        let param = |n: &str| match canonical(n) {
            Mapped::Param(p) => p,
            Mapped::Skip => panic!("{n} skipped"),
        };
        assert_eq!(param("embeddings.word_embeddings.weight"), "roberta.embeddings.word_embeddings.weight");
        assert_eq!(param("roberta.encoder.layer.0.output.dense.bias"), "roberta.encoder.layer.0.output.dense.bias");
        assert_eq!(param("lm_head.layer_norm.weight"), "lm_head.layer_norm.weight");
        assert_eq!(canonical("lm_head.decoder.bias"), Mapped::Skip);
        assert_eq!(canonical("roberta.embeddings.position_ids"), Mapped::Skip);
    }
}
