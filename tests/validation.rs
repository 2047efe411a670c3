//! Bad flags, as a new user types them: one line naming the flag and what is allowed, a
//! non-zero exit, and nothing written.

mod common;

use std::path::Path;

use common::{bertkit, finetune_tiny, synthetic_csv, tiny_model};

/// Runs a command that must fail; returns its stderr's first line, after checking that the
/// output directory was never created.
fn refused(args: &[String], output: &Path) -> String {
    let out = bertkit(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{args:?}: {stderr}");
    assert!(!output.exists(), "{args:?} created {}", output.display());
    stderr.lines().next().unwrap_or("").to_string()
}

#[test]
fn numeric_training_flags_are_range_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 12, 1);
    let out = tmp.path().join("run");
    let file_as_dir = train.display().to_string();
    let cases: [(&[&str], &str, &str); 15] = [
        (&["--batch-size", "0"], "--batch-size", "at least 1"),
        (&["--grad-accum", "0"], "--grad-accum", "at least 1"),
        (&["--max-steps", "0"], "--max-steps", "at least 1"),
        (&["--max-len", "0"], "--max-len", "at least"),
        (&["--max-len", "1000"], "--max-len 1000", "512 positions"),
        (&["--lr", "nan"], "--lr", "finite"),
        (&["--lr=-1e-5"], "--lr", "greater than 0"),
        (&["--epochs", "inf"], "--epochs", "finite"),
        (&["--weight-decay=-0.1"], "--weight-decay", "0 or more"),
        (&["--warmup-ratio", "1.5"], "--warmup-ratio", "between 0 and 1"),
        (&["--dropout", "nan"], "--dropout", "finite"),
        (&["--eval-split", "1"], "--eval-split", "between 0 and 1"),
        (&["--save-total-limit", "0"], "--save-total-limit", "at least 1"),
        (&["--log-every", "0"], "--log-every", "at least 1"),
        (&["--logging-dir", &file_as_dir], "--logging-dir", "not a directory"),
    ];
    for (flags, names, allowed) in cases {
        let line = refused(&finetune_tiny(&train, &out, flags), &out);
        assert!(line.contains(names) && line.contains(allowed), "{flags:?}: {line}");
    }
}

#[test]
fn other_commands_check_their_flags_too() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model().display().to_string();
    let out = tmp.path().join("run");
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, "the lessee shall repair the premises\n").unwrap();
    let pretrain = |flag: &str, value: &str| -> Vec<String> {
        let (c, o) = (corpus.display().to_string(), out.display().to_string());
        ["pretrain", "--model", &model, "--corpus", &c, "--output", &o, "--device", "cpu", flag, value]
            .map(String::from)
            .to_vec()
    };
    let line = refused(&pretrain("--mlm-probability", "0"), &out);
    assert!(line.contains("--mlm-probability") && line.contains("between 0 and 1"), "{line}");
    let line = refused(&pretrain("--max-len", "513"), &out);
    assert!(line.contains("--max-len 513") && line.contains("512"), "{line}");
    let args: Vec<String> = ["embed", &model, "--text", "a film", "--max-len", "2"].map(String::from).to_vec();
    assert!(refused(&args, &out).contains("--max-len"));
    let args: Vec<String> =
        ["fill-mask", "--model", &model, "--text", "a [MASK]", "--top-k", "0"].map(String::from).to_vec();
    assert!(refused(&args, &out).contains("--top-k"));
    let args: Vec<String> =
        ["bench", "--model", &model, "--workload", "mlm", "--seq-len", "600"].map(String::from).to_vec();
    assert!(refused(&args, &out).contains("--seq-len 600"));
}

#[test]
fn a_missing_parquet_column_is_named_for_its_role() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("d.parquet");
    let text: ArrayRef = Arc::new(StringArray::from(vec!["a good film", "a bad film"]));
    let batch = RecordBatch::try_from_iter([("text", text)]).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&file).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let out = tmp.path().join("run");
    let line = refused(&finetune_tiny(&file, &out, &["--label-column", "sentiment"]), &out);
    assert!(line.contains("no label column \"sentiment\"") && line.contains("--label-column"), "{line}");
    let line = refused(&finetune_tiny(&file, &out, &["--label-column", "text", "--text-pair-column", "b"]), &out);
    assert!(line.contains("no text-pair column \"b\""), "{line}");
}
