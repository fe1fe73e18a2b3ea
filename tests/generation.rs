//! `ladder generate` and the batched KV-cache decoder vs transformers' `model.generate`
//! (greedy, one prompt at a time; see `expected_generate` in scripts/make_fixtures.py).

use std::path::Path;

use ladder_model::generate::{generate, Request};
use ladder_model::{FinishReason, ForwardMode, GenerateConfig};
use serde_json::Value;

use crate::util::*;

/// The fixture prompts, run as ONE left-padded batch, must give transformers' per-prompt
/// greedy tokens row for row.
fn check_greedy(model: &str, adapter: Option<&str>, key: &str, repetition_penalty: f64) {
    check_greedy_on("cpu", model, adapter, key, repetition_penalty);
}

/// [`check_greedy`] on `device`.
pub(crate) fn check_greedy_on(device: &str, model: &str, adapter: Option<&str>, key: &str, repetition_penalty: f64) {
    let device = ladder_train::device::parse_device(device).unwrap();
    let adapter_dir = adapter.map(fixture);
    let loaded = ladder_train::setup::load(&fixture(model), adapter_dir.as_deref().map(Path::new), &device).unwrap();
    let expected = expected("generate.json");
    let case = &expected["cases"][key];
    let rows = case["rows"].as_array().unwrap();
    // Our tokenisation of data/prompts.jsonl is transformers'.
    let prompts = ladder_train::generate::read_prompts(&fixtures().join("data/prompts.jsonl"), &loaded.tokenizer, None).unwrap();
    assert_eq!(prompts.len(), rows.len());
    for (p, w) in prompts.iter().zip(rows) {
        assert_eq!(serde_json::json!(p.ids), w["prompt_ids"], "{key}: prompt ids");
    }
    let requests: Vec<Request> = prompts.iter().map(|p| Request { ids: p.ids.clone(), seed: 0 }).collect();
    let eos: Vec<u32> = serde_json::from_value(case["eos_token_ids"].clone()).unwrap();
    let config = GenerateConfig {
        max_new_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
        repetition_penalty,
        ..Default::default()
    };
    let decode = |ids: &[u32]| loaded.tokenizer.decode(ids, true).unwrap();
    let got = generate(&loaded.model, &requests, &config, &eos, &decode, ForwardMode::default());
    for (i, (g, w)) in got.iter().zip(rows).enumerate() {
        assert_eq!(serde_json::json!(g.token_ids), w["generated_ids"], "{key} row {i}: token ids");
        assert_eq!(g.text, w["text"].as_str().unwrap(), "{key} row {i}: text");
        assert_eq!(serde_json::json!(g.finish_reason), w["finish_reason"], "{key} row {i}");
    }
}

#[test]
fn greedy_matches_transformers_qwen2() {
    check_greedy("qwen2-tiny", None, "qwen2-tiny", 1.0);
}

#[test]
fn greedy_matches_transformers_llama() {
    check_greedy("llama-tiny", None, "llama-tiny", 1.0);
}

#[test]
fn greedy_matches_peft_with_adapter() {
    check_greedy("qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft", 1.0);
}

#[test]
fn repetition_penalty_matches_transformers() {
    check_greedy("qwen2-tiny", None, "qwen2-tiny/repetition_penalty", 1.5);
}

#[test]
fn extra_eos_id_ends_rows_as_transformers() {
    check_greedy("qwen2-tiny", None, "qwen2-tiny/eos", 1.0);
    let rows = &expected("generate.json")["cases"]["qwen2-tiny/eos"]["rows"];
    assert_eq!(rows[0]["finish_reason"], "eos", "the fixture must exercise EOS");
}

/// Runs `ladder generate` on the fixture prompts; returns the output rows.
fn generate_cli(dir: &Path, name: &str, extra: &[&str]) -> Vec<Value> {
    let out = dir.join(name);
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/prompts.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec!["generate", "--model", &m, "--data", &d, "--out", &o, "--max-new-tokens", "10"];
    args.extend(extra);
    ladder(&args);
    read_jsonl(&out)
}

#[test]
fn cli_writes_expected_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let got = generate_cli(dir.path(), "out.jsonl", &["--batch-size", "2"]);
    let inputs = read_jsonl(fixtures().join("data/prompts.jsonl"));
    let want = &expected("generate.json")["cases"]["qwen2-tiny"]["rows"];
    assert_eq!(got.len(), inputs.len());
    for (i, (g, input)) in got.iter().zip(&inputs).enumerate() {
        for (k, v) in input.as_object().unwrap() {
            assert_eq!(&g[k], v, "row {i}: input column {k} carried through");
        }
        assert_eq!(g["generated"], want[i]["text"], "row {i}");
        assert_eq!(g["n_tokens"], want[i]["generated_ids"].as_array().unwrap().len(), "row {i}");
        assert_eq!(g["finish_reason"], want[i]["finish_reason"], "row {i}");
    }
    assert!(!dir.path().join(".out.jsonl.tmp").exists());
    // The KV cache changes nothing but the speed.
    assert_eq!(generate_cli(dir.path(), "nocache.jsonl", &["--no-cache"]), got);
}

#[test]
fn cli_stop_string_cuts_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let want = &expected("generate.json")["cases"]["qwen2-tiny"]["rows"][0];
    let text = want["text"].as_str().unwrap();
    let stop = "The";
    let cut = text.find(stop).expect("the fixture text holds the stop string");
    let got = generate_cli(dir.path(), "out.jsonl", &["--stop", stop]);
    assert_eq!(got[0]["generated"], &text[..cut]);
    assert_eq!(got[0]["finish_reason"], "stop");
    assert!(got[0]["n_tokens"].as_u64().unwrap() < 10);
}

#[test]
fn cli_sampling_is_seeded_and_independent_of_batching() {
    let dir = tempfile::tempdir().unwrap();
    let sample = |name: &str, seed: &str, batch: &str| {
        generate_cli(dir.path(), name, &["--temperature", "1.0", "--top-p", "0.95", "--seed", seed, "--batch-size", batch])
    };
    let a = sample("a.jsonl", "1", "5");
    assert_eq!(a, sample("b.jsonl", "1", "5"), "same seed, same samples");
    assert_eq!(a, sample("c.jsonl", "1", "1"), "batching does not change samples");
    let other = sample("d.jsonl", "2", "5");
    assert_ne!(
        a.iter().map(|r| &r["generated"]).collect::<Vec<_>>(),
        other.iter().map(|r| &r["generated"]).collect::<Vec<_>>(),
        "another seed, other samples"
    );
    // top-k 1 sampling is greedy search.
    let greedy = generate_cli(dir.path(), "g.jsonl", &[]);
    let top1 = generate_cli(dir.path(), "k.jsonl", &["--temperature", "1.5", "--top-k", "1", "--seed", "9"]);
    assert_eq!(greedy, top1);
}

#[test]
fn cli_bad_row_names_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(&data, "{\"prompt\": \"ok\"}\n\n{\"text\": \"no prompt here\"}\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let (m, d, o) = (fixture("qwen2-tiny"), data.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let stderr = ladder_fails(&["generate", "--model", &m, "--data", &d, "--out", &o]);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{stderr}");
    assert!(lines[0].contains("bad.jsonl:3") && lines[0].contains("expected {\"prompt\""), "{stderr}");
    assert!(!out.exists(), "a failed run must not write {}", out.display());
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 1, "nothing but the input in {}: {entries:?}", dir.path().display());
}

#[test]
fn finish_reason_names() {
    for (reason, name) in [(FinishReason::Eos, "eos"), (FinishReason::Stop, "stop"), (FinishReason::Length, "length")] {
        assert_eq!(serde_json::to_value(reason).unwrap(), name);
    }
}
