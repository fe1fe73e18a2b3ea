//! Bad input: one clear line naming the culprit, a non-zero exit, and no output written.

use std::path::Path;

use crate::util::*;

/// Runs a failing `ladder sft` into a fresh `out` and checks nothing was written there.
fn sft_fails(model: &str, data: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_string_lossy().into_owned();
    let mut args = vec!["sft", "--model", model, "--data", data, "--out", &o, "--max-steps", "1"];
    args.extend(extra);
    let stderr = ladder_fails(&args);
    assert!(!out.exists(), "a failed run must not create {}", out.display());
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    stderr
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn missing_model_folder() {
    let err = sft_fails("/nonexistent/model", &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("/nonexistent/model") && err.contains("does not exist"), "{err}");
}

#[test]
fn malformed_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    std::fs::write(model.join("config.json"), "{\"architectures\": [\"Qwen2ForCausalLM\",").unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("config.json") && err.contains("malformed JSON"), "{err}");
}

#[test]
fn unknown_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(model.join("config.json"), config.replace("Qwen2ForCausalLM", "BertForMaskedLM")).unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("unsupported architecture \"BertForMaskedLM\"") && err.contains("config.json"), "{err}");
}

#[test]
fn tokenizer_and_model_vocab_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let mut config = read_json(model.join("config.json"));
    config["vocab_size"] = serde_json::json!(100);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("vocab_size is 100") && err.contains("tokenizer.json"), "{err}");
}

#[test]
fn malformed_jsonl_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \n");
    let err = sft_fails(&fixture("qwen2-tiny"), &data, &[]);
    assert!(err.contains("bad.jsonl:2"), "{err}");
}

#[test]
fn empty_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "empty.jsonl", "\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &data, &[]);
    assert!(err.contains("empty.jsonl"), "{err}");
}

#[test]
fn unknown_config_key_suggests_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "stage.toml", "lora_rank = 8\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--config", &config]);
    assert!(err.contains("stage.toml") && err.contains("unknown key `lora_rank` (did you mean `lora_r`?)"), "{err}");
}

#[test]
fn adapter_that_does_not_fit_the_model() {
    // An adapter whose tensors disagree with its own config (its rank edited): the message
    // names `r` in adapter_config.json (issue 19, item 17), not the layer.
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
    let mut config = read_json(adapter.join("adapter_config.json"));
    config["r"] = serde_json::json!(8);
    std::fs::write(adapter.join("adapter_config.json"), config.to_string()).unwrap();
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--adapter", &adapter.to_string_lossy()]);
    assert!(err.contains("adapter_config.json") && err.contains("key `r`: 8, but the adapter's tensors have rank"), "{err}");
}

// The catalogue of bad inputs (issue "Reliability"): each fails with one `error:` line that
// names the file (and line or key), a non-zero exit, and nothing written.

#[test]
fn malformed_toml_config_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "stage.toml", "lr = 1e-3\nlora_r = = 4\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--config", &config]);
    assert!(err.contains("stage.toml:2:10: "), "{err}");
}

#[test]
fn truncated_toml_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "stage.toml", "lr = 1e-3\nlr_scheduler = \"cos");
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--config", &config]);
    assert!(err.contains("stage.toml:2:"), "{err}");
}

#[test]
fn wrong_value_type_in_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "stage.toml", "lr = 1e-3\nlora_r = \"sixteen\"\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--config", &config]);
    assert!(err.contains("stage.toml") && err.contains("lora_r") && err.contains("sixteen"), "{err}");
}

#[test]
fn unknown_optimizer_names_the_key_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "stage.toml", "optimizer = \"adam8\"\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--config", &config]);
    assert!(err.contains("stage.toml:1") && err.contains("optimizer") && err.contains("adamw-8bit"), "{err}");
}

#[test]
fn missing_data_file() {
    let err = sft_fails(&fixture("qwen2-tiny"), "/nonexistent/train.jsonl", &[]);
    assert!(err.contains("/nonexistent/train.jsonl") && err.contains("not found"), "{err}");
}

#[test]
fn all_bad_rows_with_skip_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "bad.jsonl", "{\"prompt\": 1}\nnot json\n{\"foo\": \"bar\"}\n");
    let err = sft_fails(&fixture("qwen2-tiny"), &data, &["--skip-bad-rows"]);
    assert!(err.contains("bad.jsonl") && err.contains("all 3 rows are malformed"), "{err}");
}

#[test]
fn non_utf8_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.jsonl");
    std::fs::write(&path, b"{\"prompt\": \"caf\xe9\", \"completion\": \" ok\"}\n").unwrap();
    let err = sft_fails(&fixture("qwen2-tiny"), &path.to_string_lossy(), &[]);
    assert!(err.contains("latin1.jsonl:1") && err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn huge_single_line_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.jsonl");
    let mut line = String::from("{\"prompt\": \"");
    line.push_str(&"a".repeat(50 << 20));
    line.push_str("\", \"completion\": \" b\"}\n");
    std::fs::write(&path, line).unwrap();
    let t0 = std::time::Instant::now();
    let err = sft_fails(&fixture("qwen2-tiny"), &path.to_string_lossy(), &[]);
    assert!(err.contains("huge.jsonl:1") && err.contains("MiB limit"), "{err}");
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
}

#[test]
fn corrupted_safetensors_header() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    // The JSON header starts at byte 8: break it.
    bytes[8..16].copy_from_slice(b"garbage!");
    std::fs::write(&path, bytes).unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("model.safetensors") && err.contains("invalid safetensors"), "{err}");
    // A header length pointing past the end of the file.
    let mut bytes = std::fs::read(fixtures().join("qwen2-tiny/model.safetensors")).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("model.safetensors") && err.contains("invalid safetensors"), "{err}");
}

#[test]
fn shard_missing_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    std::fs::rename(model.join("model.safetensors"), model.join("model-00001-of-00002.safetensors")).unwrap();
    let file = ladder_model::TensorFile::open(&model.join("model-00001-of-00002.safetensors")).unwrap();
    let mut map = serde_json::Map::new();
    for (i, key) in file.keys().enumerate() {
        let shard = if i % 2 == 0 { "model-00001-of-00002.safetensors" } else { "model-00002-of-00002.safetensors" };
        map.insert(key.to_string(), serde_json::json!(shard));
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(model.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let err = sft_fails(&model.to_string_lossy(), &fixture("data/sft.jsonl"), &[]);
    assert!(err.contains("model.safetensors.index.json") && err.contains("model-00002-of-00002.safetensors"), "{err}");
}

#[test]
fn unwritable_output_folder() {
    // Tests run as root, which chmod does not stop; a path below a regular file fails for
    // everyone (ENOTDIR).
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a-file", "");
    let out = format!("{file}/out");
    let (m, d) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"));
    let err = ladder_fails(&["sft", "--model", &m, "--data", &d, "--out", &out, "--max-steps", "1", "--lora-r", "2"]);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(err.contains("a-file/out"), "{err}");
    assert!(!Path::new(&out).exists());
}

#[test]
fn output_folder_in_use_by_another_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // This test process is alive: the lock is not stale.
    std::fs::write(out.join(".ladder.lock"), format!("{} {}\n", std::process::id(), host.trim())).unwrap();
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let args = ["sft", "--model", &m, "--data", &d, "--out", &o, "--max-steps", "1", "--lora-r", "2"];
    let err = ladder_fails(&args);
    assert!(err.contains(&o) && err.contains(&format!("pid {}", std::process::id())), "{err}");
    assert!(!out.join("metrics.jsonl").exists());
    // A lock left by a process that is gone is stale: the run takes it over, and releases it.
    std::fs::write(out.join(".ladder.lock"), format!("999999999 {}\n", host.trim())).unwrap();
    ladder(&args);
    assert!(out.join("adapter_model.safetensors").exists());
    assert!(!out.join(".ladder.lock").exists());
}

#[test]
fn bench_runs_one_row_and_refuses_a_dpo_batch_without_a_pair() {
    // Full and LoRA take batch 1 (the scaling table's longest rows); the JSON line is the result.
    let out = ladder(&["bench", "--shape", "tiny", "--mode", "lora", "--batch-size", "1", "--seq-len", "16", "--steps", "1", "--threads", "1"]);
    let line: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(line["batch_size"], 1);
    assert!(line["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(line["trainable_params"].as_u64().unwrap() < line["params"].as_u64().unwrap());
    // DPO needs two rows: one pair.
    let err = ladder_fails(&["bench", "--shape", "tiny", "--mode", "dpo", "--batch-size", "1"]);
    assert!(err.contains("--batch-size ≥ 2"), "{err}");
    let err = ladder_fails(&["bench", "--mode", "sgd"]);
    assert!(err.contains("--mode") && err.contains("full, lora, dpo"), "{err}");
}

#[test]
fn bench_profile_splits_a_step_into_kernels_and_products() {
    let out = ladder(&["bench", "--shape", "tiny", "--mode", "full", "--seq-len", "16", "--steps", "1", "--threads", "1", "--profile"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    // A Markdown table for people, then the JSON line (the last) for scripts.
    assert!(stdout.contains("| kernel / product | calls | ms | share | GFLOP/s in the step | alone, caches hot | alone, caches cold |"), "{stdout}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    let profile = &line["profile"];
    assert_eq!(profile["steps"], 1, "the timed step alone, the warm-up apart");
    let rows = profile["rows"].as_array().unwrap();
    let kernels: Vec<&serde_json::Value> = rows.iter().filter(|r| r.get("gemm").is_none()).collect();
    for name in ["linear forward", "linear backward", "attention forward", "attention backward", "rms_norm forward", "adamw", "lm head log-probs forward", "lm head log-probs backward"] {
        assert!(kernels.iter().any(|r| r["kernel"] == name), "no {name} row: {stdout}");
    }
    // The kernels run one after another inside the step, so their times fit in it.
    let kernel_ms: f64 = kernels.iter().map(|r| r["ms_per_step"].as_f64().unwrap()).sum();
    let step_ms = profile["step_s"].as_f64().unwrap() * 1e3;
    assert!(kernel_ms > 0.0 && kernel_ms <= step_ms * 1.01, "kernels {kernel_ms} ms in a {step_ms} ms step");
    let bound_ms = profile["gemm_bound_s"].as_f64().unwrap() * 1e3;
    assert!(bound_ms > 0.0 && bound_ms < step_ms, "GEMM-bound limit {bound_ms} ms of a {step_ms} ms step");
    // Every product is filed under a kernel, with its speed in the step and alone.
    let products: Vec<&serde_json::Value> = rows.iter().filter(|r| r.get("gemm").is_some()).collect();
    assert!(!products.is_empty());
    for p in products {
        assert!(kernels.iter().any(|k| k["kernel"] == p["kernel"]), "{p}");
        for speed in ["gflops", "standalone_gflops", "cold_gflops"] {
            assert!(p[speed].as_f64().unwrap() > 0.0, "{speed}: {p}");
        }
    }
}

#[test]
fn bench_trains_with_gradient_checkpointing_past_the_first_update() {
    // Three optimizer steps: the update must keep each parameter's checkpointing strategy,
    // or the next forward mixes two strategies and Burn panics.
    for mode in ["lora", "full", "dpo"] {
        let out = ladder(&["bench", "--shape", "tiny", "--mode", mode, "--seq-len", "16", "--steps", "1", "--threads", "1", "--gradient-checkpointing"]);
        let line: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
        assert_eq!(line["gradient_checkpointing"], true, "{mode}");
        assert!(line["tokens_per_s"].as_f64().unwrap() > 0.0, "{mode}");
    }
}

#[test]
fn bench_checkpoints_full_fine_tuning_by_default_as_training_does() {
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "--shape", "tiny", "--seq-len", "16", "--steps", "1", "--threads", "1"];
        args.extend_from_slice(extra);
        let line: serde_json::Value = serde_json::from_slice(ladder(&args).stdout.trim_ascii()).unwrap();
        line["gradient_checkpointing"].as_bool().unwrap()
    };
    assert!(bench(&["--mode", "full"]));
    assert!(!bench(&["--mode", "lora"]));
    assert!(!bench(&["--mode", "full", "--gradient-checkpointing", "false"]));
}

#[test]
fn bench_names_the_host_it_ran_on() {
    // Tokens/s differ ~2× between these machines' CPUs: the line must say which one it was.
    let out = ladder(&["bench", "--shape", "tiny", "--mode", "lora", "--seq-len", "16", "--steps", "1", "--threads", "1"]);
    let line: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    let host = &line["host"];
    assert!(!host["cpu"].as_str().unwrap().is_empty(), "{host}");
    assert!(["avx512", "avx2", "neon", "baseline"].contains(&host["simd"].as_str().unwrap()), "{host}");
    assert!(host["cpus"].as_u64().unwrap() >= 1, "{host}");
}
