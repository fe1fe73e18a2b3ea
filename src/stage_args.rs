//! Stage flags + `--config` file → resolved library jobs ([`SftJob`], [`DpoJob`]). Flags win
//! over the file; the file's unknown keys are errors that name the file, the line, the key and
//! the closest valid key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ladder_model::LoraSettings;
use ladder_train::dpo::{DpoJob, DpoLoss, DpoSettings, ReferenceKind};
use ladder_train::sft::SftJob;
use ladder_train::{AdamWConfig, LoopConfig, Method, StageJob};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cli::{DpoArgs, SftArgs, TrainArgs};

/// Reads `--config` (if any) and overlays the command-line flags on it.
fn merge_config<A: Serialize + DeserializeOwned + Default>(cli: A, config: Option<&Path>) -> anyhow::Result<A> {
    let Some(path) = config else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), explain_toml(&e, &text)))?;
    let valid = valid_keys::<A>();
    for key in table.keys() {
        if !valid.contains(key) {
            let line = line_of_key(&text, key).map(|l| format!(":{l}")).unwrap_or_default();
            let hint = closest(key, &valid).map(|best| format!(" (did you mean `{best}`?)")).unwrap_or_default();
            bail!("{}{line}: unknown key `{key}`{hint}", path.display());
        }
    }
    let file: A = toml::from_str(&text).map_err(|e| {
        let why = wrong_key::<A>(&table, &text).unwrap_or_else(|| explain_toml(&e, &text));
        anyhow::anyhow!("{}: {why}", path.display())
    })?;
    let mut merged = serde_json::to_value(&file)?;
    let flags = serde_json::to_value(&cli)?;
    for (key, value) in flags.as_object().expect("struct").iter() {
        if !value.is_null() {
            merged[key] = value.clone();
        }
    }
    Ok(serde_json::from_value(merged)?)
}

/// The key whose value has the wrong type, as `line N: key `k`: why`. Serde loses the key of
/// a type error inside flattened structs, so each key is checked on its own.
fn wrong_key<A: DeserializeOwned>(table: &toml::Table, text: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        let err = toml::Value::Table(one).try_into::<A>().err()?;
        let line = line_of_key(text, key).map(|l| format!("line {l}: ")).unwrap_or_default();
        Some(format!("{line}key `{key}`: {}", err.message().trim()))
    })
}

/// The 1-based line where `key` is assigned at the start of a line.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))).map(|i| i + 1)
}

/// A TOML error as one line, with the line and column it points at.
fn explain_toml(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg,
    }
}

fn valid_keys<A: Serialize + Default>() -> Vec<String> {
    let v = serde_json::to_value(A::default()).expect("struct");
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

/// Applies the defaults every stage shares and checks the combination.
fn resolve_stage(a: TrainArgs) -> anyhow::Result<StageJob> {
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
    if a.keep_last == Some(0) {
        bail!("--keep-last must be at least 1 (leave it out to keep every checkpoint)");
    }
    let on_nonfinite = a
        .on_nonfinite
        .as_deref()
        .unwrap_or("stop")
        .parse()
        .map_err(|e| anyhow::anyhow!("--on-nonfinite: {e}"))?;
    let shuffle = !a.no_shuffle.unwrap_or(false) && a.shuffle.unwrap_or(true);
    Ok(StageJob {
        model,
        adapter: a.adapter,
        data,
        out: PathBuf::from(out),
        device: a.device.unwrap_or_else(|| "cpu".into()),
        method,
        max_seq_len: a.max_seq_len,
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
            keep_last: a.keep_last,
            on_nonfinite,
            max_skipped_steps: a.max_skipped_steps.unwrap_or(10),
            interrupt: Default::default(),
        },
    })
}

/// `ladder sft` flags and `--config` → [`SftJob`].
pub fn resolve_sft(cli: SftArgs) -> anyhow::Result<SftJob> {
    let config = cli.train.config.clone();
    let a = merge_config(cli, config.as_deref())?;
    Ok(SftJob {
        stage: resolve_stage(a.train)?,
        train_on_prompt: a.train_on_prompt.unwrap_or(false),
        packing: a.packing.unwrap_or(false),
    })
}

/// `ladder dpo` flags and `--config` → [`DpoJob`].
pub fn resolve_dpo(cli: DpoArgs) -> anyhow::Result<DpoJob> {
    let config = cli.train.config.clone();
    let a = merge_config(cli, config.as_deref())?;
    let stage = resolve_stage(a.train)?;
    let loss: DpoLoss = a.loss.as_deref().unwrap_or("sigmoid").parse().map_err(|e| anyhow::anyhow!("--loss: {e}"))?;
    let beta = a.beta.unwrap_or(0.1);
    if !(beta > 0.0 && beta.is_finite()) {
        bail!("--beta must be a positive number, got {beta}");
    }
    let label_smoothing = a.label_smoothing.unwrap_or(0.0);
    if !(0.0..0.5).contains(&label_smoothing) {
        bail!("--label-smoothing must be in [0, 0.5), got {label_smoothing}");
    }
    if label_smoothing > 0.0 && !matches!(loss, DpoLoss::Sigmoid | DpoLoss::Robust) {
        bail!("--label-smoothing applies to --loss sigmoid or robust, not {loss}");
    }
    let sft_weight = a.sft_weight.unwrap_or(0.0);
    if !(sft_weight >= 0.0 && sft_weight.is_finite()) {
        bail!("--sft-weight must be a non-negative number, got {sft_weight}");
    }
    let fresh_adapter = matches!(stage.method, Method::Lora(_)) && stage.adapter.is_none();
    let reference = match a.reference.as_deref() {
        Some(r) => r.parse().map_err(|e| anyhow::anyhow!("--reference: {e}"))?,
        None if fresh_adapter => ReferenceKind::AdapterOff,
        None => ReferenceKind::Precomputed,
    };
    if reference == ReferenceKind::AdapterOff {
        if let Some(adapter) = &stage.adapter {
            bail!(
                "--reference adapter-off with --adapter {}: switching the adapter off would make the raw base model the reference, \
                 not the model you are continuing (DPO then reports loss ≈ 0 and accuracy 1 within a few steps); \
                 use --reference frozen (base + that adapter, frozen) or --reference precomputed",
                adapter.display()
            );
        }
        if matches!(stage.method, Method::Full) {
            bail!("--reference adapter-off needs a LoRA adapter to switch off; with --full use --reference frozen or precomputed");
        }
    }
    let max_prompt_len = a.max_prompt_len.or(stage.max_seq_len.map(|n| n / 2));
    Ok(DpoJob {
        stage,
        dpo: DpoSettings {
            beta,
            loss,
            label_smoothing,
            sft_weight,
            reference,
            reference_cache: a.reference_cache.unwrap_or_else(default_cache_dir),
            max_prompt_len,
            truncate_prompts: a.truncate_prompts.unwrap_or(false),
        },
    })
}

/// `$LADDER_CACHE_DIR`, else `$XDG_CACHE_HOME/ladder`, else `~/.cache/ladder`.
fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LADDER_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ladder");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("ladder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        let keys = valid_keys::<SftArgs>();
        assert_eq!(closest("lora_rank", &keys).as_deref(), Some("lora_r"));
        assert_eq!(closest("leraning_rate", &keys), None);
        assert_eq!(closest("max_seq_length", &keys).as_deref(), Some("max_seq_len"));
        assert!(keys.contains(&"packing".to_string()) && keys.contains(&"lora_r".to_string()));
        assert!(valid_keys::<DpoArgs>().contains(&"beta".to_string()));
        assert!(!keys.contains(&"config".to_string()));
    }
}
