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
