//! Conversational rows tokenised as TRL 1.16 tokenizes them, token for token: the ids and
//! masks in `expected/trl_chat.json` come from TRL's own `SFTTrainer._prepare_dataset` and
//! `DPOTrainer._prepare_dataset` (scripts/make_trl_fixtures.py), and the log-probs from
//! transformers on those ids. The completion of a ChatML conversation ends with `<|im_end|>`
//! and the newline the template writes after it.

use std::path::Path;

use ladder_data::{parse_row, preference_ids, tokenize_sft, Prompt, Row, SftOptions, Tokenizer};
use serde_json::Value;

use crate::util::*;

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn rows(file: &str) -> Vec<Row> {
    read_jsonl(fixtures().join("data").join(file)).iter().map(|v| parse_row(v).unwrap()).collect()
}

/// SFT input ids and loss targets of `rows` against TRL's (`targets[0]` is never one: nothing
/// predicts the first token, and TRL's is always prompt).
fn check_sft(tok: &Tokenizer, rows: &[Row], want: &Value, what: &str) {
    let want = want.as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{what}");
    for (i, (row, w)) in rows.iter().zip(want).enumerate() {
        let got = tokenize_sft(tok, row, &SftOptions::default()).unwrap().example;
        assert_eq!(got.input_ids, ids(&w["input_ids"]), "{what} row {i}: input ids");
        let targets: Vec<bool> = serde_json::from_value(w["targets"].clone()).unwrap();
        assert_eq!(got.targets, targets, "{what} row {i}: targets");
    }
}

/// Prompt, chosen and rejected ids of the preference rows against DPOTrainer's.
fn check_pairs(tok: &Tokenizer, want: &Value, what: &str) {
    let pairs = rows("chat_pairs.jsonl");
    assert_eq!(pairs.len(), want.as_array().unwrap().len());
    for (i, (row, w)) in pairs.iter().zip(want.as_array().unwrap()).enumerate() {
        let Row::Preference { prompt, chosen, rejected, .. } = row else { panic!("{row:?}") };
        let (p, c, r) = preference_ids(tok, prompt, chosen, rejected).unwrap();
        assert_eq!(p, ids(&w["prompt_ids"]), "{what} pair {i}: prompt ids");
        assert_eq!(c, ids(&w["chosen_ids"]), "{what} pair {i}: chosen ids");
        assert_eq!(r, ids(&w["rejected_ids"]), "{what} pair {i}: rejected ids");
    }
}

#[test]
fn chat_rows_tokenise_as_trl() {
    let expected = expected("trl_chat.json");
    for model in ["qwen2-tiny", "llama-tiny"] {
        let (tok, want) = (Tokenizer::from_dir(&fixtures().join(model)).unwrap(), &expected["cases"][model]);
        check_sft(&tok, &rows("chat_completion.jsonl"), &want["sft_completion"], &format!("{model} prompt-completion"));
        check_sft(&tok, &rows("chat.jsonl"), &want["sft_messages"], &format!("{model} messages"));
        check_pairs(&tok, &want["dpo"], model);
    }
}

/// The ChatML completion is the assistant text, `<|im_end|>` and the newline after it: one
/// token more than stopping at the end-of-turn token, as ladder did before.
#[test]
fn chatml_completion_ends_after_the_end_of_turn_newline() {
    let tok = Tokenizer::from_dir(&fixtures().join("qwen2-tiny")).unwrap();
    let prompt = Prompt::Messages(vec![ladder_data::Message::new("user", "Fix: Tlie")]);
    let (_, completion) = ladder_data::completion_ids(&tok, &prompt, "The").unwrap();
    assert_eq!(tok.decode(&completion, false).unwrap(), "The<|im_end|>\n");
    assert_eq!(&completion[completion.len() - 2..], [tok.eos_id().unwrap(), tok.encode("\n", false).unwrap()[0]]);
}

/// A template whose generation prompt the rendered history drops (an empty think block, as
/// Qwen3's): the prompt is cut where it and prompt + completion part, as TRL cuts it.
#[test]
fn prompt_is_cut_to_the_common_prefix_as_trl_cuts_it() {
    let expected = expected("trl_chat.json");
    let want = &expected["cases"]["qwen2-tiny/think"];
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("qwen2-tiny/tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let mut config = read_json(fixtures().join("qwen2-tiny/tokenizer_config.json"));
    config["chat_template"] = want["chat_template"].clone();
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    check_sft(&tok, &rows("chat_completion.jsonl"), &want["sft_completion"], "think prompt-completion");
    check_sft(&tok, &rows("chat.jsonl"), &want["sft_messages"], "think messages");
    check_pairs(&tok, &want["dpo"], "think");
    // The generation prompt itself keeps its think block: that is what the model continues.
    let Row::Preference { prompt, .. } = &rows("chat_pairs.jsonl")[0] else { panic!() };
    let full = ladder_data::sft::prompt_ids(&tok, prompt).unwrap();
    assert!(tok.decode(&full, false).unwrap().ends_with("<think>\n\n</think>\n\n"));
    assert!(full.len() > ids(&want["dpo"][0]["prompt_ids"]).len());
}

/// `ladder logprobs` on conversational rows against transformers on TRL's ids.
#[test]
fn chat_logprobs_match_transformers() {
    let expected = expected("trl_chat.json");
    let dir = tempfile::tempdir().unwrap();
    for model in ["qwen2-tiny", "llama-tiny"] {
        let want = &expected["cases"][model];
        for (data, kind) in [("chat_completion.jsonl", "logprobs"), ("chat_pairs.jsonl", "dpo")] {
            let out = dir.path().join(format!("{model}-{kind}.jsonl"));
            let (m, d, o) = (fixture(model), fixture(&format!("data/{data}")), out.to_string_lossy().into_owned());
            ladder(&["logprobs", "--model", &m, "--data", &d, "--out", &o]);
            let got = read_jsonl(&out);
            let want = want[kind].as_array().unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let close = |field: &str, wv: f64| {
                    let gv = g[field].as_f64().unwrap();
                    assert!((gv - wv).abs() < 1e-3, "{model} {data} row {i}: {field} {gv} vs transformers {wv}");
                };
                if kind == "logprobs" {
                    close("logp", w["logp"].as_f64().unwrap());
                    assert_eq!(g["n_tokens"], w["n_tokens"], "{model} {data} row {i}");
                } else {
                    close("logp_chosen", w["logp_chosen"].as_f64().unwrap());
                    close("logp_rejected", w["logp_rejected"].as_f64().unwrap());
                    assert_eq!(g["n_tokens_chosen"].as_u64().unwrap() as usize, w["chosen_ids"].as_array().unwrap().len());
                    assert_eq!(g["n_tokens_rejected"].as_u64().unwrap() as usize, w["rejected_ids"].as_array().unwrap().len());
                }
            }
        }
    }
}

/// `ladder dpo` prepares conversational pairs the same way: its first step's `logps/chosen`
/// and `logps/rejected` (the batch means, before any update) are transformers' on TRL's ids.
#[test]
fn dpo_on_chat_pairs_scores_trl_completions() {
    let expected = expected("trl_chat.json");
    let want = expected["cases"]["qwen2-tiny"]["dpo"].as_array().unwrap();
    let mean = |field: &str| want.iter().map(|w| w[field].as_f64().unwrap()).sum::<f64>() / want.len() as f64;
    let dir = tempfile::tempdir().unwrap();
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/chat_pairs.jsonl"), dir.path().join("out").to_string_lossy().into_owned());
    let batch = want.len().to_string();
    ladder(&["dpo", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "1", "--batch-size", &batch, "--no-shuffle"]);
    let metrics = read_jsonl(Path::new(&o).join("metrics.jsonl"));
    for (metric, field) in [("logps/chosen", "logp_chosen"), ("logps/rejected", "logp_rejected")] {
        let (g, w) = (metrics[0][metric].as_f64().unwrap(), mean(field));
        assert!((g - w).abs() < 1e-3, "{metric} {g} vs transformers {w}");
    }
}
