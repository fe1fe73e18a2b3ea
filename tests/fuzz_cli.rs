//! The whole CLI under random bad input (issue 19, "Done when"): a fixed number of seeded runs
//! of every command with edge-case flag values and truncated or corrupted data and weights.
//! Whatever happens: no panic, no exit 0 with a non-finite result, and nothing under the output
//! path but complete outputs (no temporary or half-written file, no aside folder).

use std::path::Path;
use std::process::Command;

use crate::fuzz_smoke::{mutate, Rng};
use crate::util::*;

/// Values that have broken parsers and range checks before.
const VALUES: [&str; 12] = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e39", "1e-45", "", "abc", "18446744073709551616"];

/// Each command with its usual flags, the inputs it reads and the numeric flags to fuzz.
struct Case {
    cmd: &'static str,
    data: &'static str,
    flags: &'static [&'static str],
    /// Whether `--out` is a folder.
    folder: bool,
}

const CASES: [Case; 8] = [
    Case { cmd: "generate", data: "data/prompts.jsonl", flags: &["--max-new-tokens", "--temperature", "--top-k", "--top-p", "--repetition-penalty", "--batch-size"], folder: false },
    Case { cmd: "logprobs", data: "data/dpo.jsonl", flags: &[], folder: false },
    Case { cmd: "pairs", data: "data/pairs.jsonl", flags: &["--samples", "--max-new-tokens", "--temperature", "--min-score", "--suffix-chars", "--min-suffix-count"], folder: false },
    Case { cmd: "eval", data: "data/references.jsonl", flags: &["--max-new-tokens", "--price-per-hour"], folder: false },
    Case { cmd: "sft", data: "data/sft.jsonl", flags: &["--lr", "--lora-r", "--lora-alpha", "--adam-beta2", "--adam-eps", "--max-grad-norm", "--batch-size", "--max-seq-len", "--warmup-steps"], folder: true },
    Case { cmd: "dpo", data: "data/dpo.jsonl", flags: &["--beta", "--lr", "--label-smoothing", "--max-seq-len", "--lora-r"], folder: true },
    Case { cmd: "merge", data: "", flags: &[], folder: true },
    Case { cmd: "init", data: "data/sft.jsonl", flags: &["--vocab-size", "--hidden-size", "--layers", "--heads", "--kv-heads", "--init-std", "--rope-theta", "--max-position-embeddings"], folder: true },
];

/// A corrupted copy of `src` in `dst`: truncated, or bytes flipped, inserted and deleted.
fn corrupt(src: &Path, dst: &Path, rng: &mut Rng) {
    let bytes = std::fs::read(src).unwrap();
    let bad = if rng.below(2) == 0 { bytes[..rng.below(bytes.len())].to_vec() } else { mutate(&bytes, rng) };
    std::fs::write(dst, bad).unwrap();
}

/// Names under `dir`, recursively, relative to it.
fn all_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            all_files(&entry.path(), &format!("{name}/"), out);
        }
        out.push(name);
    }
}

fn finite_numbers(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        serde_json::Value::Array(a) => a.iter().all(finite_numbers),
        serde_json::Value::Object(o) => o.values().all(finite_numbers),
        _ => true,
    }
}

#[test]
fn every_command_survives_random_bad_input() {
    let mut rng = Rng(0x5eed_1905_c0ff_ee11);
    for run in 0..48 {
        let case = &CASES[run % CASES.len()];
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        copy_dir(&fixtures().join("qwen2-tiny"), &model);
        let adapter = dir.path().join("adapter");
        copy_dir(&fixtures().join("qwen2-tiny-lora-peft"), &adapter);
        let data = dir.path().join("data.jsonl");
        if !case.data.is_empty() {
            std::fs::copy(fixture(case.data), &data).unwrap();
        }
        let mut what = Vec::new();
        match rng.below(6) {
            0 if !case.data.is_empty() => {
                corrupt(&fixtures().join(case.data), &data, &mut rng);
                what.push("corrupt data".to_string());
            }
            1 => {
                corrupt(&fixtures().join("qwen2-tiny/model.safetensors"), &model.join("model.safetensors"), &mut rng);
                what.push("corrupt weights".into());
            }
            2 => {
                corrupt(&fixtures().join("qwen2-tiny/config.json"), &model.join("config.json"), &mut rng);
                what.push("corrupt config".into());
            }
            3 => {
                crate::promises::poison(&model.join("model.safetensors"), "model.norm.weight");
                what.push("NaN weights".into());
            }
            _ => {}
        }
        let out = dir.path().join(if case.folder { "out" } else { "out.jsonl" });
        let (m, a, d, o) = (model.to_string_lossy().into_owned(), adapter.to_string_lossy().into_owned(), data.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
        let mut args: Vec<String> = vec![case.cmd.into()];
        if case.cmd != "init" {
            args.extend(["--model".into(), m]);
        }
        match case.cmd {
            "merge" => args.extend(["--adapter".into(), a]),
            "init" => args.extend(["--tokenizer-data", d.as_str(), "--vocab-size", "300", "--hidden-size", "16", "--layers", "1", "--heads", "2"].map(String::from)),
            "sft" | "dpo" => args.extend(["--data".into(), d, "--max-steps".into(), "2".into(), "--lora-r".into(), "2".into()]),
            _ => args.extend(["--data".into(), d, "--max-new-tokens".into(), "3".into()]),
        }
        if case.cmd == "logprobs" || case.cmd == "merge" {
            args.retain(|x| x != "--max-new-tokens" && x != "3");
        }
        args.extend(["--out".into(), o]);
        if !case.flags.is_empty() && rng.below(3) > 0 {
            let (flag, value) = (case.flags[rng.below(case.flags.len())], VALUES[rng.below(VALUES.len())]);
            args.push(format!("{flag}={value}"));
            what.push(format!("{flag}={value}"));
        }
        let output = Command::new(env!("CARGO_BIN_EXE_ladder")).args(&args).env("RUST_LOG", "warn").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("run {run}: ladder {} ({})\n{stderr}", args.join(" "), what.join(", "));
        assert!(!stderr.contains("panicked") && output.status.code().is_some(), "{context}");
        let mut files = Vec::new();
        all_files(dir.path(), "", &mut files);
        assert!(
            !files.iter().any(|f| f.contains(".tmp") || f.contains(".partial") || f.contains(".replaced")),
            "temporary files left: {files:?}\n{context}"
        );
        if !output.status.success() {
            continue;
        }
        // Success: the outputs are whole and finite.
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines().filter(|l| l.starts_with('{')) {
            let report: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{context}"));
            assert!(finite_numbers(&report), "a non-finite number reported as success: {line}\n{context}");
        }
        if case.cmd == "merge" || case.cmd == "init" {
            // A complete model folder whose config and weights load: every tensor finite.
            let config = ladder_model::DecoderConfig::from_file(&out.join("config.json"));
            assert!(config.is_ok(), "{:?}\n{context}", config.err());
            let weights = ladder_model::TensorFile::open(&out.join("model.safetensors")).unwrap();
            for key in weights.keys() {
                assert!(weights.get(key, None).is_ok(), "{key} is not finite\n{context}");
            }
        } else if case.folder {
            assert!(out.join("adapter_model.safetensors").exists(), "{context}");
            for m in read_jsonl(out.join("metrics.jsonl")) {
                assert!(m["loss"].as_f64().is_some_and(f64::is_finite) || m.get("skipped").is_some(), "{m}\n{context}");
            }
        } else if case.cmd == "eval" {
            assert!(finite_numbers(&read_json(&out)["aggregate"]), "{context}");
        } else {
            for row in read_jsonl(&out) {
                assert!(finite_numbers(&row), "{row}\n{context}");
                if case.cmd == "logprobs" {
                    assert!(row.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("logp")).all(|(_, v)| v.is_number()), "{row}\n{context}");
                }
            }
        }
    }
}
