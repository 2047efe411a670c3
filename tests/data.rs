//! Every labelled-data format, and every way a row can be bad: a one-line error naming the
//! file and line, or a count of skipped rows with `--on-bad-row skip`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use bertkit::data::{Columns, Format, LabelSet, LabelSource, OnBadRow, read_examples};

fn cols() -> Columns {
    Columns { text: "text".into(), pair: None, label: LabelSource::Column("label".into()) }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err(path: &Path, columns: &Columns) -> String {
    let e = read_examples(path, None, columns, OnBadRow::Error).expect_err("should fail");
    let msg = format!("{e:#}");
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    msg
}

#[test]
fn csv_with_quotes_commas_newlines_and_bom() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "a.csv",
        "\u{feff}text,label\n\"He said \"\"wow\"\", then left.<br /><br />Later, he returned\nto the hall.\",positive\nplain text,negative\n"
            .as_bytes(),
    );
    let d = read_examples(&p, None, &cols(), OnBadRow::Error).unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.examples[0].text, "He said \"wow\", then left.<br /><br />Later, he returned\nto the hall.");
    assert_eq!(d.examples[0].single_label(), Some("positive"));
    assert_eq!(d.examples[1].at.line, 4, "line numbers count the embedded newline");
}

#[test]
fn tsv_jsonl_parquet_folder_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let tsv = write(tmp.path(), "a.tsv", b"label\ttext\n1\tfirst one\n0\tsecond, with comma\n");
    let d = read_examples(&tsv, None, &cols(), OnBadRow::Error).unwrap();
    assert_eq!(d.examples[1].text, "second, with comma");
    assert_eq!(d.examples[0].single_label(), Some("1"));

    let jsonl = write(
        tmp.path(),
        "a.jsonl",
        b"{\"text\": \"caf\\u00e9\", \"label\": 2}\n\n{\"text\": \"x\", \"label\": \"b\", \"extra\": [1]}\n",
    );
    let d = read_examples(&jsonl, None, &cols(), OnBadRow::Error).unwrap();
    assert_eq!(d.examples[0].text, "café");
    assert_eq!(d.examples[0].single_label(), Some("2"), "integer labels read as their text");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"text,label\nzipped,1\n").unwrap();
    let gz_path = write(tmp.path(), "a.csv.gz", &gz.finish().unwrap());
    assert_eq!(read_examples(&gz_path, None, &cols(), OnBadRow::Error).unwrap().examples[0].text, "zipped");

    let parquet = tmp.path().join("a.parquet");
    let batch = RecordBatch::try_from_iter([
        ("text", Arc::new(StringArray::from(vec!["p one", "p two"])) as ArrayRef),
        ("label", Arc::new(Int64Array::from(vec![1, 0])) as ArrayRef),
    ])
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let d = read_examples(&parquet, None, &cols(), OnBadRow::Error).unwrap();
    assert_eq!((d.examples[1].text.as_str(), d.examples[1].single_label()), ("p two", Some("0")));

    // Parquet with the text column of the wrong type.
    let bad = tmp.path().join("bad.parquet");
    let batch = RecordBatch::try_from_iter([
        ("text", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
        ("label", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&bad).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let msg = err(&bad, &cols());
    assert!(msg.contains("bad.parquet") && msg.contains("\"text\"") && msg.contains("Int64"), "{msg}");

    // aclImdb layout.
    let imdb = tmp.path().join("aclImdb/train");
    for (class, n) in [("pos", 3), ("neg", 2)] {
        std::fs::create_dir_all(imdb.join(class)).unwrap();
        for i in 0..n {
            std::fs::write(imdb.join(class).join(format!("{i}_9.txt")), format!("{class} review {i}<br />")).unwrap();
        }
    }
    std::fs::create_dir_all(imdb.join("unsup")).unwrap();
    std::fs::write(imdb.join("unsup/0_0.txt"), "unlabelled").unwrap();
    let d = read_examples(&imdb, None, &cols(), OnBadRow::Error).unwrap();
    assert_eq!(d.examples.len(), 5, "unsup/ is not a class");
    assert_eq!(LabelSet::from_examples(&d.examples).names(), ["neg", "pos"]);
    let msg = err(&tmp.path().join("aclImdb"), &cols());
    assert!(msg.contains("train/"), "pointing at the parent names the right folder: {msg}");
}

#[test]
fn bad_rows_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("missing_col.csv", b"review,sentiment\nfine,pos\n", "no text column \"text\" (columns: review, sentiment)"),
        ("extra_field.csv", b"text,label\nok,1\ntoo,many,fields\n", "extra_field.csv:3: 3 fields, the header has 2"),
        ("short_row.csv", b"text,label\nok,1\nlonely\n", "short_row.csv:3: 1 fields"),
        ("quote.csv", b"text,label\nok,1\n\"never closed,1\nnext,0\n", "quote.csv:3:"),
        ("empty.csv", b"text,label\nok,1\n  ,0\n", "empty.csv:3: empty text"),
        ("nolabel.csv", b"text,label\nok,1\nno label,\n", "nolabel.csv:3: missing label"),
        ("latin1.csv", b"text,label\nok,1\ncaf\xe9,0\n", "latin1.csv:3: column \"text\" is not valid UTF-8"),
        (
            "broken.jsonl",
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\n",
            "broken.jsonl:2: not a JSON object",
        ),
        ("nolabel.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n", "nolabel.jsonl:2: missing label"),
        ("nofile.csv", b"", "nofile.csv"),
    ];
    for (name, bytes, want) in cases {
        let p =
            if *name == "nofile.csv" { tmp.path().join("missing/nofile.csv") } else { write(tmp.path(), name, bytes) };
        let msg = err(&p, &cols());
        assert!(msg.contains(want), "{name}: {msg:?} should contain {want:?}");
    }
    let unknown = Path::new("data.weird");
    assert!(format!("{:#}", Format::detect(unknown).unwrap_err()).contains("cannot tell the format"));
}

#[test]
fn skip_policy_counts_bad_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "mixed.csv", b"text,label\ngood,1\n,0\ncaf\xe9,1\nalso good,0\nx,y,z\n");
    let d = read_examples(&p, None, &cols(), OnBadRow::Skip).unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.skipped.len(), 3);
    assert!(d.skipped[0].starts_with(&format!("{}:3:", p.display())), "{:?}", d.skipped);
}

#[test]
fn eval_label_unknown_to_training_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let train =
        read_examples(&write(tmp.path(), "t.csv", b"text,label\na,cat\nb,dog\n"), None, &cols(), OnBadRow::Error)
            .unwrap();
    let eval =
        read_examples(&write(tmp.path(), "e.csv", b"text,label\nc,cat\nd,bird\n"), None, &cols(), OnBadRow::Error)
            .unwrap();
    let labels = LabelSet::from_examples(&train.examples);
    let msg = format!("{:#}", labels.ids(&eval.examples, "training").unwrap_err());
    assert!(msg.contains("e.csv:3") && msg.contains("\"bird\"") && msg.contains("cat, dog"), "{msg}");
    // Integer labels sort as numbers.
    let nums =
        read_examples(&write(tmp.path(), "n.csv", b"text,label\na,10\nb,2\nc,0\n"), None, &cols(), OnBadRow::Error)
            .unwrap();
    assert_eq!(LabelSet::from_examples(&nums.examples).names(), ["0", "2", "10"]);
}

#[test]
fn bad_data_fails_before_the_output_dir_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "bad.csv", b"text,label\nok,1\n\xff\xfe,0\n");
    let out = tmp.path().join("out");
    let res = common::bertkit(&common::finetune_tiny(&p, &out, &[]));
    assert_eq!(res.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("bad.csv:3") && stderr.contains("--on-bad-row skip"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

/// Multi-label data in each of its spellings gives the same label sets, empty ones included.
#[test]
fn label_sets_from_every_format() {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    let tmp = tempfile::tempdir().unwrap();
    let want: Vec<Vec<&str>> = vec![vec!["law", "tax"], vec![], vec!["tax"]];
    let sets = |path: &Path, label: LabelSource| -> Vec<Vec<String>> {
        let columns = Columns { text: "text".into(), pair: None, label };
        let d = read_examples(path, None, &columns, OnBadRow::Error).unwrap();
        d.examples
            .into_iter()
            .map(|e| match e.label {
                Some(bertkit::data::Label::Many(names)) => names,
                other => panic!("{}: {other:?}", path.display()),
            })
            .collect()
    };
    let column = || LabelSource::Column("labels".into());
    let jsonl = write(tmp.path(), "m.jsonl", b"{\"text\": \"a\", \"labels\": [\"law\", \"tax\"]}\n{\"text\": \"b\", \"labels\": []}\n{\"text\": \"c\", \"labels\": [\"tax\"]}\n");
    assert_eq!(sets(&jsonl, column()), want);
    let separated = write(tmp.path(), "m.csv", b"text,labels\na,law;tax\nb,\nc,tax\n");
    assert_eq!(sets(&separated, LabelSource::Separated { column: "labels".into(), separator: ";".into() }), want);
    let indicators = write(tmp.path(), "i.tsv", b"text\tlaw\ttax\na\t1\t1\nb\t0\t0\nc\t0\t1\n");
    assert_eq!(sets(&indicators, LabelSource::Indicators(vec!["law".into(), "tax".into()])), want);

    let mut lists = ListBuilder::new(StringBuilder::new());
    for set in &want {
        set.iter().for_each(|l| lists.values().append_value(l));
        lists.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("text", Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef),
        ("labels", Arc::new(lists.finish()) as ArrayRef),
    ])
    .unwrap();
    let parquet = tmp.path().join("m.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    assert_eq!(sets(&parquet, column()), want);

    // A set label where the task has one label per text is named, with the way out.
    let labels = LabelSet::new(vec!["law".into(), "tax".into()]);
    let d = read_examples(&jsonl, None, &Columns { text: "text".into(), pair: None, label: column() }, OnBadRow::Error)
        .unwrap();
    let msg = format!("{:#}", labels.ids(&d.examples, "training").unwrap_err());
    assert!(msg.contains("m.jsonl:1: 2 labels where one is expected") && msg.contains("--task multi-label"), "{msg}");
    let unknown = LabelSet::new(vec!["law".into()]);
    let msg = format!("{:#}", unknown.multi_hot(&d.examples, "model's").unwrap_err());
    assert!(msg.contains("m.jsonl:1: label \"tax\" is not among the model's labels"), "{msg}");
}

#[test]
fn tsv_with_quotes_as_plain_text_reads_as_tsv_unquoted() {
    // GLUE's STS-B: an opening quote that never closes, then a quoted word mid-text.
    let tmp = tempfile::tempdir().unwrap();
    let tsv = write(tmp.path(), "glue.tsv", b"text\tlabel\n\"A man is playing\t1\nthe \"flute\" plays\t0\nok\t1\n");
    let msg = err(&tsv, &cols());
    assert!(msg.contains("glue.tsv:2") && msg.contains("--format tsv-unquoted"), "{msg}");
    let d = read_examples(&tsv, Some(Format::TsvUnquoted), &cols(), OnBadRow::Error).unwrap();
    let texts: Vec<&str> = d.examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["\"A man is playing", "the \"flute\" plays", "ok"]);
}
