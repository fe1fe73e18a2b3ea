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
    // An adapter whose tensors disagree with the model's shapes (its rank edited), as an adapter
    // trained for another base model would.
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
    let mut config = read_json(adapter.join("adapter_config.json"));
    config["r"] = serde_json::json!(8);
    std::fs::write(adapter.join("adapter_config.json"), config.to_string()).unwrap();
    let err = sft_fails(&fixture("qwen2-tiny"), &fixture("data/sft.jsonl"), &["--adapter", &adapter.to_string_lossy()]);
    assert!(err.contains("adapter does not fit") && err.contains("q_proj"), "{err}");
}
