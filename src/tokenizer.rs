//! The model's tokenizer, from `tokenizer.json` or, failing that, `vocab.txt`, through the
//! `tokenizers` crate: the same Rust code that backs transformers' fast tokenizers, so ids,
//! masks and offsets are identical to Python's. The special tokens' roles (`[CLS]` or `<s>`,
//! `[PAD]` or `<pad>`, ...) come from the tokenizer's files, as transformers reads them.
//! Where transformers does not apply `tokenizer.json` as it is (XLM-RoBERTa's class builds its
//! own pipeline around the file's vocabulary), neither does bertkit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::{BertNormalizer, NormalizerWrapper};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, Encoding, Tokenizer as HfTokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

#[derive(Clone)]
pub struct Tokenizer {
    inner: HfTokenizer,
    pub pad_id: u32,
    /// The token a sequence starts with: `[CLS]` (BERT), `<s>` (RoBERTa).
    pub cls_id: u32,
    /// The token that ends a segment: `[SEP]` (BERT), `</s>` (RoBERTa).
    pub sep_id: u32,
    pub mask_id: u32,
    pub unk_id: u32,
    /// Every special token (those above and any other the tokenizer marks special), sorted:
    /// never masked for MLM.
    special_ids: Vec<u32>,
    /// Whether words given one by one are tokenised as space-preceded (byte-level BPE).
    words_after_space: bool,
    /// Copies of `inner` set to truncate, one per length asked for, made once: setting up a
    /// copy clones the vocabulary (4.6 ms for BERT's), ten times the cost of encoding a review,
    /// which a server encoding one request at a time paid on every request.
    truncating: Arc<Mutex<Vec<Truncating>>>,
}

/// A copy of the tokenizer that truncates to this many tokens.
type Truncating = (usize, Arc<HfTokenizer>);

impl Tokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let xlm_roberta = xlm_roberta_class(dir);
        let mut inner = if json.exists() {
            let mut file = HfTokenizer::from_file(&json).map_err(|e| anyhow!("{}: {e}", json.display()))?;
            if let Some(add_prefix_space) = xlm_roberta {
                as_xlm_roberta(&mut file, add_prefix_space).with_context(|| json.display().to_string())?;
            }
            file
        } else if vocab.exists() {
            from_vocab(&vocab, lowercase_setting(dir))?
        } else {
            bail!("{}: no tokenizer.json or vocab.txt", dir.display());
        };
        // Padding is the collator's job (per batch); truncation is set per call.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
        let roles = special_tokens(dir);
        let id = |role: &str, default: &str| {
            let token = roles.get(role).map_or(default, String::as_str);
            inner.token_to_id(token).with_context(|| format!("{}: tokenizer has no {role} {token}", dir.display()))
        };
        // Roles the files leave out are the class's defaults: BERT's, or XLM-RoBERTa's.
        let [pad, cls, sep, mask, unk] = match xlm_roberta {
            Some(_) => ["<pad>", "<s>", "</s>", "<mask>", "<unk>"],
            None => ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"],
        };
        let (pad_id, cls_id, sep_id) = (id("pad_token", pad)?, id("cls_token", cls)?, id("sep_token", sep)?);
        let (mask_id, unk_id) = (id("mask_token", mask)?, id("unk_token", unk)?);
        let mut special_ids: Vec<u32> = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(&id, _)| id)
            .chain([pad_id, cls_id, sep_id, mask_id, unk_id])
            .collect();
        special_ids.sort_unstable();
        special_ids.dedup();
        let words_after_space = !generic_class(dir);
        let truncating = Arc::default();
        Ok(Tokenizer { inner, pad_id, cls_id, sep_id, mask_id, unk_id, special_ids, words_after_space, truncating })
    }

    /// Vocabulary size including added tokens: every id the tokenizer can produce is below it.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// An embedding matrix smaller than the vocabulary would index out of range at run time.
    pub fn check_fits(&self, vocab_size: i64, model: &Path) -> Result<()> {
        if self.vocab_size() as i64 > vocab_size {
            bail!(
                "{}: the tokenizer has {} tokens but the model's embeddings only {} (tokenizer and weights do not belong together)",
                model.display(),
                self.vocab_size(),
                vocab_size
            );
        }
        Ok(())
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes texts (or text pairs) with the model's template (`[CLS] a [SEP] (b [SEP])` for
    /// BERT, `<s> a </s></s> b </s>` for RoBERTa), truncated to `max_len`
    /// tokens the way transformers' `truncation=True` does (longest first). Offsets are in
    /// characters, as Python reports them.
    pub fn encode_batch(&self, texts: &[&str], pairs: Option<&[&str]>, max_len: usize) -> Result<Vec<Encoding>> {
        encode_with(&*self.truncating_to(max_len)?, texts, pairs)
    }

    /// `encode_batch` without truncation: every token of every text, with the template.
    pub fn encode_batch_whole(&self, texts: &[&str], pairs: Option<&[&str]>) -> Result<Vec<Encoding>> {
        encode_with(&self.inner, texts, pairs)
    }

    /// Whether `other` turns every text into the same ids: the same tokenizer (vocabulary,
    /// normaliser, template, added tokens) and the same special tokens.
    pub fn reads_like(&self, other: &Tokenizer) -> bool {
        let roles = |t: &Tokenizer| (t.pad_id, t.cls_id, t.sep_id, t.mask_id, t.unk_id, t.words_after_space);
        roles(self) == roles(other)
            && self.special_ids == other.special_ids
            && matches!((self.inner.to_string(false), other.inner.to_string(false)), (Ok(a), Ok(b)) if a == b)
    }

    /// `inner` truncating to `max_len` tokens (special tokens included).
    fn truncating_to(&self, max_len: usize) -> Result<Arc<HfTokenizer>> {
        let mut made = self.truncating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, tok)) = made.iter().find(|(len, _)| *len == max_len) {
            return Ok(tok.clone());
        }
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| anyhow!("{e}"))?;
        let tok = Arc::new(tok);
        made.push((max_len, tok.clone()));
        Ok(tok)
    }

    /// Encodes texts split into words (CoNLL tokens) without special tokens and without
    /// truncation, so the caller can window them; `get_word_ids` maps tokens to words. A
    /// RoBERTa-style byte-level BPE tokenizer marks each word as space-preceded, as transformers
    /// requires (`add_prefix_space=True`) for words given one by one; a generic fast tokenizer
    /// (ModernBERT's) takes each word as it stands, as transformers does.
    pub fn encode_words(&self, sentences: &[Vec<String>]) -> Result<Vec<Encoding>> {
        let mut tok = self.inner.clone();
        if let (true, Some(PreTokenizerWrapper::ByteLevel(b))) = (self.words_after_space, tok.get_pre_tokenizer()) {
            let b = (*b).add_prefix_space(true);
            tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(b)));
        }
        let inputs: Vec<tokenizers::EncodeInput> =
            sentences.iter().map(|words| tokenizers::InputSequence::from(words.as_slice()).into()).collect();
        tok.encode_batch_char_offsets(inputs, false).map_err(|e| anyhow!("tokenizing: {e}"))
    }

    /// Encodes raw texts without special tokens or truncation (for windowing); word ids are the
    /// pre-tokenizer's words and offsets are characters in the text.
    pub fn encode_plain(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        let inputs: Vec<tokenizers::EncodeInput> = texts.iter().map(|&t| t.into()).collect();
        self.inner.encode_batch_char_offsets(inputs, false).map_err(|e| anyhow!("tokenizing: {e}"))
    }

    /// Tokens the template adds around a pair (`[CLS] a [SEP] b [SEP]`: 3; RoBERTa's: 4).
    pub fn pair_special_tokens(&self) -> usize {
        use tokenizers::PostProcessor;
        self.inner.get_post_processor().map_or(0, |p| p.added_tokens(true))
    }

    /// A question (from `encode_plain`) and a piece of a context (its tokens' ids and character
    /// offsets, from `encode_plain` of the whole context) as one pair with the model's template:
    /// what truncating the pair to that piece gives, without encoding the context again.
    pub fn pair_window(&self, question: &Encoding, ids: &[u32], offsets: &[(usize, usize)]) -> Result<Encoding> {
        let piece = ids.iter().zip(offsets).map(|(&id, &at)| tokenizers::Token::new(id, String::new(), at)).collect();
        let piece = Encoding::from_tokens(piece, 0);
        self.inner.post_process(question.clone(), Some(piece), true).map_err(|e| anyhow!("tokenizing a pair: {e}"))
    }

    /// The text as the tokenizer's normalizer leaves it (lower-cased and accents stripped by an
    /// uncased BERT's), which is the form a vocabulary entry must have to match.
    pub fn normalized(&self, text: &str) -> Result<String> {
        use tokenizers::Normalizer;
        let mut n = tokenizers::NormalizedString::from(text);
        if let Some(normalizer) = self.inner.get_normalizer() {
            normalizer.normalize(&mut n).map_err(|e| anyhow!("normalising {text:?}: {e}"))?;
        }
        Ok(n.get().to_string())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow!("{e}"))
    }
}

/// Texts (or text pairs) through `tok`, offsets in characters.
fn encode_with(tok: &HfTokenizer, texts: &[&str], pairs: Option<&[&str]>) -> Result<Vec<Encoding>> {
    let inputs: Vec<tokenizers::EncodeInput> = match pairs {
        None => texts.iter().map(|&t| t.into()).collect(),
        Some(pairs) => {
            if pairs.len() != texts.len() {
                bail!("{} texts but {} pairs", texts.len(), pairs.len());
            }
            texts.iter().zip(pairs).map(|(&a, &b)| (a, b).into()).collect()
        }
    };
    tok.encode_batch_char_offsets(inputs, true).map_err(|e| anyhow!("tokenizing: {e}"))
}

/// Role (`cls_token`, ...) -> token text, from special_tokens_map.json, then tokenizer_config.json
/// (transformers writes either a string or an AddedToken object with its `content`).
fn special_tokens(dir: &Path) -> std::collections::HashMap<String, String> {
    let mut roles = std::collections::HashMap::new();
    for file in ["tokenizer_config.json", "special_tokens_map.json"] {
        let Some(json) = std::fs::read_to_string(dir.join(file)).ok().and_then(|t| serde_json::from_str(&t).ok())
        else {
            continue;
        };
        let json: serde_json::Value = json;
        for role in ["pad_token", "cls_token", "sep_token", "mask_token", "unk_token"] {
            let token = json[role].as_str().or_else(|| json[role]["content"].as_str());
            if let Some(token) = token {
                roles.insert(role.to_string(), token.to_string());
            }
        }
    }
    roles
}

/// Whether tokenizer_config.json names transformers' generic fast tokenizer, which applies
/// tokenizer.json as it is (no `add_prefix_space` of its own).
fn generic_class(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["tokenizer_class"].as_str().map(|c| ["PreTrainedTokenizerFast", "TokenizersBackend"].contains(&c))
        })
        .unwrap_or(false)
}

/// Whether transformers loads this directory's tokenizer as `XLMRobertaTokenizer` (named in
/// tokenizer_config.json, or implied by an xlm-roberta config without one), and then its
/// `add_prefix_space` (true unless the file says otherwise).
fn xlm_roberta_class(dir: &Path) -> Option<bool> {
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    };
    let config = read("tokenizer_config.json").unwrap_or_default();
    let class = config["tokenizer_class"].as_str();
    let model_type = || read("config.json").and_then(|c| c["model_type"].as_str().map(str::to_string));
    let xlm = match class {
        Some(class) => ["XLMRobertaTokenizer", "XLMRobertaTokenizerFast"].contains(&class),
        None => model_type().as_deref() == Some("xlm-roberta"),
    };
    xlm.then(|| config["add_prefix_space"].as_bool().unwrap_or(true))
}

/// The pipeline transformers 5's `XLMRobertaTokenizer` builds around the file's Unigram
/// vocabulary and template: the file's Precompiled normaliser alone (SentencePiece's character
/// map), a split on whitespace, then Metaspace ("▁" before every word, or none without
/// `add_prefix_space`). The hub's older files have Metaspace alone, which turns each space of a
/// run into a "▁" token of its own; SentencePiece and transformers do not.
fn as_xlm_roberta(tok: &mut HfTokenizer, add_prefix_space: bool) -> Result<()> {
    let precompiled = match tok.get_normalizer() {
        Some(NormalizerWrapper::Precompiled(p)) => Some(p.clone()),
        Some(NormalizerWrapper::Sequence(list)) => list.as_ref().iter().find_map(|n| match n {
            NormalizerWrapper::Precompiled(p) => Some(p.clone()),
            _ => None,
        }),
        _ => None,
    };
    let scheme = if add_prefix_space { PrependScheme::Always } else { PrependScheme::Never };
    tok.with_normalizer(precompiled.map(NormalizerWrapper::Precompiled)).map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(vec![
        PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
        PreTokenizerWrapper::Metaspace(Metaspace::new('\u{2581}', scheme, true)),
    ]))));
    Ok(())
}

/// `do_lower_case` from tokenizer_config.json; uncased (true) when absent, like transformers' BertTokenizer.
fn lowercase_setting(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["do_lower_case"].as_bool())
        .unwrap_or(true)
}

/// The tokenizer transformers builds from a bare vocab.txt (`BertTokenizerFast`).
fn from_vocab(vocab: &Path, lowercase: bool) -> Result<HfTokenizer> {
    let path = vocab.to_str().context("vocab path is not UTF-8")?;
    let model = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow!("{}: {e}", vocab.display()))?;
    let mut tok = HfTokenizer::new(model);
    let id = |t: &str| tok.token_to_id(t).with_context(|| format!("{}: no {t} token", vocab.display()));
    let processor = BertProcessing::new(("[SEP]".into(), id("[SEP]")?), ("[CLS]".into(), id("[CLS]")?));
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase))).map_err(|e| anyhow!("{e}"))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(processor));
    tok.with_decoder(Some(WordPieceDecoder::default()));
    // Special tokens typed in the text ("the lessee shall [MASK] ...") stay whole, as in Python.
    let specials: Vec<AddedToken> =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|t| AddedToken::from(*t, true)).collect();
    tok.add_special_tokens(specials).map_err(|e| anyhow!("{e}"))?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Tokenizer {
        Tokenizer::from_dir(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name))
            .unwrap()
    }

    #[test]
    fn a_tokenizer_reads_like_itself_loaded_again_and_not_like_another() {
        let bert = fixture("tiny-bert");
        assert!(bert.reads_like(&fixture("tiny-bert")));
        assert!(bert.reads_like(&bert.clone()));
        assert!(!bert.reads_like(&fixture("tiny-roberta")));
        // The same vocabulary with another special token in a role reads differently.
        let mut other = fixture("tiny-bert");
        other.mask_id = other.unk_id;
        assert!(!bert.reads_like(&other));
    }

    #[test]
    fn each_length_truncates_to_itself_however_the_calls_interleave() {
        let tok = fixture("tiny-bert");
        let text = "the tenant shall pay the rent on the first day of every month to the landlord";
        let full = tok.encode_batch_whole(&[text], None).unwrap().remove(0);
        assert!(full.len() > 12, "the text is longer than the lengths below");
        for max_len in [8, 12, 8, 5, 12] {
            let cut = tok.encode_batch(&[text], None, max_len).unwrap().remove(0);
            assert_eq!(cut.len(), max_len);
            // [CLS], the first tokens of the whole encoding, [SEP].
            assert_eq!(cut.get_ids()[..max_len - 1], full.get_ids()[..max_len - 1]);
            assert_eq!(cut.get_ids()[max_len - 1], tok.sep_id);
        }
        // A copy shares the truncating tokenizers already made.
        let copy = tok.clone();
        assert_eq!(copy.encode_batch(&[text], None, 8).unwrap()[0].len(), 8);
        assert_eq!(Arc::strong_count(&tok.truncating), 2);
        assert_eq!(tok.truncating.lock().unwrap().len(), 3, "one per length: 8, 12 and 5");
    }
}
