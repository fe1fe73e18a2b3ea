//! Training end to end on the tiny fixtures: the loss goes down, outputs load back, resume
//! continues exactly, merge is exact, Parquet equals JSONL.

use ladder_model::weights::host;
use ladder_model::{ForwardMode, Tokens};

use crate::util::*;

fn sft(out: &std::path::Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec!["sft", "--model", &m, "--data", &d, "--out", &o, "--batch-size", "2"];
    args.extend(extra);
    ladder(&args);
    read_jsonl(out.join("metrics.jsonl"))
}

fn logits(model_dir: &str, adapter: Option<&std::path::Path>) -> Vec<f32> {
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let loaded = ladder_train::setup::load(model_dir, adapter, &device).unwrap();
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 % 300) as u32).collect();
    host(loaded.model.forward(&Tokens::new(&ids, 2, 12), ForwardMode::default()))
}

#[test]
fn lora_sft_loss_goes_down_and_saves_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lora");
    let metrics = sft(&out, &["--lr", "1e-2", "--epochs", "6", "--lora-r", "4", "--seed", "3"]);
    assert_eq!(metrics.len(), 24);
    let first: f64 = metrics[..4].iter().map(|m| m["loss"].as_f64().unwrap()).sum::<f64>() / 4.0;
    let last: f64 = metrics[20..].iter().map(|m| m["loss"].as_f64().unwrap()).sum::<f64>() / 4.0;
    assert!(last < 0.7 * first, "loss did not go down: first epoch {first:.3}, last {last:.3}");
    for key in ["step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"] {
        assert!(metrics[0].get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    // PEFT's layout: the keys and shapes PEFT itself wrote for the same targets and rank.
    let ours = ladder_model::TensorFile::open(&out.join("adapter_model.safetensors")).unwrap();
    let peft = ladder_model::TensorFile::open(&fixtures().join("qwen2-tiny-lora-peft/adapter_model.safetensors")).unwrap();
    let mut keys: Vec<&str> = ours.keys().collect();
    let mut peft_keys: Vec<&str> = peft.keys().collect();
    keys.sort();
    peft_keys.sort();
    assert_eq!(keys, peft_keys);
    for k in keys {
        assert_eq!(ours.get(k, None).unwrap().shape, peft.get(k, None).unwrap().shape, "{k}");
    }
    let config = read_json(out.join("adapter_config.json"));
    let peft_config = read_json(fixtures().join("qwen2-tiny-lora-peft/adapter_config.json"));
    for key in ["peft_type", "task_type", "r", "lora_alpha", "use_rslora", "bias"] {
        assert_eq!(config[key], peft_config[key], "adapter_config.json {key}");
    }
    let mut targets: Vec<String> = serde_json::from_value(config["target_modules"].clone()).unwrap();
    let mut peft_targets: Vec<String> = serde_json::from_value(peft_config["target_modules"].clone()).unwrap();
    targets.sort();
    peft_targets.sort();
    assert_eq!(targets, peft_targets);
    // The trained adapter changes the model.
    let base = logits(&fixture("qwen2-tiny"), None);
    let tuned = logits(&fixture("qwen2-tiny"), Some(&out));
    assert!(max_abs_diff(&base, &tuned) > 1e-2);
}

#[test]
fn full_sft_writes_a_checkpoint_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("full");
    sft(&out, &["--full", "--lr", "1e-3", "--max-steps", "2"]);
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_args.json"] {
        assert!(out.join(f).exists(), "{f} missing from the output");
    }
    let before = logits(&fixture("qwen2-tiny"), None);
    let after = logits(&out.to_string_lossy(), None);
    assert!(max_abs_diff(&before, &after) > 1e-3, "weights did not change");
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let args = ["--lr", "5e-3", "--max-steps", "4", "--lora-r", "4", "--save-every", "2", "--seed", "9"];
    let full_run = sft(&whole, &args);
    let part = dir.path().join("part");
    let mut first_half = args.to_vec();
    first_half[3] = "2";
    sft(&part, &first_half);
    // A run stopped after step 2 (its last checkpoint is the final output) then resumed from
    // the uninterrupted run's step-2 checkpoint must replay steps 3-4 exactly.
    let ckpt = whole.join("checkpoints/step-2");
    assert!(ckpt.join("trainer_state.json").exists());
    let resumed_out = dir.path().join("resumed");
    let ck = ckpt.to_string_lossy().into_owned();
    let mut resume_args = args.to_vec();
    resume_args.extend(["--resume", &ck]);
    let resumed = sft(&resumed_out, &resume_args);
    assert_eq!(resumed.len(), 2, "a resumed run logs only the steps it ran");
    for (r, w) in resumed.iter().zip(&full_run[2..]) {
        assert_eq!(r["step"], w["step"]);
        let (a, b) = (r["loss"].as_f64().unwrap(), w["loss"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "step {}: resumed loss {a} vs uninterrupted {b}", r["step"]);
    }
    let part_metrics = read_jsonl(part.join("metrics.jsonl"));
    assert_eq!(part_metrics[1]["loss"], full_run[1]["loss"], "same seed, same first steps");
    // And the same weights, bit for bit.
    let name = "adapter_model.safetensors";
    assert_same_tensors(&whole.join(name), &resumed_out.join(name));
}

#[test]
fn merge_equals_adapter_applied() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged");
    let (m, a, o) = (fixture("qwen2-tiny"), fixture("qwen2-tiny-lora-peft"), out.to_string_lossy().into_owned());
    ladder(&["merge", "--model", &m, "--adapter", &a, "--out", &o]);
    let merged = logits(&o, None);
    let applied = logits(&m, Some(std::path::Path::new(&a)));
    let diff = max_abs_diff(&merged, &applied);
    assert!(diff < 1e-4, "merged vs adapter logits differ by {diff}");
}

#[test]
fn parquet_trains_like_jsonl_and_chat_rows_train() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--full", "--max-steps", "1", "--no-shuffle", "--lr", "1e-3"];
    let (m, p) = (fixture("qwen2-tiny"), fixture("data/sft.parquet"));
    let out = dir.path().join("pq").to_string_lossy().into_owned();
    let mut args = vec!["sft", "--model", &m, "--data", &p, "--out", &out, "--batch-size", "2"];
    args.extend(common);
    ladder(&args);
    let jsonl = sft(&dir.path().join("js"), &common);
    let parquet = read_jsonl(dir.path().join("pq/metrics.jsonl"));
    assert_eq!(parquet[0]["loss"], jsonl[0]["loss"]);
    // Conversational rows with the chat template, from Parquet list<struct> columns too.
    for data in ["data/chat.jsonl", "data/chat.parquet", "data/text.jsonl"] {
        let d = fixture(data);
        let o = dir.path().join(data.replace('/', "_")).to_string_lossy().into_owned();
        ladder(&["sft", "--model", &m, "--data", &d, "--out", &o, "--max-steps", "1", "--lora-r", "2"]);
        let loss = read_jsonl(format!("{o}/metrics.jsonl"))[0]["loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{data}: loss {loss}");
    }
}

/// `ladder init` makes a model from scratch that trains, and refuses to clobber one.
#[test]
fn init_makes_a_trainable_model_with_its_own_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    let (m, text, sft_data) = (model.to_string_lossy().into_owned(), fixture("data/text.jsonl"), fixture("data/sft.jsonl"));
    let args = ["init", "--out", &m, "--tokenizer-data", &text, "--tokenizer-data", &sft_data, "--vocab-size", "400", "--hidden-size", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2"];
    let out = ladder(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = read_json(model.join("config.json"));
    assert_eq!(config["vocab_size"], report["vocab_size"]);
    assert_eq!(config["architectures"][0], "Qwen2ForCausalLM");
    let tok = ladder_data::Tokenizer::from_dir(&model).unwrap();
    let unseen = "Procuração — 日本";
    assert_eq!(tok.decode(&tok.encode(unseen, true).unwrap(), false).unwrap(), unseen, "byte-level: nothing is unknown");
    let o = dir.path().join("pre").to_string_lossy().into_owned();
    ladder(&["sft", "--model", &m, "--data", &text, "--out", &o, "--full", "--max-steps", "2", "--lr", "1e-3"]);
    let err = ladder_fails(&args);
    assert!(err.contains("is not empty") && err.contains("model.safetensors") && err.contains("--overwrite"), "{err}");
    let small = dir.path().join("small").to_string_lossy().into_owned();
    let err = ladder_fails(&["init", "--out", &small, "--tokenizer-data", &text, "--vocab-size", "100"]);
    assert!(err.contains("--vocab-size 100"), "{err}");
    assert!(!std::path::Path::new(&small).exists());
}
