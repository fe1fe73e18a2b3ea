//! `ladder pairs` (degenerate outputs → DPO pairs) and `ladder eval --model`, end to end on
//! the tiny fixture model, whose greedy continuations loop — as an under-trained SFT model's do.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn pairs(out: &Path, extra: &[&str]) -> Value {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec!["pairs", "--model", &m, "--data", &d, "--out", &o];
    args.extend(extra);
    serde_json::from_slice(&ladder(&args).stdout).expect("summary on stdout")
}

#[test]
fn degenerate_samples_become_rejected_and_train_dpo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pairs.jsonl");
    let summary = pairs(&out, &["--samples", "2", "--max-new-tokens", "80", "--temperature", "0"]);
    assert!(summary["degenerate"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["by_rule"]["suffix_count"], summary["degenerate"]);
    let rows = read_jsonl(&out);
    assert_eq!(rows.len() as u64, summary["pairs"].as_u64().unwrap());
    let data = read_jsonl(fixture("data/sft.jsonl"));
    for row in &rows {
        let reference = data.iter().find(|d| d["prompt"] == row["prompt"]).expect("prompt from the data");
        assert_eq!(row["chosen"], reference["completion"], "chosen is the clean reference");
        assert_eq!(row["source"]["detector"]["degenerate"], true);
        assert_eq!(row["source"]["finish_reason"], "length");
        assert_eq!(row["source"]["synthetic"], false);
    }
    assert_eq!(read_json(dir.path().join("pairs.summary.json")), summary);
    // The pairs are `ladder dpo` data as they are (cut to the model's 128 positions: a prompt
    // and an 80-token loop of this byte-level tokenizer take more).
    let (m, p, o) = (fixture("qwen2-tiny"), out.to_string_lossy().into_owned(), dir.path().join("dpo").to_string_lossy().into_owned());
    ladder(&["dpo", "--model", &m, "--data", &p, "--out", &o, "--lora-r", "2", "--max-steps", "1", "--max-seq-len", "128"]);
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    // --min-score 1 (the top score, only the reference itself reaches it) keeps every distinct
    // sample, so the output shows the samples.
    let args = ["--samples", "3", "--max-new-tokens", "40", "--temperature", "1.0", "--min-score", "1", "--max-pairs-per-prompt", "0"];
    pairs(&dir.path().join("a.jsonl"), &[&args[..], &["--seed", "7"]].concat());
    pairs(&dir.path().join("b.jsonl"), &[&args[..], &["--seed", "7", "--batch-size", "3"]].concat());
    let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("a.jsonl"), read("b.jsonl"), "same seed, other batching: same pairs");
    pairs(&dir.path().join("c.jsonl"), &[&args[..], &["--seed", "8"]].concat());
    assert_ne!(read("a.jsonl"), read("c.jsonl"));
}

#[test]
fn synthetic_fallback_covers_prompts_without_a_degenerate_sample() {
    let dir = tempfile::tempdir().unwrap();
    // Three new tokens can never loop: every pair is synthetic.
    let summary = pairs(&dir.path().join("p.jsonl"), &["--samples", "1", "--max-new-tokens", "3", "--synthetic-fallback"]);
    assert_eq!(summary["degenerate"], 0);
    assert_eq!(summary["synthetic"], 8);
    for row in read_jsonl(dir.path().join("p.jsonl")) {
        assert_eq!(row["source"]["synthetic"], true);
        assert_eq!(row["source"]["detector"]["degenerate"], true, "{row}");
    }
    // Without the fallback there is nothing to write: a clear error and no file.
    let out = dir.path().join("none.jsonl");
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let err = ladder_fails(&["pairs", "--model", &m, "--data", &d, "--out", &o, "--samples", "1", "--max-new-tokens", "3"]);
    assert!(err.contains("no pairs") && err.contains("--synthetic-fallback"), "{err}");
    assert!(!out.exists());
}

#[test]
fn bad_pairs_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let (m, o) = (fixture("qwen2-tiny"), out.to_string_lossy().into_owned());
    let d = fixture("data/sft.jsonl");
    let err = ladder_fails(&["pairs", "--model", &m, "--data", &d, "--out", &o, "--samples", "0"]);
    assert!(err.contains("--samples"), "{err}");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"only a prompt\"}\n").unwrap();
    let b = bad.to_string_lossy().into_owned();
    let err = ladder_fails(&["pairs", "--model", &m, "--data", &b, "--out", &o]);
    assert!(err.contains("bad.jsonl:2") && err.contains("completion"), "{err}");
    assert!(!out.exists());
}

#[test]
fn eval_with_a_model_generates_times_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval/eval.json");
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let run = ladder(&["eval", "--model", &m, "--data", &d, "--out", &o, "--max-new-tokens", "80", "--price-per-hour", "1.0"]);
    assert!(String::from_utf8_lossy(&run.stdout).contains("score"));
    let report = read_json(&out);
    let agg = &report["aggregate"];
    assert_eq!(agg["count"], 8);
    assert!(agg["pages_per_s"].as_f64().unwrap() > 0.0 && agg["output_tokens_per_s"].as_f64().unwrap() > 0.0);
    let cost = agg["cost_per_million_pages"].as_f64().unwrap();
    assert!((cost - 1e6 / (agg["pages_per_s"].as_f64().unwrap() * 3600.0)).abs() < 1e-6 * cost);
    // Greedy continuations of a random model loop: the benchmark rule flags them.
    assert!(agg["degeneration_rate"].as_f64().unwrap() > 0.0, "{agg}");
    let predictions = read_jsonl(dir.path().join("eval/predictions.jsonl"));
    assert_eq!(predictions.len(), 8);
    // Re-scoring the written predictions gives the same scores.
    let p = dir.path().join("eval/predictions.jsonl").to_string_lossy().into_owned();
    let again = dir.path().join("again.json").to_string_lossy().into_owned();
    ladder(&["eval", "--predictions", &p, "--out", &again]);
    assert_eq!(read_json(&again)["aggregate"]["score"], agg["score"]);
}
