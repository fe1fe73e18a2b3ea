//! Numbers checked against transformers and PEFT (fixtures made by scripts/make_fixtures.py).

use ladder_model::weights::{host, TensorFile};
use ladder_model::{ForwardMode, Tokens};

use crate::util::*;

/// Logits of `model` (+ optional PEFT adapter) on the fixture's input ids vs transformers'.
fn check_logits(model: &str, adapter: Option<&str>, expected_key: &str) {
    check_logits_on("cpu", model, adapter, expected_key);
}

/// [`check_logits`] on `device` (tests/gpu.rs runs it on the GPU code path).
pub(crate) fn check_logits_on(device: &str, model: &str, adapter: Option<&str>, expected_key: &str) {
    let device = ladder_train::device::parse_device(device).unwrap();
    let adapter_dir = adapter.map(fixture);
    let loaded = ladder_train::setup::load(&fixture(model), adapter_dir.as_deref().map(std::path::Path::new), &device)
        .unwrap();
    let expected = TensorFile::open(&fixtures().join("expected/logits.safetensors")).unwrap();
    // input_ids are int64, which TensorFile (floats only) does not read.
    let (shape, ids) = read_i64(&format!("{model}.input_ids"));
    let (b, t) = (shape[0], shape[1]);
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let logits = loaded.model.forward(&Tokens::new(&ids, b, t), ForwardMode::default());
    let got = host(logits);
    let want = expected.get(&format!("{expected_key}.logits"), None).unwrap();
    let diff = max_abs_diff(&got, &want.data);
    assert!(diff < 1e-4, "{expected_key}: max |logit diff| {diff:.2e} ≥ 1e-4");
}

fn read_i64(key: &str) -> (Vec<usize>, Vec<i64>) {
    let bytes = std::fs::read(fixtures().join("expected/logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(key).unwrap();
    let data = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    (view.shape().to_vec(), data)
}

#[test]
fn qwen2_logits_match_transformers() {
    check_logits("qwen2-tiny", None, "qwen2-tiny");
}

#[test]
fn llama_bf16_llama3_rope_logits_match_transformers() {
    check_logits("llama-tiny", None, "llama-tiny");
}

#[test]
fn mistral_f16_sharded_logits_match_transformers() {
    check_logits("mistral-tiny", None, "mistral-tiny");
}

#[test]
fn peft_lora_adapter_logits_match_peft() {
    check_logits("qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft");
}

#[test]
fn peft_rslora_adapter_logits_match_peft() {
    check_logits("qwen2-tiny", Some("qwen2-tiny-rslora-peft"), "qwen2-tiny+rslora-peft");
}

/// `ladder logprobs` on prompt/completion and preference rows vs transformers (TRL's convention).
pub(crate) fn check_logprobs(model: &str, adapter: Option<&str>, key: &str) {
    check_logprobs_with(model, adapter, key, &[]);
}

/// [`check_logprobs`] with more flags (`--device wgpu`).
pub(crate) fn check_logprobs_with(model: &str, adapter: Option<&str>, key: &str, extra: &[&str]) {
    check_logprobs_within(model, adapter, key, extra, 1e-3, 0.0);
}

/// [`check_logprobs_with`], each row's summed log-prob within `tol` plus `rel` of its size.
fn check_logprobs_within(model: &str, adapter: Option<&str>, key: &str, extra: &[&str], tol: f64, rel: f64) {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected("logprobs.json");
    for (data, kind) in [("data/sft.jsonl", "sft"), ("data/pairs.jsonl", "pairs")] {
        let out = dir.path().join(format!("{kind}.jsonl"));
        let (m, d, o) = (fixture(model), fixture(data), out.to_string_lossy().into_owned());
        let mut args = vec!["logprobs", "--model", &m, "--data", &d, "--out", &o];
        let a = adapter.map(fixture);
        if let Some(a) = &a {
            args.extend(["--adapter", a.as_str()]);
        }
        args.extend(extra);
        ladder(&args);
        let got = read_jsonl(&out);
        let want = expected[key][kind].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            for field in ["logp", "logp_chosen", "logp_rejected"] {
                if let Some(wv) = w[field].as_f64() {
                    let gv = g[field].as_f64().unwrap();
                    assert!((gv - wv).abs() < tol + rel * wv.abs(), "{key} {kind} row {}: {field} {gv} vs {wv}", w["index"]);
                }
            }
            for field in ["n_tokens", "n_tokens_chosen", "n_tokens_rejected"] {
                assert_eq!(g[field], w[field], "{key} {kind} {field}");
            }
        }
    }
}

#[test]
fn logprobs_match_transformers_qwen2() {
    check_logprobs("qwen2-tiny", None, "qwen2-tiny");
}

#[test]
fn logprobs_match_transformers_llama_with_bos() {
    check_logprobs("llama-tiny", None, "llama-tiny");
}

#[test]
fn logprobs_match_peft_with_adapter() {
    check_logprobs("qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft");
}

/// Three AdamW steps (batch 2, file order, clipping 1.0, weight decay 0.01 except bias/norm),
/// then the loss on the next batch: every number vs PyTorch.
fn check_sft(model: &str, key: &str, extra: &[&str]) {
    check_sft_within(model, key, extra, 1e-4);
}

/// [`check_sft`] with losses within `tol` (another device, or 16-bit precision); returns the
/// output folder's parent, which holds the trained model in `out/`.
pub(crate) fn check_sft_within(model: &str, key: &str, extra: &[&str], tol: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (m, d, o) = (fixture(model), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec![
        "sft", "--model", &m, "--data", &d, "--out", &o, "--lr", "1e-3", "--lr-scheduler", "constant",
        "--batch-size", "2", "--max-steps", "4", "--no-shuffle", "--weight-decay", "0.01",
        "--max-grad-norm", "1.0", "--adam-eps", "1e-8",
    ];
    args.extend(extra);
    ladder(&args);
    let metrics = read_jsonl(out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 4);
    let want = &expected("sft.json")[key];
    for step in 0..3 {
        let (g, w) = (metrics[step]["loss"].as_f64().unwrap(), want["losses"][step].as_f64().unwrap());
        assert!((g - w).abs() < tol, "{key} step {}: loss {g} vs PyTorch {w}", step + 1);
        let (g, w) = (metrics[step]["grad_norm"].as_f64().unwrap(), want["grad_norms"][step].as_f64().unwrap());
        assert!((g - w).abs() < 10.0 * tol * w.max(1.0), "{key} step {}: grad norm {g} vs {w}", step + 1);
    }
    // Step 4 evaluates rows 6-7 with the weights after three updates.
    let (g, w) = (metrics[3]["loss"].as_f64().unwrap(), want["loss_after"].as_f64().unwrap());
    assert!((g - w).abs() < tol, "{key}: loss after 3 steps {g} vs PyTorch {w}");
    dir
}

#[test]
fn sft_full_qwen2_matches_pytorch() {
    check_sft("qwen2-tiny", "qwen2-tiny/full", &["--full"]);
}

#[test]
fn sft_full_llama_matches_pytorch() {
    check_sft("llama-tiny", "llama-tiny/full", &["--full"]);
}

#[test]
fn sft_lora_matches_pytorch_peft() {
    let init = fixture("qwen2-tiny-lora-init");
    check_sft("qwen2-tiny", "qwen2-tiny/lora", &["--adapter", &init]);
}

/// TRL's tokenisation of text rows (prompt with special tokens, completion without, EOS
/// appended) gives the same ids as transformers' tokenizer, BOS included for the Llama-style
/// tokenizer. Conversational rows: tests/chat_trl.rs.
#[test]
fn tokenisation_matches_transformers() {
    let expected = expected("logprobs.json");
    let rows = read_jsonl(fixtures().join("data/sft.jsonl"));
    for model in ["qwen2-tiny", "llama-tiny"] {
        let tok = ladder_data::Tokenizer::from_dir(&fixtures().join(model)).unwrap();
        let want = expected[model]["sft"].as_array().unwrap();
        assert_eq!(rows.len(), want.len());
        for (row, w) in rows.iter().zip(want) {
            let prompt = ladder_data::Prompt::Text(row["prompt"].as_str().unwrap().into());
            let (p, c) = ladder_data::completion_ids(&tok, &prompt, row["completion"].as_str().unwrap()).unwrap();
            assert_eq!(serde_json::json!(p), w["prompt_ids"], "{model} prompt {}", row["prompt"]);
            assert_eq!(serde_json::json!(c), w["completion_ids"], "{model} completion {}", row["completion"]);
        }
    }
}

/// Chat templates render exactly as transformers' `apply_chat_template` (with and without the
/// generation prompt), and the rendered text encodes to the same ids.
#[test]
fn chat_templates_match_transformers() {
    let expected = expected("chat.json");
    let rows = read_jsonl(fixtures().join("data/chat.jsonl"));
    for model in ["qwen2-tiny", "llama-tiny"] {
        let tok = ladder_data::Tokenizer::from_dir(&fixtures().join(model)).unwrap();
        for (row, w) in rows.iter().zip(expected[model].as_array().unwrap()) {
            let messages: Vec<ladder_data::Message> = serde_json::from_value(row["messages"].clone()).unwrap();
            let text = tok.apply_chat_template(&messages, false).unwrap();
            assert_eq!(text, w["text"].as_str().unwrap(), "{model}");
            let prompt = tok.apply_chat_template(&messages[..messages.len() - 1], true).unwrap();
            assert_eq!(prompt, w["generation_prompt"].as_str().unwrap(), "{model}");
            assert_eq!(serde_json::json!(tok.encode(&text, false).unwrap()), w["ids"], "{model}");
        }
    }
}

/// `--precision bf16` (mixed precision: bf16 activations and frozen weights, f32 master weights
/// and moments) on the CPU's reference path: the first steps' losses within 0.02 of PyTorch's
/// f32 run, for full fine-tuning and LoRA (measured: 0.006 at most). bf16 keeps 8 significant
/// bits, ~2.4 decimal digits: one rounding of a loss of ~6 is up to 0.016.
#[test]
fn sft_bf16_follows_pytorch_f32() {
    parity_bf16("qwen2-tiny/full", &["--full", "--precision", "bf16"]);
    let init = fixture("qwen2-tiny-lora-init");
    let dir = parity_bf16("qwen2-tiny/lora", &["--adapter", &init, "--precision", "bf16"]);
    // The adapter trained in f32 (its master copy) and is saved so.
    let header = std::fs::read(dir.path().join("out/adapter_model.safetensors")).unwrap();
    let text = String::from_utf8_lossy(&header[8..header.len().min(4096)]).into_owned();
    assert!(text.contains("\"F32\"") && !text.contains("\"BF16\""), "the adapter is saved in f32: {text}");
}

fn parity_bf16(key: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = check_sft_within("qwen2-tiny", key, extra, 0.02);
    let args = read_json(dir.path().join("out/training_args.json"));
    assert_eq!(args["precision"], "bf16", "{key}: training_args.json records the precision");
    dir
}

/// Inference in 16 bits (`--precision`, also for `generate`, `eval` and `pairs`): each row's
/// summed log-prob within 0.5% of transformers' f32 value (measured at most: bf16 0.18%, f16
/// 0.02%; bf16's own rounding is 0.4%).
#[test]
fn logprobs_in_16_bits_follow_transformers() {
    for precision in ["bf16", "f16"] {
        check_logprobs_within("qwen2-tiny", None, "qwen2-tiny", &["--precision", precision], 0.0, 0.005);
    }
}
