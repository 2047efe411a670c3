//! Every naming variant of a ModernBERT tensor, mapped to the one name bertkit uses: a bare
//! `ModernBertModel` has no `model.` prefix, and the MLM decoder's weight is tied to the token
//! embeddings (`decoder.weight`, a copy).

use crate::encoder::Mapped;

pub(crate) fn canonical(name: &str) -> Mapped {
    if name == "decoder.weight" {
        return Mapped::Skip;
    }
    if ["embeddings.", "layers.", "final_norm."].iter().any(|p| name.starts_with(p)) {
        return Mapped::Param(format!("model.{name}"));
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
        assert_eq!(param("layers.0.attn.Wqkv.weight"), "model.layers.0.attn.Wqkv.weight");
        assert_eq!(param("model.layers.0.attn.Wqkv.weight"), "model.layers.0.attn.Wqkv.weight");
        assert_eq!(param("final_norm.weight"), "model.final_norm.weight");
        assert_eq!(param("head.dense.weight"), "head.dense.weight");
        assert_eq!(canonical("decoder.weight"), Mapped::Skip);
    }
}
