//! Texts longer than the model's window: truncated (transformers' default, counted), cut to
//! their head and tail (Sun et al. 2019: the first quarter of the window from the start, the
//! rest from the end), or split into overlapping windows whose outputs are pooled back into one
//! per text (`WindowPool`).

use anyhow::Result;

use super::batching::{Encoded, tokenize_examples};
use super::labelled::Example;
use crate::tokenizer::Tokenizer;

/// `--long-text`: what to do with a text longer than `--max-len` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LongText {
    /// Keep the first tokens.
    #[default]
    Truncate,
    /// Keep the first quarter of the window from the start and the rest from the end.
    HeadTail,
    /// Every token, in windows sharing `--stride` tokens; outputs pooled per text.
    Window,
}

/// `--window-pool`: how window logits become one per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WindowPool {
    #[default]
    Mean,
    Max,
}

/// Model inputs for texts: one or more per text (`doc_of` says whose), and how many texts
/// were longer than the window (truncated, shortened or split).
pub struct Pieces {
    pub items: Vec<Encoded>,
    pub doc_of: Vec<usize>,
    pub long: usize,
}

/// Tokenises examples the `mode` way.
pub fn tokenize_long(
    tok: &Tokenizer,
    examples: &[Example],
    max_len: usize,
    mode: LongText,
    stride: usize,
) -> Result<Pieces> {
    if mode == LongText::Truncate {
        let t = tokenize_examples(tok, examples, max_len)?;
        return Ok(Pieces { doc_of: (0..t.items.len()).collect(), items: t.items, long: t.truncated });
    }
    if examples.iter().any(|e| e.pair.is_some()) {
        crate::error::refuse!(
            "--long-text head-tail and window read one text per example, not text pairs (--text-pair-column)"
        );
    }
    let room = window_room(max_len);
    let mut pieces = Pieces { items: vec![], doc_of: vec![], long: 0 };
    for (chunk_start, chunk) in examples.chunks(2048).enumerate().map(|(i, c)| (i * 2048, c)) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        for (i, e) in tok.encode_plain(&texts)?.iter().enumerate() {
            let ids = e.get_ids();
            let parts: Vec<Vec<u32>> = match mode {
                _ if ids.len() <= room => vec![ids.to_vec()],
                LongText::HeadTail => {
                    let head = room / 4;
                    vec![[&ids[..head], &ids[ids.len() - (room - head)..]].concat()]
                }
                _ => window_ranges(ids.len(), max_len, stride).into_iter().map(|r| ids[r].to_vec()).collect(),
            };
            pieces.long += usize::from(ids.len() > room);
            for part in parts {
                let ids: Vec<u32> = [&[tok.cls_id][..], &part, &[tok.sep_id]].concat();
                pieces.items.push(Encoded { type_ids: vec![0; ids.len()], ids });
                pieces.doc_of.push(chunk_start + i);
            }
        }
    }
    Ok(pieces)
}

/// Tokens of text a window of `max_len` holds besides its `[CLS]` and `[SEP]`.
pub(crate) fn window_room(max_len: usize) -> usize {
    max_len.saturating_sub(2).max(2)
}

/// Token ranges of a text of `len` tokens in windows of `max_len`, consecutive ones sharing
/// `stride` tokens (at most half a window, so that windows always advance), the last ending
/// at `len`.
pub(crate) fn window_ranges(len: usize, max_len: usize, stride: usize) -> Vec<std::ops::Range<usize>> {
    let room = window_room(max_len);
    let step = room - stride.min(room / 2);
    (0..len.saturating_sub(room).div_ceil(step) + 1).map(|w| w * step..(w * step + room).min(len)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_with_the_stride_as_overlap() {
        // max-len 10 = room 8, stride 3: each window starts 5 after the last.
        assert_eq!(window_ranges(21, 10, 3), vec![0..8, 5..13, 10..18, 15..21]);
        assert_eq!(window_ranges(8, 10, 3), vec![0..8]);
        assert_eq!(window_ranges(9, 10, 3), vec![0..8, 5..9]);
        // A stride past half the window is kept to half.
        assert_eq!(window_ranges(12, 10, 100), vec![0..8, 4..12]);
    }
}
