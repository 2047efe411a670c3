//! `bertkit bench` runs every workload through the training code and reports sane numbers;
//! asking for a GPU where there is none is a clear error, not a crash.

mod common;

use common::bertkit;

#[test]
fn bench_times_every_workload_on_the_tiny_model() {
    let model = common::tiny_model();
    for (workload, precision) in [("finetune", "fp32"), ("finetune", "bf16"), ("mlm", "fp32"), ("inference", "fp32")] {
        let out = bertkit(&[
            "-q",
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--workload",
            workload,
            "--precision",
            precision,
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]);
        assert!(out.status.success(), "{workload}: {}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["workload"], workload);
        assert_eq!(r["step_seconds"].as_array().unwrap().len(), 3, "warm-up steps are not timed");
        let median = r["median_step_seconds"].as_f64().unwrap();
        assert!(median > 0.0 && median.is_finite());
        let tokens = r["tokens_per_s"].as_f64().unwrap();
        assert!((tokens * median - 64.0).abs() < 1e-6, "tokens/s = batch x length / median step time");
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        eprintln!("SKIPPED: this machine has an NVIDIA driver");
        return;
    }
    let model = common::tiny_model();
    let out = bertkit(&["embed", model.to_str().unwrap(), "--text", "hello", "--device", "cuda"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--device cuda:0") && err.contains("0 CUDA device"), "{err}");
    // `auto` falls back to the CPU.
    let out = bertkit(&["embed", model.to_str().unwrap(), "--text", "hello", "--device", "auto"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bench_draws_mixed_lengths_packs_them_and_counts_real_tokens() {
    let model = common::tiny_model();
    let run = |extra: &[&str]| {
        let mut args = vec!["-q", "bench", "--model", model.to_str().unwrap(), "--workload", "finetune"];
        args.extend(["--batch-size", "4", "--seq-len", "32", "--steps", "2", "--warmup", "0", "--device", "cpu"]);
        args.extend(extra);
        bertkit(&args)
    };
    for unpad in ["never", "always"] {
        let out = run(&["--min-len", "4", "--unpad", unpad]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((r["unpad"].as_str(), r["min_len"].as_u64()), (Some(unpad), Some(4)));
        let padding = r["padding"].as_f64().unwrap();
        assert!(padding > 0.05 && padding < 0.9, "lengths 4-32 in batches of 4 leave padding: {padding}");
        // Real tokens per step: fewer than the padded batch's 4 x 32.
        let per_step = r["tokens_per_s"].as_f64().unwrap() * r["median_step_seconds"].as_f64().unwrap();
        assert!(per_step > 4.0 * 4.0 && per_step < 128.0, "{per_step}");
    }
    let out = run(&["--min-len", "40"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-len 40 is longer than --seq-len 32"));
    let out = bertkit(&["-q", "bench", "--model", model.to_str().unwrap(), "--workload", "mlm", "--min-len", "8"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MLM trains on full blocks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
