//! Every naming variant of a DistilBERT tensor, mapped to the one name bertkit uses: a bare
//! `DistilBertModel` has no `distilbert.` prefix, and the MLM decoder's weight
//! (`vocab_projector.weight`) is tied to the word embeddings.

use crate::encoder::Mapped;

pub(crate) fn canonical(name: &str) -> Mapped {
    if name.ends_with("position_ids") || name == "vocab_projector.weight" {
        return Mapped::Skip;
    }
    if ["embeddings.", "transformer."].iter().any(|p| name.starts_with(p)) {
        return Mapped::Param(format!("distilbert.{name}"));
    }
    Mapped::Param(name.to_string())
}
