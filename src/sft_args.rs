//! `ladder sft` flags + `--config` file → a resolved [`SftJob`]. Flags win over the file; the
//! file's unknown keys are errors that name the key, the closest valid key and the file.

use std::path::PathBuf;

use anyhow::{bail, Context};
use ladder_model::LoraSettings;
use ladder_train::sft::{Method, SftJob};
use ladder_train::{AdamWConfig, LoopConfig};

use crate::cli::SftArgs;

/// Reads `--config` (if any) and overlays the command-line flags on it.
pub fn merge_config(cli: SftArgs) -> anyhow::Result<SftArgs> {
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: SftArgs = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), explain_toml(&e)))?;
    let mut merged = serde_json::to_value(&file)?;
    let flags = serde_json::to_value(&cli)?;
    for (key, value) in flags.as_object().expect("struct").iter() {
        if !value.is_null() {
            merged[key] = value.clone();
        }
    }
    Ok(serde_json::from_value(merged)?)
}

/// A TOML error as one line, with the closest valid key for unknown ones.
fn explain_toml(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let mut out = msg.clone();
    if let Some(unknown) = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        if let Some(best) = closest(unknown, &valid_keys()) {
            out = format!("unknown key `{unknown}` (did you mean `{best}`?)");
        } else {
            out = format!("unknown key `{unknown}`");
        }
    }
    match e.span() {
        Some(span) => format!("at byte {}: {out}", span.start),
        None => out,
    }
}

fn valid_keys() -> Vec<String> {
    let v = serde_json::to_value(SftArgs::default()).expect("struct");
    v.as_object().expect("struct").keys().cloned().collect()
}

/// The valid key with the smallest edit distance, if reasonably close.
fn closest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= word.len().max(c.len()) / 3 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Applies defaults and checks the combination.
pub fn resolve(cli: SftArgs) -> anyhow::Result<SftJob> {
    let a = merge_config(cli)?;
    let Some(model) = a.model else { bail!("--model is required (a model folder or hf://ORG/NAME)") };
    let data = a.data.unwrap_or_default();
    if data.is_empty() {
        bail!("--data is required (one or more .jsonl / .parquet files)");
    }
    let Some(out) = a.out else { bail!("--out is required (the output folder)") };
    let full = a.full.unwrap_or(false);
    let lora_flags = a.lora_r.is_some() || a.lora_alpha.is_some() || a.lora_targets.is_some() || a.rslora.is_some();
    if full && (lora_flags || a.adapter.is_some()) {
        bail!("--full trains every weight: drop the --lora-* / --adapter options, or drop --full to train LoRA");
    }
    let method = if full {
        Method::Full
    } else {
        let r = a.lora_r.unwrap_or(16);
        if r == 0 {
            bail!("--lora-r must be at least 1");
        }
        let targets = LoraSettings::parse_targets(a.lora_targets.as_deref().unwrap_or("all-linear"))
            .map_err(|e| anyhow::anyhow!("--lora-targets: {e}"))?;
        let dropout = a.lora_dropout.unwrap_or(0.0);
        if !(0.0..1.0).contains(&dropout) {
            bail!("--lora-dropout must be in [0, 1), got {dropout}");
        }
        Method::Lora(LoraSettings {
            r,
            alpha: a.lora_alpha.unwrap_or(2.0 * r as f64),
            dropout,
            targets,
            rslora: a.rslora.unwrap_or(false),
        })
    };
    let scheduler = a
        .lr_scheduler
        .as_deref()
        .unwrap_or("cosine")
        .parse()
        .map_err(|e| anyhow::anyhow!("--lr-scheduler: {e}"))?;
    let lr = a.lr.unwrap_or(if full { 2e-5 } else { 2e-4 });
    if !(lr > 0.0 && lr.is_finite()) {
        bail!("--lr must be a positive number, got {lr}");
    }
    let batch_size = a.batch_size.unwrap_or(8);
    let grad_accum = a.grad_accum.unwrap_or(1);
    if batch_size == 0 || grad_accum == 0 {
        bail!("--batch-size and --grad-accum must be at least 1");
    }
    let max_grad_norm = a.max_grad_norm.unwrap_or(1.0);
    let shuffle = !a.no_shuffle.unwrap_or(false) && a.shuffle.unwrap_or(true);
    Ok(SftJob {
        model,
        adapter: a.adapter,
        data,
        out: PathBuf::from(out),
        device: a.device.unwrap_or_else(|| "cpu".into()),
        method,
        train_on_prompt: a.train_on_prompt.unwrap_or(false),
        max_seq_len: a.max_seq_len,
        packing: a.packing.unwrap_or(false),
        skip_bad_rows: a.skip_bad_rows.unwrap_or(false),
        resume: a.resume,
        overwrite: a.overwrite.unwrap_or(false),
        train: LoopConfig {
            lr,
            scheduler,
            warmup_steps: a.warmup_steps.unwrap_or(0),
            adamw: AdamWConfig {
                beta1: a.adam_beta1.unwrap_or(0.9),
                beta2: a.adam_beta2.unwrap_or(0.999),
                eps: a.adam_eps.unwrap_or(1e-8),
                weight_decay: a.weight_decay.unwrap_or(0.0),
            },
            max_grad_norm: (max_grad_norm > 0.0).then_some(max_grad_norm),
            batch_size,
            grad_accum,
            epochs: a.epochs.unwrap_or(1),
            max_steps: a.max_steps,
            seed: a.seed.unwrap_or(42),
            shuffle,
            save_every: a.save_every,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(closest("lora_rank", &valid_keys()).as_deref(), Some("lora_r"));
        assert_eq!(closest("leraning_rate", &valid_keys()), None);
        assert_eq!(closest("max_seq_length", &valid_keys()).as_deref(), Some("max_seq_len"));
    }
}
