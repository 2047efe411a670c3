//! Unlabelled text for further pretraining, tokenised once into a memory-mapped token cache.
//!
//! The corpus (files, directories of `.txt`, JSONL with a text field, Parquet text columns;
//! gzip accepted) is read in a streaming pass, a batch of documents at a time, and its token ids
//! are appended to `tokens.bin` with block boundaries in `blocks.bin`, and beside them
//! `words.bin`, one byte a token saying whether it continues the word before it (from the
//! tokenizer's word ids: `##` pieces, BPE pieces without `Ġ`, SentencePiece pieces without `▁`),
//! which whole-word masking reads. Nothing but the current
//! batch is in memory, so corpora larger than memory work. The cache is keyed by a fingerprint
//! of the corpus files (path, size, mtime), the tokenizer and the chunking settings: the next run
//! with the same inputs reuses it, any change rebuilds it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::labelled::{Columns, Format, LabelSource, OnBadRow, open_text, read_examples};
use crate::error::Marked;
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chunking {
    /// Concatenate documents (separated by `[SEP]`) and cut into full-length blocks, like
    /// run_mlm.py's group_texts: no padding, no wasted positions.
    Group,
    /// One example per non-empty line, truncated to max-len.
    Line,
    /// Full-length blocks that never cross a document boundary.
    Document,
}

/// How corpus files are read, when the name does not say (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusFormat {
    /// Plain UTF-8 text, one document a file (one example a line with `--chunking line`).
    Text,
    /// One JSON object a line, the text under `--text-field`.
    Jsonl,
    /// A Parquet file, the text in the `--text-field` column.
    Parquet,
}

/// How a corpus becomes training blocks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorpusSpec {
    pub paths: Vec<PathBuf>,
    /// Every file in this format; None: by the name, and plain text for UTF-8 files whose name
    /// says nothing (`LICENSE`, `GPL-2`, `COPYING`: legal text as it usually comes).
    #[serde(default)]
    pub format: Option<CorpusFormat>,
    pub chunking: Chunking,
    /// Block length including `[CLS]` and `[SEP]`.
    pub max_len: usize,
    /// JSONL key / Parquet column holding the text.
    pub text_field: String,
    /// Drop paragraphs (blank-line separated) already seen: licence texts repeat a lot.
    pub dedupe: bool,
}

/// The memory-mapped blocks of a tokenised corpus. Block i is `[CLS] tokens[start..end] [SEP]`.
pub struct TokenCache {
    tokens: memmap2::Mmap,
    /// One byte a token: 1 where it continues the word of the token before it.
    words: memmap2::Mmap,
    bounds: Vec<u64>,
    pub meta: CacheMeta,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheMeta {
    pub fingerprint: String,
    pub documents: u64,
    pub blocks: u64,
    pub tokens: u64,
    pub duplicates_dropped: u64,
    pub truncated: u64,
}

impl CacheMeta {
    /// One line saying what the build made of the corpus.
    fn log(&self, spec: &CorpusSpec) {
        let dropped = match self.duplicates_dropped {
            0 => String::new(),
            n => format!(", {n} duplicate paragraphs dropped"),
        };
        let truncated = match self.truncated {
            0 => String::new(),
            n => format!(", {n} lines truncated"),
        };
        tracing::info!(
            "tokenised {} documents into {} blocks of up to {} tokens ({} tokens{dropped}{truncated})",
            self.documents,
            self.blocks,
            spec.max_len,
            self.tokens,
        );
    }
}

impl TokenCache {
    pub fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Content tokens of block `i` (without `[CLS]`/`[SEP]`).
    pub fn block(&self, i: usize) -> &[u32] {
        let (a, b) = (self.bounds[i] as usize, self.bounds[i + 1] as usize);
        let bytes = &self.tokens[a * 4..b * 4];
        // SAFETY: the file is written as little-endian u32s and mapped at a page boundary, so the
        // slice is aligned; x86-64 and aarch64 are little-endian.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u32>(), b - a) }
    }

    /// Per content token of block `i`: whether it continues the word before it.
    pub fn continues(&self, i: usize) -> &[u8] {
        &self.words[self.bounds[i] as usize..self.bounds[i + 1] as usize]
    }

    /// Opens the cache in `dir` if it was built from `spec` with this tokenizer, else builds it.
    pub fn open_or_build(
        dir: &Path,
        spec: &CorpusSpec,
        tokenizer: &Tokenizer,
        tokenizer_dir: &Path,
    ) -> Result<TokenCache> {
        Self::open_or_tokenize(dir, spec, tokenizer, tokenizer_dir).data_error()
    }

    fn open_or_tokenize(
        dir: &Path,
        spec: &CorpusSpec,
        tokenizer: &Tokenizer,
        tokenizer_dir: &Path,
    ) -> Result<TokenCache> {
        let fingerprint = fingerprint(spec, tokenizer_dir)?;
        let meta_path = dir.join("meta.json");
        let reusable = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| serde_json::from_str::<CacheMeta>(&t).ok())
            .filter(|m| m.fingerprint == fingerprint);
        match reusable {
            Some(_) => tracing::info!("{}: reusing the token cache", dir.display()),
            None => build(dir, spec, tokenizer, &fingerprint)?,
        }
        Self::open(dir)
    }

    fn open(dir: &Path) -> Result<TokenCache> {
        let meta: CacheMeta = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)?;
        let file =
            std::fs::File::open(dir.join("tokens.bin")).with_context(|| format!("{}: tokens.bin", dir.display()))?;
        // SAFETY: read-only map of a file only we write, and only before this point.
        let tokens = unsafe { memmap2::Mmap::map(&file)? };
        let file =
            std::fs::File::open(dir.join("words.bin")).with_context(|| format!("{}: words.bin", dir.display()))?;
        // SAFETY: as above.
        let words = unsafe { memmap2::Mmap::map(&file)? };
        let raw = std::fs::read(dir.join("blocks.bin")).with_context(|| format!("{}: blocks.bin", dir.display()))?;
        let bounds: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let count = bounds.last().copied().unwrap_or(0) as usize;
        if count * 4 != tokens.len() || count != words.len() {
            bail!("{}: token cache is inconsistent (interrupted build?); delete it to rebuild", dir.display());
        }
        Ok(TokenCache { tokens, words, bounds, meta })
    }
}

/// Every file a corpus path stands for: the file itself, or all `.txt`/`.jsonl`/`.parquet`
/// (optionally `.gz`) files under a directory, in sorted order.
pub fn corpus_files(paths: &[PathBuf], format: Option<CorpusFormat>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, format, &mut found)?;
            found.sort();
            if found.is_empty() {
                bail!("{}: no .txt, .jsonl, .parquet or other text files in this directory", p.display());
            }
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, format: Option<CorpusFormat>, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let path = e?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_dir() {
            walk(&path, format, out)?;
        } else if !hidden && file_format(&path, format).is_ok() {
            out.push(path);
        }
    }
    Ok(())
}

/// SHA-256 rather than std's hasher, whose output may change between Rust releases and would
/// then rebuild every cache after a toolchain update.
fn fingerprint(spec: &CorpusSpec, tokenizer_dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update("cache format 2 (words.bin)");
    h.update(serde_json::to_string(spec)?);
    for f in corpus_files(&spec.paths, spec.format)? {
        let m = std::fs::metadata(&f).with_context(|| format!("{}: cannot read metadata", f.display()))?;
        let modified = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        h.update(f.canonicalize()?.to_string_lossy().as_bytes());
        h.update(m.len().to_le_bytes());
        h.update(modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
    }
    for name in ["tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        if let Ok(bytes) = std::fs::read(tokenizer_dir.join(name)) {
            h.update(name);
            h.update(bytes);
        }
    }
    Ok(h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// How to read one corpus file: `--format` if given, else by the name (.txt, .jsonl,
/// .parquet, optionally .gz), else plain text if the name has no extension and the file starts
/// as UTF-8 text.
fn file_format(file: &Path, format: Option<CorpusFormat>) -> Result<CorpusFormat> {
    if let Some(format) = format {
        return Ok(format);
    }
    match Format::detect(file) {
        Ok(Format::Lines) => Ok(CorpusFormat::Text),
        Ok(Format::Jsonl) => Ok(CorpusFormat::Jsonl),
        Ok(Format::Parquet) => Ok(CorpusFormat::Parquet),
        _ if !has_extension(file) && looks_like_text(file) => Ok(CorpusFormat::Text),
        _ => bail!(
            "{}: cannot tell the format from the name (.txt, .jsonl, .parquet) and it is not UTF-8 text; \
             pass --format text, jsonl or parquet",
            file.display()
        ),
    }
}

/// One line for the files read as plain text because their name says nothing.
fn log_unnamed(files: &[PathBuf], spec: &CorpusSpec) {
    let unnamed: Vec<&PathBuf> = files.iter().filter(|f| spec.format.is_none() && Format::detect(f).is_err()).collect();
    if let Some(first) = unnamed.first() {
        tracing::info!(
            "{} file(s) without an extension read as plain text, e.g. {} (--format says otherwise)",
            unnamed.len(),
            first.display()
        );
    }
}

/// Whether the name has an extension: a dot then something that is not only digits (`GPL-2`,
/// `Apache-2.0` and `GFDL-1.3` have version numbers, not extensions).
fn has_extension(file: &Path) -> bool {
    let extension = file.extension().map(|e| e.to_string_lossy().to_string());
    extension.is_some_and(|e| !e.chars().all(|c| c.is_ascii_digit()))
}

/// Whether the file's first 64 KiB are UTF-8 without NUL bytes (a character cut at the end of
/// that window is fine).
fn looks_like_text(file: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(file) else { return false };
    let mut head = vec![0u8; 1 << 16];
    let Ok(n) = std::io::Read::read(&mut f, &mut head) else { return false };
    let head = &head[..n];
    match std::str::from_utf8(head) {
        Ok(_) => !head.contains(&0),
        Err(e) => e.error_len().is_none() && !head.contains(&0),
    }
}

/// Every document of the corpus (`spec`'s files, formats and chunking), in file order.
pub(crate) fn for_each_corpus_document(spec: &CorpusSpec, mut f: impl FnMut(String) -> Result<()>) -> Result<()> {
    for file in corpus_files(&spec.paths, spec.format)? {
        for_each_document(&file, spec, &mut f)?;
    }
    Ok(())
}

/// Documents of one corpus file, handed out a batch at a time.
fn for_each_document(file: &Path, spec: &CorpusSpec, f: &mut dyn FnMut(String) -> Result<()>) -> Result<()> {
    let format = file_format(file, spec.format)?;
    match format {
        CorpusFormat::Jsonl | CorpusFormat::Parquet => {
            let columns = Columns { text: spec.text_field.clone(), pair: None, label: LabelSource::None };
            let as_format = if format == CorpusFormat::Jsonl { Format::Jsonl } else { Format::Parquet };
            for ex in read_examples(file, Some(as_format), &columns, OnBadRow::Skip)?.examples {
                f(ex.text)?;
            }
        }
        CorpusFormat::Text => {
            // A text file is one document, read as lines so any size streams.
            let mut doc = String::new();
            let reader = BufReader::new(open_text(file)?);
            for (i, line) in reader.split(b'\n').enumerate() {
                let line = line.with_context(|| format!("{}:{}: read error", file.display(), i + 1))?;
                let line = String::from_utf8(line)
                    .map_err(|_| anyhow::anyhow!("{}:{}: not valid UTF-8", file.display(), i + 1))?;
                if spec.chunking == Chunking::Line {
                    if !line.trim().is_empty() {
                        f(line)?;
                    }
                } else {
                    doc.push_str(&line);
                    doc.push('\n');
                    if doc.len() > (1 << 20) && line.trim().is_empty() {
                        f(std::mem::take(&mut doc))?; // very large files: hand over at a paragraph break
                    }
                }
            }
            if !doc.trim().is_empty() {
                f(doc)?;
            }
        }
    }
    Ok(())
}

/// Removes paragraphs seen before (exact match after trimming).
fn dedupe(doc: &str, seen: &mut HashSet<u64>, dropped: &mut u64) -> String {
    let mut out = String::with_capacity(doc.len());
    for para in doc.split("\n\n") {
        let key = para.trim();
        if key.is_empty() {
            continue;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        if seen.insert(h.finish()) {
            out.push_str(para);
            out.push_str("\n\n");
        } else {
            *dropped += 1;
        }
    }
    out
}

/// Cuts tokenised documents into blocks as `chunking` says and streams them to `tokens.bin`,
/// recording where each block ends.
struct BlockWriter {
    tokens: BufWriter<std::fs::File>,
    words: BufWriter<std::fs::File>,
    /// Token offset of every block boundary (0 first).
    bounds: Vec<u64>,
    /// Longest block, without `[CLS]` and `[SEP]`.
    block: usize,
    chunking: Chunking,
    sep_id: u32,
    /// Group mode carries a partial block (ids, continuation flags) into the next document.
    carry: Vec<u32>,
    carry_words: Vec<u8>,
}

impl BlockWriter {
    /// A writer of `spec`'s blocks into `dir`'s tokens.bin and words.bin.
    fn create(dir: &Path, spec: &CorpusSpec, sep_id: u32) -> Result<BlockWriter> {
        let block =
            spec.max_len.checked_sub(2).filter(|&b| b > 0).context("--max-len must leave room for [CLS] and [SEP]")?;
        let create =
            |name: &str| std::fs::File::create(dir.join(name)).with_context(|| format!("{}: {name}", dir.display()));
        Ok(BlockWriter {
            tokens: BufWriter::new(create("tokens.bin")?),
            words: BufWriter::new(create("words.bin")?),
            bounds: vec![0],
            block,
            chunking: spec.chunking,
            sep_id,
            carry: Vec::new(),
            carry_words: Vec::new(),
        })
    }

    fn emit(&mut self, ids: &[u32], continues: &[u8]) -> Result<()> {
        for &id in ids {
            self.tokens.write_all(&id.to_le_bytes())?;
        }
        self.words.write_all(continues)?;
        let end = self.bounds.last().copied().unwrap_or(0) + ids.len() as u64;
        self.bounds.push(end);
        Ok(())
    }

    /// One document's tokens (without `[CLS]`/`[SEP]`) and their word-continuation flags; true
    /// when Line chunking had to cut it.
    fn add(&mut self, ids: &[u32], continues: &[u8]) -> Result<bool> {
        match self.chunking {
            Chunking::Line => {
                let n = ids.len().min(self.block);
                if n > 0 {
                    self.emit(&ids[..n], &continues[..n])?;
                }
                return Ok(ids.len() > self.block);
            }
            Chunking::Document => {
                for (chunk, flags) in ids.chunks(self.block).zip(continues.chunks(self.block)) {
                    self.emit(chunk, flags)?;
                }
            }
            Chunking::Group => {
                if !self.carry.is_empty() {
                    self.carry.push(self.sep_id);
                    self.carry_words.push(0);
                }
                self.carry.extend_from_slice(ids);
                self.carry_words.extend_from_slice(continues);
                let full = self.carry.len() / self.block * self.block;
                let (carry, words) = (std::mem::take(&mut self.carry), std::mem::take(&mut self.carry_words));
                for (chunk, flags) in carry[..full].chunks(self.block).zip(words[..full].chunks(self.block)) {
                    self.emit(chunk, flags)?;
                }
                (self.carry, self.carry_words) = (carry[full..].to_vec(), words[full..].to_vec());
            }
        }
        Ok(false)
    }

    /// The last partial group (run_mlm drops it; we keep it unless it is tiny), then the file
    /// synced; returns the block boundaries.
    fn finish(mut self) -> Result<Vec<u64>> {
        if self.carry.len() >= (self.block / 4).max(1) {
            let (carry, words) = (std::mem::take(&mut self.carry), std::mem::take(&mut self.carry_words));
            self.emit(&carry, &words)?;
        }
        self.tokens.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        self.words.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(self.bounds)
    }
}

fn build(dir: &Path, spec: &CorpusSpec, tokenizer: &Tokenizer, fingerprint: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("meta.json")); // invalid until the build completes
    let files = corpus_files(&spec.paths, spec.format)?;
    log_unnamed(&files, spec);
    let total_bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum();
    let bar = crate::progress::items_bar(total_bytes, "bytes");
    bar.set_message("tokenising the corpus");
    let mut meta = CacheMeta { fingerprint: fingerprint.into(), ..Default::default() };
    let mut writer = BlockWriter::create(dir, spec, tokenizer.sep_id)?;
    let mut seen = HashSet::new();
    let mut pending: Vec<String> = Vec::new();
    // Documents are tokenised 256 at a time (in parallel), then cut into blocks in order.
    let mut flush = |docs: &mut Vec<String>, meta: &mut CacheMeta| -> Result<()> {
        let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
        // No truncation here: documents are cut into blocks.
        for e in tokenizer.encode_batch_whole(&texts, None)? {
            // Drop the [CLS]/[SEP] the tokenizer added: blocks get their own.
            let content = 1..e.len().saturating_sub(1).max(1);
            let words = e.get_word_ids();
            let continues: Vec<u8> =
                content.clone().map(|i| u8::from(words[i].is_some() && words[i] == words[i - 1])).collect();
            meta.tokens += content.len() as u64;
            meta.truncated += u64::from(writer.add(&e.get_ids()[content], &continues)?);
        }
        docs.clear();
        Ok(())
    };
    for file in &files {
        for_each_document(file, spec, &mut |text: String| -> Result<()> {
            let text = if spec.dedupe { dedupe(&text, &mut seen, &mut meta.duplicates_dropped) } else { text };
            if !text.trim().is_empty() {
                meta.documents += 1;
                pending.push(text);
            }
            if pending.len() >= 256 {
                flush(&mut pending, &mut meta)?;
            }
            Ok(())
        })?;
        bar.inc(std::fs::metadata(file).map_or(0, |m| m.len()));
    }
    flush(&mut pending, &mut meta)?;
    let bounds = writer.finish()?;
    bar.finish_and_clear();
    meta.blocks = (bounds.len() - 1) as u64;
    let bytes: Vec<u8> = bounds.iter().flat_map(|b| b.to_le_bytes()).collect();
    crate::fsutil::atomic_write(&dir.join("blocks.bin"), &bytes)?;
    crate::fsutil::atomic_write(&dir.join("meta.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    meta.log(spec);
    if meta.blocks == 0 {
        bail!(no_blocks(spec, meta.tokens));
    }
    Ok(())
}

/// Why a corpus gave no block: no text at all, or fewer tokens than a last group is kept for.
fn no_blocks(spec: &CorpusSpec, tokens: u64) -> String {
    let paths = spec.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    if tokens == 0 {
        return format!("the corpus ({paths}) holds no text");
    }
    let kept = ((spec.max_len - 2) / 4).max(1);
    format!(
        "the corpus ({paths}) holds {tokens} tokens, too few for one block: --max-len {} makes blocks of {} \
         tokens and a last group under {kept} is dropped; add text, or pass --max-len {} (or less)",
        spec.max_len,
        spec.max_len - 2,
        tokens + 2
    )
}
