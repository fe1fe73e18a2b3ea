//! `ladder dpo` end to end: every loss and metric against PyTorch (TRL's formulas), the
//! reference strategies, the precomputed-reference cache, and bad input.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

const METRICS: [&str; 10] = [
    "loss",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
];

/// Runs `ladder dpo` on the fixture pairs (batch 2, file order, the optimiser settings of the
/// fixture script) and returns (report, metrics.jsonl rows).
fn dpo(out: &Path, extra: &[&str]) -> (Value, Vec<Value>) {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/dpo.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec![
        "dpo", "--model", &m, "--data", &d, "--out", &o, "--lr-scheduler", "constant",
        "--batch-size", "2", "--no-shuffle", "--weight-decay", "0.01", "--max-grad-norm", "1.0",
    ];
    args.extend(extra);
    let output = ladder(&args);
    let report: Value = serde_json::from_slice(&output.stdout).expect("report on stdout");
    (report, read_jsonl(out.join("metrics.jsonl")))
}

/// Each metric of each of the first three steps within 1e-4 of PyTorch (relative for the
/// summed log-probs, whose magnitude is ~50).
pub(crate) fn check(key: &str, extra: &[&str]) {
    check_ties(key, extra, false);
}

/// [`check`]; with `ties_are_noise`, the reward accuracy of a step where PyTorch's policy
/// equals its reference exactly (every reward 0, a tie) is not compared: which side of a tie
/// wins is then float rounding, which on a GPU differs between the trained policy's pass and the
/// reference's (flash attention and blocked log-probs serve only the latter). The rewards and
/// margins themselves are still compared.
pub(crate) fn check_ties(key: &str, extra: &[&str], ties_are_noise: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (_, got) = dpo(&dir.path().join("out"), extra);
    let want = expected("dpo.json")[key].as_array().unwrap().clone();
    assert!(got.len() >= 3);
    for (step, w) in want.iter().enumerate() {
        let tie = ["rewards/chosen", "rewards/rejected"].iter().all(|m| w[*m].as_f64() == Some(0.0));
        for name in METRICS {
            if ties_are_noise && tie && name == "rewards/accuracies" {
                continue;
            }
            let (g, e) = (got[step][name].as_f64().unwrap(), w[name].as_f64().unwrap());
            assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "{key} step {}: {name} {g} vs PyTorch {e}", step + 1);
        }
    }
}

pub(crate) fn lora_init() -> String {
    fixture("qwen2-tiny-lora-init")
}

pub(crate) const LORA: [&str; 6] = ["--lr", "1e-3", "--max-steps", "3", "--reference", "frozen"];
pub(crate) const FULL: [&str; 7] = ["--lr", "1e-3", "--max-steps", "3", "--full", "--reference", "frozen"];

#[test]
fn sigmoid_lora_and_full_match_pytorch() {
    let a = lora_init();
    check("lora/sigmoid", &[&LORA[..], &["--adapter", &a]].concat());
    check("full/sigmoid", &FULL);
}

#[test]
fn ipo_lora_and_full_match_pytorch() {
    let a = lora_init();
    check("lora/ipo", &[&LORA[..], &["--adapter", &a, "--loss", "ipo"]].concat());
    check("full/ipo", &[&FULL[..], &["--loss", "ipo"]].concat());
}

#[test]
fn hinge_lora_and_full_match_pytorch() {
    let a = lora_init();
    check("lora/hinge", &[&LORA[..], &["--adapter", &a, "--loss", "hinge"]].concat());
    check("full/hinge", &[&FULL[..], &["--loss", "hinge"]].concat());
}

#[test]
fn robust_and_label_smoothing_match_pytorch() {
    let a = lora_init();
    let robust = ["--loss", "robust", "--label-smoothing", "0.1"];
    check("lora/robust", &[&LORA[..], &["--adapter", &a], &robust].concat());
    check("full/robust", &[&FULL[..], &robust].concat());
    let smoothed = ["--label-smoothing", "0.1"];
    check("lora/sigmoid-smoothed", &[&LORA[..], &["--adapter", &a], &smoothed].concat());
    check("full/sigmoid-smoothed", &[&FULL[..], &smoothed].concat());
}

#[test]
fn rpo_sft_term_matches_pytorch() {
    let a = lora_init();
    check("lora/rpo", &[&LORA[..], &["--adapter", &a, "--sft-weight", "0.5"]].concat());
    check("full/rpo", &[&FULL[..], &["--sft-weight", "0.5"]].concat());
}

/// Precomputed reference log-probs give the frozen reference's numbers; a second run hits the
/// cache, any changed input misses it, and a corrupted or truncated file is recomputed.
#[test]
fn precomputed_reference_and_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let c = cache.to_string_lossy().into_owned();
    let a = lora_init();
    let args = ["--lr", "1e-3", "--max-steps", "3", "--adapter", &a, "--reference", "precomputed", "--reference-cache", &c];
    let (report, first) = dpo(&dir.path().join("a"), &args);
    assert_eq!(report["reference_cache"], "miss");
    let want = &expected("dpo.json")["lora/sigmoid"];
    for step in 0..3 {
        for name in METRICS {
            let (g, e) = (first[step][name].as_f64().unwrap(), want[step][name].as_f64().unwrap());
            assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "precomputed step {}: {name} {g} vs {e}", step + 1);
        }
    }
    let file = report["reference_cache_file"].as_str().unwrap().to_string();
    let (report, again) = dpo(&dir.path().join("b"), &args);
    assert_eq!(report["reference_cache"], "hit");
    assert_eq!(report["reference_cache_file"], file.as_str());
    assert_eq!(again[2]["loss"], first[2]["loss"]);
    // Other data (one pair fewer) or another adapter: another key, a miss.
    let fewer = dir.path().join("fewer.jsonl");
    let text = std::fs::read_to_string(fixture("data/dpo.jsonl")).unwrap();
    std::fs::write(&fewer, text.lines().take(4).collect::<Vec<_>>().join("\n")).unwrap();
    let f = fewer.to_string_lossy().into_owned();
    let (m, o) = (fixture("qwen2-tiny"), dir.path().join("c").to_string_lossy().into_owned());
    let out = ladder(&["dpo", "--model", &m, "--data", &f, "--out", &o, "--adapter", &a, "--reference", "precomputed", "--reference-cache", &c, "--max-steps", "1"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reference_cache"], "miss");
    let peft = fixture("qwen2-tiny-lora-peft");
    let other = ["--max-steps", "1", "--adapter", &peft, "--reference", "precomputed", "--reference-cache", &c];
    assert_eq!(dpo(&dir.path().join("d"), &other).0["reference_cache"], "miss");
    // A corrupted value, then a truncated file: detected, recomputed, same numbers.
    let json = std::fs::read_to_string(&file).unwrap();
    let first_value = json.split("\"chosen\":[").nth(1).unwrap().split(',').next().unwrap().to_string();
    std::fs::write(&file, json.replacen(&first_value, "-1.0", 1)).unwrap();
    let (report, redo) = dpo(&dir.path().join("e"), &args);
    assert_eq!(report["reference_cache"], "recomputed");
    assert_eq!(redo[2]["loss"], first[2]["loss"]);
    std::fs::write(&file, &json[..json.len() / 2]).unwrap();
    let (report, redo) = dpo(&dir.path().join("f"), &args);
    assert_eq!(report["reference_cache"], "recomputed");
    assert_eq!(redo[2]["loss"], first[2]["loss"]);
    assert_eq!(dpo(&dir.path().join("g"), &args).0["reference_cache"], "hit");
}

/// With a new adapter (B = 0) the policy is its reference at step 0: rewards are exactly 0;
/// training then raises accuracy and margins.
#[test]
fn fresh_adapter_starts_at_zero_reward_and_learns_the_preference() {
    let dir = tempfile::tempdir().unwrap();
    let (report, m) = dpo(&dir.path().join("out"), &["--lora-r", "4", "--lr", "1e-2", "--epochs", "8", "--seed", "1"]);
    assert_eq!(report["reference"], "adapter-off");
    assert_eq!(m.len(), 24);
    for name in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert!(m[0][name].as_f64().unwrap().abs() < 1e-6, "{name} at step 1: {}", m[0][name]);
    }
    assert!((m[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-5);
    let mean = |rows: &[Value], k: &str| rows.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / rows.len() as f64;
    let (early, late) = (&m[..3], &m[21..]);
    assert!(mean(late, "rewards/accuracies") > mean(early, "rewards/accuracies"));
    assert!(mean(late, "rewards/accuracies") >= 0.99);
    assert!(mean(late, "rewards/margins") > mean(early, "rewards/margins") + 0.1);
    assert!(dir.path().join("out/adapter_model.safetensors").exists());
}

/// Continuing an adapter with adapter-off would silently make the raw base the reference.
#[test]
fn adapter_off_after_an_adapter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let (m, d, a) = (fixture("qwen2-tiny"), fixture("data/dpo.jsonl"), lora_init());
    let err = ladder_fails(&["dpo", "--model", &m, "--data", &d, "--out", &out, "--adapter", &a, "--reference", "adapter-off"]);
    assert!(err.contains("--reference: adapter-off") && err.contains("raw base model") && err.contains("use frozen"), "{err}");
    let err = ladder_fails(&["dpo", "--model", &m, "--data", &d, "--out", &out, "--full", "--reference", "adapter-off"]);
    assert!(err.contains("--full"), "{err}");
    assert!(!Path::new(&out).exists());
}

fn dpo_fails_on(rows: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.jsonl");
    std::fs::write(&data, rows).unwrap();
    let out = dir.path().join("out");
    let (m, d, o) = (fixture("qwen2-tiny"), data.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let mut args = vec!["dpo", "--model", &m, "--data", &d, "--out", &o];
    args.extend(extra);
    let err = ladder_fails(&args);
    assert!(!out.exists(), "a failed run must not create its output");
    err
}

#[test]
fn bad_pairs_name_their_line() {
    let ok = r#"{"prompt": "a b", "chosen": " c", "rejected": " d"}"#;
    let err = dpo_fails_on(&format!("{ok}\n{{\"prompt\": \"a\", \"chosen\": \"\", \"rejected\": \"x\"}}\n"), &[]);
    assert!(err.contains("p.jsonl:2") && err.contains("\"chosen\" is empty"), "{err}");
    let err = dpo_fails_on(&format!("{ok}\n{{\"prompt\": \"a\", \"rejected\": \"x\"}}\n"), &[]);
    assert!(err.contains("p.jsonl:2") && err.contains("chosen"), "{err}");
    let err = dpo_fails_on(&format!("{{\"prompt\": \"a\", \"chosen\": \"x\", \"rejected\": \"x\"}}\n{ok}\n"), &[]);
    assert!(err.contains("p.jsonl:1") && err.contains("identical"), "{err}");
    let err = dpo_fails_on(&format!("{ok}\n{{\"prompt\": \"a\", \"completion\": \"x\"}}\n"), &[]);
    assert!(err.contains("p.jsonl:2") && err.contains("\"rejected\""), "{err}");
}

/// Long prompts are skipped and counted, or cut from the left with --truncate-prompts.
#[test]
fn long_prompts_are_skipped_or_truncated_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["--max-steps", "1", "--lora-r", "2", "--max-seq-len", "24", "--max-prompt-len", "8"];
    let (report, _) = dpo(&dir.path().join("skip"), &common);
    let skipped = report["skipped_long_prompts"].as_u64().unwrap();
    assert!(skipped >= 1, "{report}");
    assert_eq!(report["pairs"].as_u64().unwrap() + skipped, 6);
    let (report, _) = dpo(&dir.path().join("cut"), &[&common[..], &["--truncate-prompts"]].concat());
    assert_eq!(report["pairs"], 6);
    assert_eq!(report["truncated_prompts"].as_u64().unwrap(), skipped);
    // Every prompt too long: nothing left, a clear error.
    let err = dpo_fails_on("{\"prompt\": \"one two three four five six\", \"chosen\": \" a\", \"rejected\": \" b\"}\n", &["--max-prompt-len", "2"]);
    assert!(err.contains("no preference pairs left"), "{err}");
}

/// A diverging run stops with the step and the rows of the offending batch.
#[test]
fn non_finite_loss_names_step_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let (m, d) = (fixture("qwen2-tiny"), fixture("data/dpo.jsonl"));
    let err = ladder_fails(&[
        "dpo", "--model", &m, "--data", &d, "--out", &out, "--full", "--reference", "frozen", "--lr", "1e30",
        "--max-grad-norm", "0", "--batch-size", "2", "--no-shuffle", "--lr-scheduler", "constant", "--max-steps", "3",
    ]);
    assert!(err.contains("non-finite loss") && err.contains("at step 2") && err.contains("dpo.jsonl:3"), "{err}");
}

/// The conversational form: prompt as messages rendered with the chat template, chosen and
/// rejected as assistant messages; Parquet-like nesting in JSONL.
#[test]
fn conversational_pairs_train() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chat_pairs.jsonl");
    let row = |u: &str, c: &str, r: &str| {
        serde_json::json!({
            "prompt": [{"role": "system", "content": "Transcribe."}, {"role": "user", "content": u}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        })
        .to_string()
    };
    std::fs::write(&data, format!("{}\n{}\n", row("Tlie fox", "The fox", "The The The The"), row("rnodern", "modern", "mo mo mo mo mo"))).unwrap();
    let (m, d, o) = (fixture("qwen2-tiny"), data.to_string_lossy().into_owned(), dir.path().join("out").to_string_lossy().into_owned());
    let out = ladder(&["dpo", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "2", "--batch-size", "2"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pairs"], 2);
    let metrics = read_jsonl(dir.path().join("out/metrics.jsonl"));
    assert!((metrics[0]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-5);
}
