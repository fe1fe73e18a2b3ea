//! The reliability promises of issue 19, one test per defect the audit found: no input is
//! overwritten, no finished run is replaced unless asked (and then only by a good one), no
//! NaN is saved or served as a success, no temporary file outlives its command.

use std::path::{Path, PathBuf};

use crate::util::*;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Sorted names of the entries of `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Every file of `dir` with its bytes, to check a folder was left exactly as it was.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir).into_iter().filter(|n| dir.join(n).is_file()).map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap())).collect()
}

/// Replaces the first value of tensor `key` in the safetensors file `path` by NaN.
pub fn poison(path: &Path, key: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let entry = &header[key];
    assert_eq!(entry["dtype"], "F32", "{key} in {}", path.display());
    let start = 8 + header_len + entry["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A copy of the tiny Qwen2 model in `dir/name`, with NaN in its first layer's q_proj.
fn nan_model(dir: &Path, name: &str) -> PathBuf {
    let model = dir.join(name);
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    poison(&model.join("model.safetensors"), "model.layers.0.self_attn.q_proj.weight");
    model
}

/// A short LoRA SFT run into `out`.
fn sft_run(out: &Path, extra: &[&str]) -> std::process::Output {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), s(out));
    let mut args = vec!["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--batch-size", "2", "--seed", "3"];
    args.extend(extra);
    ladder(&args)
}

// ---- 1. Every command that writes a folder refuses one that holds anything, unless --overwrite.

#[test]
fn merge_refuses_a_folder_that_holds_anything_and_replaces_it_whole_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (base, adapter) = (dir.path().join("base"), dir.path().join("adapter"));
    copy_dir(&fixtures().join("qwen2-tiny"), &base);
    copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
    let (b, a) = (s(&base), s(&adapter));
    // Into the base model's or the adapter's own folder: refused, even with --overwrite.
    for (target, flag) in [(&base, "--model"), (&adapter, "--adapter")] {
        let before = snapshot(target);
        for extra in [&[][..], &["--overwrite"][..]] {
            let err = ladder_fails(&[&["merge", "--model", &b, "--adapter", &a, "--out", &s(target)][..], extra].concat());
            assert!(err.contains("--out") && err.contains(flag) && err.contains("same file"), "{err}");
        }
        assert_eq!(snapshot(target), before, "{} must be untouched", target.display());
    }
    // Into another model's folder (a sharded one): refused without --overwrite...
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"] {
        std::fs::write(other.join(f), b"an earlier model").unwrap();
    }
    let before = snapshot(&other);
    let err = ladder_fails(&["merge", "--model", &b, "--adapter", &a, "--out", &s(&other)]);
    assert!(err.contains(&s(&other)) && err.contains("not empty") && err.contains("--overwrite"), "{err}");
    assert_eq!(snapshot(&other), before);
    // ...and replaced as a whole with it: no shard of the old model stays beside the new one.
    ladder(&["merge", "--model", &b, "--adapter", &a, "--out", &s(&other), "--overwrite"]);
    let left = names(&other);
    assert!(left.contains(&"model.safetensors".to_string()), "{left:?}");
    assert!(!left.iter().any(|n| n.starts_with("model-0000") || n.ends_with("index.json")), "two models mixed: {left:?}");
    assert_eq!(names(dir.path()), ["adapter", "base", "other"], "no staging or aside folder left");
}

#[test]
fn init_refuses_a_folder_that_holds_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("train.jsonl"), b"{\"text\": \"precious\"}\n").unwrap();
    let d = fixture("data/sft.jsonl");
    let args = ["init", "--out", &s(&out), "--tokenizer-data", &d, "--vocab-size", "300", "--hidden-size", "16", "--layers", "1", "--heads", "2"];
    let err = ladder_fails(&args);
    assert!(err.contains("not empty") && err.contains("train.jsonl"), "{err}");
    assert_eq!(std::fs::read(out.join("train.jsonl")).unwrap(), b"{\"text\": \"precious\"}\n");
}

// ---- 2. An output that is one of the inputs is refused, whatever its spelling.

#[test]
fn outputs_that_name_an_input_are_refused_through_symlinks_and_hard_links() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.jsonl");
    std::fs::copy(fixture("data/prompts.jsonl"), &data).unwrap();
    let before = std::fs::read(&data).unwrap();
    let (hard, soft) = (dir.path().join("hard.jsonl"), dir.path().join("soft.jsonl"));
    std::fs::hard_link(&data, &hard).unwrap();
    std::os::unix::fs::symlink(&data, &soft).unwrap();
    let (m, d) = (fixture("qwen2-tiny"), s(&data));
    for out in [s(&data), s(&hard), s(&soft), format!("{}/./p.jsonl", dir.path().display())] {
        for cmd in ["generate", "logprobs", "pairs"] {
            let err = ladder_fails(&[cmd, "--model", &m, "--data", &d, "--out", &out]);
            assert!(err.contains("same file") && err.contains("--data"), "{cmd} --out {out}: {err}");
        }
        let err = ladder_fails(&["eval", "--predictions", &d, "--out", &out]);
        assert!(err.contains("same file") && err.contains("--predictions"), "eval --out {out}: {err}");
    }
    assert_eq!(std::fs::read(&data).unwrap(), before, "the input is intact");
    // eval --model writes predictions.jsonl beside --out: that file is an output too.
    let refs = dir.path().join("predictions.jsonl");
    std::fs::copy(fixture("data/references.jsonl"), &refs).unwrap();
    let out = s(&dir.path().join("eval.json"));
    let err = ladder_fails(&["eval", "--model", &m, "--data", &s(&refs), "--out", &out, "--max-new-tokens", "2"]);
    assert!(err.contains("predictions.jsonl") && err.contains("same file"), "{err}");
}

// ---- 3. --overwrite replaces a finished run only with a good one, and never mixes two runs.

#[test]
fn overwrite_keeps_the_finished_run_when_the_new_one_fails_and_never_mixes_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    sft_run(&out, &["--max-steps", "3", "--save-every", "2"]);
    let before = snapshot(&out);
    assert_eq!(read_jsonl(out.join("metrics.jsonl")).len(), 3);
    // The new run fails at its first step (NaN weights): the old run is untouched.
    let bad = nan_model(dir.path(), "nan-model");
    let (d, o) = (fixture("data/sft.jsonl"), s(&out));
    let err = ladder_fails(&["sft", "--model", &s(&bad), "--data", &d, "--out", &o, "--overwrite", "--max-steps", "1"]);
    assert!(err.contains("q_proj"), "{err}");
    assert_eq!(snapshot(&out), before, "a failed --overwrite must leave the finished run as it was");
    assert!(out.join("checkpoints/step-2").is_dir());
    assert_eq!(names(dir.path()), ["nan-model", "run"], "no aside folder left");
    // A --full run over a LoRA run: only the new run's files remain.
    ladder(&["sft", "--model", &fixture("qwen2-tiny"), "--data", &d, "--out", &o, "--overwrite", "--full", "--max-steps", "1", "--lr", "1e-4"]);
    let left = names(&out);
    assert!(left.contains(&"model.safetensors".to_string()), "{left:?}");
    assert!(!left.iter().any(|n| n.starts_with("adapter_") || n == "checkpoints"), "two runs mixed: {left:?}");
    assert_eq!(read_jsonl(out.join("metrics.jsonl")).len(), 1);
}

#[test]
fn a_run_that_fails_before_its_first_step_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let bad = nan_model(dir.path(), "nan-model");
    let out = dir.path().join("out");
    let err = ladder_fails(&["sft", "--model", &s(&bad), "--data", &fixture("data/sft.jsonl"), "--out", &s(&out), "--max-steps", "1"]);
    assert!(err.contains("NaN"), "{err}");
    assert!(!out.exists(), "no training_args.json or metrics.jsonl of a run that never trained");
}

// ---- 4, 5. No panic, no allocation of a row's size.

#[test]
fn init_std_nan_is_an_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(&dir.path().join("m"));
    let d = fixture("data/sft.jsonl");
    for std in ["--init-std=nan", "--init-std=-1"] {
        let err = ladder_fails(&["init", "--out", &out, "--tokenizer-data", &d, "--vocab-size", "300", "--hidden-size", "16", "--layers", "1", "--heads", "2", std]);
        assert!(err.contains("--init-std"), "{err}");
    }
}

#[test]
fn a_row_longer_than_the_model_positions_is_reported_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("long.jsonl");
    // The fixture has 128 positions; this completion alone is about 1,000 tokens.
    let long = "the quick brown fox jumps ".repeat(200);
    std::fs::write(&data, format!("{{\"prompt\": \"a\", \"completion\": \"b\"}}\n{{\"prompt\": \"a\", \"completion\": \"{long}\"}}\n")).unwrap();
    let out = dir.path().join("out");
    let err = ladder_fails(&["sft", "--model", &fixture("qwen2-tiny"), "--data", &s(&data), "--out", &s(&out), "--max-steps", "1"]);
    assert!(err.contains("long.jsonl:2") && err.contains("max_position_embeddings (128)") && err.contains("--max-seq-len"), "{err}");
    assert!(!out.exists());
    // Asked to truncate, it trains.
    ladder(&["sft", "--model", &fixture("qwen2-tiny"), "--data", &s(&data), "--out", &s(&out), "--max-steps", "1", "--max-seq-len", "64", "--lora-r", "2"]);
    // A preference pair too.
    let pairs = dir.path().join("long-pairs.jsonl");
    std::fs::write(&pairs, format!("{{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}}\n{{\"prompt\": \"a\", \"chosen\": \"{long}\", \"rejected\": \"c\"}}\n")).unwrap();
    let dpo_out = dir.path().join("dpo");
    let err = ladder_fails(&["dpo", "--model", &fixture("qwen2-tiny"), "--data", &s(&pairs), "--out", &s(&dpo_out), "--max-steps", "1"]);
    assert!(err.contains("long-pairs.jsonl:2") && err.contains("max_position_embeddings (128)"), "{err}");
    assert!(!dpo_out.exists());
}

// ---- 6, 7. NaN is never saved, nor served.

#[test]
fn a_step_that_makes_the_weights_non_finite_saves_nothing_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Step 1 runs at lr 0 (warmup), step 2 at 1e39, which is infinite in f32.
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), s(&out));
    let args = ["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "2", "--save-every", "1", "--warmup-steps", "1", "--lr-scheduler", "constant", "--lr", "1e39"];
    let err = ladder_fails(&args);
    assert!(err.contains("after step 2 are not finite") && err.contains("checkpoints/step-1"), "{err}");
    assert!(!out.join("adapter_model.safetensors").exists(), "no NaN adapter saved");
    assert_eq!(names(&out.join("checkpoints")), ["step-1"], "the good checkpoint stays, no half one");
}

#[test]
fn nan_weights_are_refused_at_load_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let bad = s(&nan_model(dir.path(), "nan-model"));
    let (prompts, pairs) = (fixture("data/prompts.jsonl"), fixture("data/dpo.jsonl"));
    let out = s(&dir.path().join("out.jsonl"));
    for args in [
        vec!["generate", "--model", &bad, "--data", &prompts, "--out", &out, "--max-new-tokens", "2"],
        vec!["logprobs", "--model", &bad, "--data", &pairs, "--out", &out],
    ] {
        let err = ladder_fails(&args);
        assert!(err.contains("model.layers.0.self_attn.q_proj.weight") && err.contains("NaN"), "{args:?}: {err}");
    }
    assert!(!Path::new(&out).exists());
    // An adapter whose lora_B holds NaN: merge refuses it.
    let adapter = dir.path().join("adapter");
    copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
    let file = ladder_model::TensorFile::open(&adapter.join("adapter_model.safetensors")).unwrap();
    let key = file.keys().find(|k| k.contains("lora_B")).unwrap().to_string();
    poison(&adapter.join("adapter_model.safetensors"), &key);
    let merged = dir.path().join("merged");
    let err = ladder_fails(&["merge", "--model", &fixture("qwen2-tiny"), "--adapter", &s(&adapter), "--out", &s(&merged)]);
    assert!(err.contains(&key) && err.contains("NaN"), "{err}");
    assert!(!merged.exists());
}

#[test]
fn rope_theta_zero_in_config_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let mut config = read_json(model.join("config.json"));
    config["rope_theta"] = serde_json::json!(0.0);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let out = s(&dir.path().join("out"));
    let err = ladder_fails(&["sft", "--model", &s(&model), "--data", &fixture("data/sft.jsonl"), "--out", &out, "--max-steps", "1"]);
    assert!(err.contains("config.json") && err.contains("rope_theta") && !err.contains("--lr"), "{err}");
    // `ladder init` does not write such a model.
    let d = fixture("data/sft.jsonl");
    let err = ladder_fails(&["init", "--out", &s(&dir.path().join("new")), "--tokenizer-data", &d, "--vocab-size", "300", "--hidden-size", "16", "--layers", "1", "--heads", "2", "--rope-theta", "0"]);
    assert!(err.contains("--rope-theta 0"), "{err}");
    assert!(!dir.path().join("new").exists());
}

// ---- 8, 9. Resume checks what the checkpoint belongs to; zero steps is no run.

#[test]
fn resume_refuses_a_checkpoint_of_another_run_naming_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    sft_run(&run, &["--max-steps", "3", "--save-every", "1"]);
    let ck = s(&run.join("checkpoints/step-1"));
    let (m, d) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"));
    let o = |name: &str| s(&dir.path().join(name));
    let base = |out: String| -> Vec<String> {
        ["sft", "--model", &m, "--data", &d, "--out", &out, "--lora-r", "2", "--batch-size", "2", "--seed", "3", "--max-steps", "3", "--resume", &ck]
            .map(String::from)
            .to_vec()
    };
    let fails = |args: Vec<String>| ladder_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = fails([base(o("a")), vec!["--lr".into(), "1e-3".into()]].concat());
    assert!(err.contains("another run") && err.contains("lr:") && err.contains("--resume-anyway"), "{err}");
    let mut other_batch = base(o("b"));
    let i = other_batch.iter().position(|a| a == "--batch-size").unwrap();
    other_batch[i + 1] = "1".into();
    let err = fails(other_batch);
    assert!(err.contains("global batch (batch_size × grad_accum × processes): 2 in the checkpoint, 1 now"), "{err}");
    let mut other_data = base(o("c"));
    let i = other_data.iter().position(|a| a == &d).unwrap();
    other_data[i] = fixture("data/chat.jsonl");
    assert!(fails(other_data).contains("data (--data)"));
    let mut other_model = base(o("d"));
    let i = other_model.iter().position(|a| a == &m).unwrap();
    other_model[i] = fixture("llama-tiny");
    assert!(fails(other_model).contains("model (--model)"));
    let err = ladder_fails(&["dpo", "--model", &m, "--data", &fixture("data/dpo.jsonl"), "--out", &o("e"), "--lora-r", "2", "--resume", &ck]);
    assert!(err.contains("objective: \"sft\" in the checkpoint, \"dpo\" now"), "{err}");
    // --resume-anyway continues, reporting the difference.
    let args = [base(o("f")), vec!["--lr".into(), "1e-3".into(), "--resume-anyway".into()]].concat();
    let out = ladder(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lr: "), "the difference is still reported");
    // The same inputs and options resume, whatever the --out and --save-every.
    ladder(&[base(o("g")), vec!["--save-every".into(), "5".into()]].concat().iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn zero_steps_is_an_error_not_an_untrained_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), s(&out));
    for extra in [["--max-steps", "0"], ["--epochs", "0"]] {
        let err = ladder_fails(&[&["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2"][..], &extra].concat());
        assert!(err.contains(extra[0]) && err.contains("no step"), "{err}");
        assert!(!out.exists());
    }
}

// ---- 14. Temporary files of killed runs are removed by the next run.

#[test]
fn the_next_run_removes_what_a_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    // What a killed merge and a killed generate left (pid 999999999 never exists).
    let stale_dir = dir.path().join(".merged.partial-999999999");
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("model.safetensors"), vec![0u8; 1000]).unwrap();
    let stale_file = dir.path().join(".out.jsonl.tmp-999999999");
    std::fs::write(&stale_file, b"{\"half\": ").unwrap();
    let (m, a) = (fixture("qwen2-tiny"), fixture("qwen2-tiny-lora-peft"));
    ladder(&["merge", "--model", &m, "--adapter", &a, "--out", &s(&dir.path().join("merged"))]);
    let out = s(&dir.path().join("out.jsonl"));
    ladder(&["generate", "--model", &m, "--data", &fixture("data/prompts.jsonl"), "--out", &out, "--max-new-tokens", "2"]);
    assert_eq!(names(dir.path()), ["merged", "out.jsonl"]);
}

// ---- 17-20. Messages that name the key, the file and the line.

#[test]
fn an_adapter_rank_that_disagrees_with_its_tensors_names_r() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
    let mut config = read_json(adapter.join("adapter_config.json"));
    let r = config["r"].as_u64().unwrap();
    let out = s(&dir.path().join("out.jsonl"));
    for bad in [r + 1, 0] {
        config["r"] = serde_json::json!(bad);
        std::fs::write(adapter.join("adapter_config.json"), config.to_string()).unwrap();
        let err = ladder_fails(&["logprobs", "--model", &fixture("qwen2-tiny"), "--adapter", &s(&adapter), "--data", &fixture("data/dpo.jsonl"), "--out", &out]);
        assert!(err.contains("adapter_config.json") && err.contains("key `r`"), "r = {bad}: {err}");
    }
}

#[test]
fn a_utf8_bom_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bom.jsonl");
    let text = std::fs::read_to_string(fixture("data/sft.jsonl")).unwrap();
    std::fs::write(&data, format!("\u{feff}{text}")).unwrap();
    let out = dir.path().join("out");
    let stdout = sft_run_with_data(&out, &data);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["skipped_rows"], 0, "the first row is not dropped");
    let references = dir.path().join("preds.jsonl");
    std::fs::write(&references, "\u{feff}{\"prediction\": \"a\", \"reference\": \"a\"}\n").unwrap();
    ladder(&["eval", "--predictions", &s(&references), "--out", &s(&dir.path().join("eval.json"))]);
}

fn sft_run_with_data(out: &Path, data: &Path) -> Vec<u8> {
    let (m, d, o) = (fixture("qwen2-tiny"), s(data), s(out));
    ladder(&["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "1"]).stdout
}

#[test]
fn predictions_in_another_format_are_called_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.parquet", "x.csv"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"prediction,reference\na,a\n").unwrap();
        let err = ladder_fails(&["eval", "--predictions", &s(&path), "--out", &s(&dir.path().join("eval.json"))]);
        assert!(err.contains(name) && err.contains("unsupported format") && !err.contains("malformed JSON"), "{err}");
    }
}

#[test]
fn messages_without_an_assistant_turn_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chat.jsonl");
    std::fs::write(
        &data,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = ladder_fails(&["sft", "--model", &fixture("qwen2-tiny"), "--data", &s(&data), "--out", &s(&out), "--max-steps", "1"]);
    assert!(err.contains("chat.jsonl:2") && err.contains("no assistant turn"), "{err}");
}

#[test]
fn a_hidden_size_not_divisible_by_the_heads_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let mut config = read_json(model.join("config.json"));
    let heads = config["num_attention_heads"].as_u64().unwrap();
    config["hidden_size"] = serde_json::json!(heads * 8 + 1);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let out = s(&dir.path().join("out.jsonl"));
    let err = ladder_fails(&["generate", "--model", &s(&model), "--data", &fixture("data/prompts.jsonl"), "--out", &out]);
    assert!(err.contains("hidden_size") && err.contains("not divisible by num_attention_heads"), "{err}");
}

// ---- 12. Model config inconsistencies are warned about.

#[test]
fn config_inconsistencies_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    let mut config = read_json(model.join("config.json"));
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    assert!(layers >= 2, "the fixture needs two layers for this test");
    config["num_hidden_layers"] = serde_json::json!(1);
    config["eos_token_id"] = serde_json::json!(config["vocab_size"].as_u64().unwrap() + 5);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let out = s(&dir.path().join("out.jsonl"));
    let output = ladder(&["generate", "--model", &s(&model), "--data", &fixture("data/prompts.jsonl"), "--out", &out, "--max-new-tokens", "200"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("num_hidden_layers is 1") && stderr.contains(&format!("holds {layers} layers")), "{stderr}");
    assert!(stderr.contains("eos_token_id") && stderr.contains("outside the vocabulary"), "{stderr}");
    assert!(stderr.contains("--max-new-tokens 200") && stderr.contains("max_position_embeddings (128)"), "{stderr}");
}

// ---- 21, 23. Flags named right; each cause printed once; no Rust debug text.

#[test]
fn init_heads_zero_names_heads() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(&dir.path().join("m"));
    let d = fixture("data/sft.jsonl");
    let err = ladder_fails(&["init", "--out", &out, "--tokenizer-data", &d, "--vocab-size", "300", "--hidden-size", "16", "--layers", "1", "--heads", "0"]);
    assert!(err.contains("--heads must be at least 1") && !err.contains("--kv-heads"), "{err}");
}

#[test]
fn errors_print_each_cause_once_and_warnings_no_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = format!("{}/out.jsonl", file.display());
    let preds = dir.path().join("preds.jsonl");
    std::fs::write(&preds, "{\"prediction\": \"a\", \"reference\": \"a\"}\n").unwrap();
    let err = ladder_fails(&["eval", "--predictions", &s(&preds), "--out", &out]);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    let os = line.find("(os error").expect(line);
    assert!(!line[os + 1..].contains("(os error"), "the cause is printed twice: {line}");
    // logprobs, like eval, names the path it could not write (item 15).
    let err = ladder_fails(&["logprobs", "--model", &fixture("qwen2-tiny"), "--data", &fixture("data/dpo.jsonl"), "--out", &out]);
    assert!(err.contains(&out) || err.contains(&s(&file)), "{err}");
    // A warning about --max-seq-len shows the number, not Rust's `Some(8)`.
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), s(&dir.path().join("run")));
    let output = ladder(&["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "1", "--max-seq-len", "8"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("truncated") && !stderr.contains("Some("), "{stderr}");
}

// ---- 22. A missing file is called missing, by the path the user gave.

#[test]
fn missing_files_are_described_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (d, out) = (fixture("data/sft.jsonl"), s(&dir.path().join("out")));
    // --model naming a file.
    let file = fixture("qwen2-tiny/config.json");
    let err = ladder_fails(&["sft", "--model", &file, "--data", &d, "--out", &out, "--max-steps", "1"]);
    assert!(err.contains("is a file; expected a model folder"), "{err}");
    // A missing --adapter.
    let err = ladder_fails(&["sft", "--model", &fixture("qwen2-tiny"), "--adapter", "/nonexistent/adapter", "--data", &d, "--out", &out, "--max-steps", "1"]);
    assert!(err.contains("adapter folder /nonexistent/adapter does not exist") && !err.contains("model folder"), "{err}");
    // A model without tokenizer_config.json.
    let model = dir.path().join("m");
    copy_dir(&fixtures().join("qwen2-tiny"), &model);
    std::fs::remove_file(model.join("tokenizer_config.json")).unwrap();
    let err = ladder_fails(&["sft", "--model", &s(&model), "--data", &d, "--out", &out, "--max-steps", "1"]);
    assert!(err.contains("tokenizer_config.json: file not found") && !err.contains("neither a pad nor an EOS"), "{err}");
    // init --tokenizer naming a folder without a tokenizer: that folder is named, not ours.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = ladder_fails(&["init", "--out", &s(&dir.path().join("new")), "--tokenizer", &s(&empty), "--hidden-size", "16", "--layers", "1", "--heads", "2"]);
    assert!(err.contains(&s(&empty)) && !err.contains(".partial"), "{err}");
}
