//! Property tests ("fuzzing") of the readers of user files: whatever the bytes, a reader returns
//! examples or a one-line error naming the file; it never panics. Where the input is valid by
//! construction, what comes out is exactly what went in.
//!
//! Each property states its number of cases; `PROPTEST_CASES=N` runs N of each instead.

mod common;

use std::io::Write;
use std::path::Path;

use bertkit::data::corpus::{Chunking, CorpusSpec, TokenCache};
use bertkit::data::labelled::{Columns, LabelSource, OnBadRow, read_examples};
use bertkit::tokenizer::Tokenizer;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn columns() -> Columns {
    Columns { text: "text".into(), pair: None, label: LabelSource::Column("label".into()) }
}

/// Bytes that stress readers: structure characters, BOMs, invalid UTF-8, lone surrogates in JSON.
fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"text,label\n"[..],
        b"text\tlabel\n",
        b"{\"text\": \"a\", \"label\": 1}\n",
        b"{\"text\": \"\\ud800\", \"label\": []}\n",
        b"\"",
        b"\"\"",
        b",",
        b"\t",
        b"\n",
        b"\r\n",
        b"\r",
        b"\xEF\xBB\xBF",
        b"\xff\xfe",
        b"\xc3",
        b"\0",
        b"{",
        b"}",
        b"null",
        b"PAR1",
        b"good",
        b" ",
        b"caf\xc3\xa9",
        b"1",
    ]);
    (prop::collection::vec(pieces, 0..40), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(parts, noise)| {
        let mut bytes: Vec<u8> = parts.concat();
        bytes.extend(noise);
        bytes
    })
}

/// Reads `bytes` as a file named `name` under both bad-row policies; panics propagate.
fn read_both_ways(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    for policy in [OnBadRow::Error, OnBadRow::Skip] {
        match read_examples(&path, None, &columns(), policy) {
            Ok(d) => {
                for ex in &d.examples {
                    prop_assert!(!ex.text.trim().is_empty(), "an empty text was accepted");
                    prop_assert!(ex.label.is_some(), "an example without a label was accepted");
                }
                if policy == OnBadRow::Error {
                    prop_assert!(d.skipped.is_empty());
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(msg.contains(name), "the error does not name the file: {msg}");
                prop_assert!(!msg.contains('\n') || name.ends_with(".parquet"), "not one line: {msg:?}");
            }
        }
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn labelled_readers_never_panic(bytes in nasty_bytes()) {
        for name in ["f.csv", "f.tsv", "f.jsonl", "f.parquet"] {
            read_both_ways(name, &bytes)?;
        }
        read_both_ways("f.csv.gz", &gzip(&bytes))?;
        // A gzip stream cut short.
        let gz = gzip(&bytes);
        read_both_ways("cut.jsonl.gz", &gz[..gz.len() / 2])?;
    }

    /// Any texts and labels written by a CSV writer (quotes, commas, newlines, non-ASCII) read
    /// back unchanged, with the right line numbers.
    #[test]
    fn csv_round_trips(rows in prop::collection::vec(("[a-z ,\"\n\u{e9}\u{4e2d}'\t]{0,30}[a-z]", "(pos|neg|[0-9])"), 1..30)) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.csv");
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["text", "label"]).unwrap();
        for (text, label) in &rows {
            w.write_record([text, label]).unwrap();
        }
        w.flush().unwrap();
        let d = read_examples(&path, None, &columns(), OnBadRow::Error).unwrap();
        prop_assert_eq!(d.examples.len(), rows.len());
        let mut line = 2;
        for (ex, (text, label)) in d.examples.iter().zip(&rows) {
            prop_assert_eq!(&ex.text, text);
            prop_assert_eq!(ex.single_label(), Some(label.as_str()));
            prop_assert_eq!(ex.at.line, line);
            line += 1 + text.matches('\n').count() as u64;
        }
    }
}

/// CoNLL and JSONL tagged sentences of any bytes: sentences with one tag per word, or a
/// one-line error naming the file.
fn read_tagged_both_ways(name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    use bertkit::data::token_classification::{TagColumn, read_tagged};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    for policy in [OnBadRow::Error, OnBadRow::Skip] {
        match read_tagged(&path, TagColumn::Last, true, policy) {
            Ok((sentences, _)) => {
                for s in &sentences {
                    prop_assert!(!s.words.is_empty());
                    prop_assert_eq!(s.tags.as_ref().map(Vec::len), Some(s.words.len()));
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(msg.contains(name), "the error does not name the file: {msg}");
                prop_assert!(!msg.contains('\n'), "not one line: {msg:?}");
            }
        }
    }
    Ok(())
}

fn conll_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"-DOCSTART- -X- O\n"[..],
        b"John NNP B-PER\n",
        b"runs O\n",
        b"lonely\n",
        b"\n",
        b"\n\n",
        b" \t \n",
        b"{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\", \"B-X\"]}\n",
        b"{\"tokens\": [\"a\"], \"tags\": []}\n",
        b"{\"tokens\": [], \"tags\": []}\n",
        b"{\"tokens\": [1, null]}\n",
        b"\xff\xfe",
        b"caf\xc3\xa9 O\n",
        b"\0",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn tagged_readers_never_panic(bytes in conll_bytes()) {
        read_tagged_both_ways("f.conll", &bytes)?;
        read_tagged_both_ways("f.jsonl", &bytes)?;
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// Corpus files of any bytes: a token cache or an error naming the file; blocks never
    /// exceed the length, and grouped blocks are full except the last.
    #[test]
    fn corpus_reader_never_panics(bytes in nasty_bytes(), chunking in prop::sample::select(vec![Chunking::Group, Chunking::Line, Chunking::Document]), max_len in 3usize..12) {
        let tmp = tempfile::tempdir().unwrap();
        let tokenizer = Tokenizer::from_dir(&common::tiny_model()).unwrap();
        for name in ["c.txt", "c.jsonl"] {
            let file = tmp.path().join(name);
            std::fs::write(&file, &bytes).unwrap();
            let spec = CorpusSpec { paths: vec![file.clone()], format: None, chunking, max_len, text_field: "text".into(), dedupe: true };
            let cache_dir = tmp.path().join(format!("cache-{name}"));
            match TokenCache::open_or_build(&cache_dir, &spec, &tokenizer, &common::tiny_model()) {
                Ok(cache) => {
                    let lens: Vec<usize> = (0..cache.len()).map(|i| cache.block(i).len()).collect();
                    prop_assert!(lens.iter().all(|&n| n <= max_len - 2), "{lens:?}");
                    if chunking == Chunking::Group && lens.len() > 1 {
                        prop_assert!(lens[..lens.len() - 1].iter().all(|&n| n == max_len - 2), "{lens:?}");
                    }
                }
                Err(e) => prop_assert!(format!("{e:#}").contains(name), "{e:#}"),
            }
        }
    }
}

#[test]
fn readers_name_a_missing_file() {
    let missing = Path::new("/nonexistent/dir/data.csv");
    let msg = format!("{:#}", read_examples(missing, None, &columns(), OnBadRow::Error).unwrap_err());
    assert!(msg.contains("/nonexistent/dir/data.csv"), "{msg}");
}
