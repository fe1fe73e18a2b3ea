//! Stage options as `ladder sft` / `ladder dpo` flags and `--config` keys, and their resolution
//! into library jobs ([`SftJob`], [`DpoJob`]). Flags win over the file; the file's unknown keys
//! are errors that name the file, the line, the key and the closest valid key. The recipe runner
//! (`ladder-recipe`) builds the same structs from a recipe's stage tables, so a stage key means
//! the same thing in both places. Doc comments on the fields are the `--help` text.

use std::path::{Path, PathBuf};

use clap::Args;
use ladder_model::LoraSettings;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dpo::{DpoJob, DpoLoss, DpoSettings, ReferenceKind};
use crate::error::{Result, TrainError};
use crate::sft::SftJob;
use crate::{AdamWConfig, LoopConfig, Method, StageJob};

/// Options every training stage shares (`ladder sft`, `ladder dpo`). Every option is also a key
/// of `--config`; unknown keys are rejected by [`merge_config`] (serde's `deny_unknown_fields` does
/// not work with the flattened stage structs).
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// A TOML file with any of these options (same names, snake_case); flags win over it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Base model: a Hugging Face folder or hf://ORG/NAME[@REVISION].
    #[arg(long, value_name = "MODEL", help_heading = "Inputs")]
    pub model: Option<String>,
    /// Continue training this PEFT LoRA adapter instead of creating a new one.
    #[arg(long, value_name = "DIR", help_heading = "Inputs")]
    pub adapter: Option<PathBuf>,
    /// Training data: .jsonl or .parquet files (repeat the flag for several).
    #[arg(long, value_name = "FILE", help_heading = "Inputs")]
    pub data: Option<Vec<PathBuf>>,
    /// Output folder (adapter or full checkpoint, metrics.jsonl, checkpoints/).
    #[arg(long, value_name = "DIR", help_heading = "Inputs")]
    pub out: Option<PathBuf>,
    /// Replace a finished model already in --out.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Inputs")]
    pub overwrite: Option<bool>,
    /// cpu, cuda, cuda:N or wgpu (GPU backends need a build with --features cuda / wgpu).
    #[arg(long, value_name = "DEVICE", help_heading = "Inputs")]
    pub device: Option<String>,

    /// Full fine-tuning: every weight trains (default: LoRA).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Method")]
    pub full: Option<bool>,
    /// LoRA rank [default: 16].
    #[arg(long, value_name = "R", help_heading = "Method")]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha/r [default: 2·r].
    #[arg(long, value_name = "ALPHA", help_heading = "Method")]
    pub lora_alpha: Option<f64>,
    /// Dropout on the LoRA input [default: 0.0].
    #[arg(long, value_name = "P", help_heading = "Method")]
    pub lora_dropout: Option<f64>,
    /// Layers that get adapters: comma-separated q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,
    /// down_proj, or all-linear [default: all-linear].
    #[arg(long, value_name = "LIST", help_heading = "Method")]
    pub lora_targets: Option<String>,
    /// Rank-stabilised LoRA: scale by alpha/√r.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Method")]
    pub rslora: Option<bool>,
    /// Qwen2.5-VL: also put LoRA on the vision blocks' linears, comma-separated qkv,proj,
    /// gate_proj,up_proj,down_proj, or all-linear [default: none, the vision tower stays frozen].
    #[arg(long, value_name = "LIST", help_heading = "Method")]
    pub lora_vision: Option<String>,

    /// Truncate examples to this many tokens (the count truncated is reported).
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub max_seq_len: Option<usize>,
    /// Skip malformed rows (counted and reported) instead of stopping at the first one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub skip_bad_rows: Option<bool>,

    /// Peak learning rate [default: 2e-4 for LoRA, 2e-5 for --full].
    #[arg(long, value_name = "LR", help_heading = "Optimisation")]
    pub lr: Option<f64>,
    /// Learning-rate decay after warmup: cosine, linear or constant [default: cosine].
    #[arg(long, value_name = "KIND", help_heading = "Optimisation")]
    pub lr_scheduler: Option<String>,
    /// Linear warmup steps from 0 to --lr [default: 0].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub warmup_steps: Option<usize>,
    /// Examples per micro-batch [default: 8].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub grad_accum: Option<usize>,
    /// Passes over the data [default: 1].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub max_steps: Option<usize>,
    /// AdamW decoupled weight decay; biases and norm weights are exempt [default: 0.0].
    #[arg(long, value_name = "WD", help_heading = "Optimisation")]
    pub weight_decay: Option<f64>,
    /// AdamW beta1 [default: 0.9].
    #[arg(long, value_name = "B1", help_heading = "Optimisation")]
    pub adam_beta1: Option<f64>,
    /// AdamW beta2 [default: 0.999].
    #[arg(long, value_name = "B2", help_heading = "Optimisation")]
    pub adam_beta2: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long, value_name = "EPS", help_heading = "Optimisation")]
    pub adam_eps: Option<f64>,
    /// Clip the global gradient norm to this value; 0 disables [default: 1.0].
    #[arg(long, value_name = "NORM", help_heading = "Optimisation")]
    pub max_grad_norm: Option<f64>,
    /// Gradient checkpointing: keep fewer activations for the backward pass and recompute the
    /// cheap ones there (norms, SwiGLU, RoPE, residual adds). Less peak memory for a little
    /// more time; see the README's Performance section for measurements.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimisation")]
    pub gradient_checkpointing: Option<bool>,
    /// Random seed (adapter init, shuffling, dropout) [default: 42].
    #[arg(long, value_name = "N", help_heading = "Optimisation")]
    pub seed: Option<u64>,
    /// Shuffle the data each epoch (seeded) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimisation")]
    pub shuffle: Option<bool>,
    /// Keep file order (same as --shuffle false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Optimisation")]
    pub no_shuffle: Option<bool>,

    /// Save a checkpoint every N optimizer steps under --out/checkpoints/step-N.
    #[arg(long, value_name = "N", help_heading = "Checkpoints")]
    pub save_every: Option<usize>,
    /// Keep only the newest N checkpoints (older ones are deleted after each save) [default:
    /// keep all].
    #[arg(long, value_name = "N", help_heading = "Checkpoints")]
    pub keep_last: Option<usize>,
    /// Resume from a checkpoint folder, or a run folder: its newest checkpoint that passes its
    /// sha256 checks (corrupt or incomplete ones are reported and passed over). The resumed
    /// run repeats the uninterrupted one exactly: same data order, losses and weights.
    #[arg(long, value_name = "DIR", help_heading = "Checkpoints")]
    pub resume: Option<PathBuf>,
    /// With --resume: continue even though the model, data, objective or a result-changing
    /// option differs from the checkpoint's (each difference is still reported).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Checkpoints")]
    pub resume_anyway: Option<bool>,

    /// What a non-finite (NaN/inf) loss or gradient does: stop (naming the step and its rows)
    /// or skip (drop that step's update, log it) [default: stop].
    #[arg(long, value_name = "POLICY", help_heading = "Reliability")]
    pub on_nonfinite: Option<String>,
    /// With --on-nonfinite skip: stop once more than N steps were skipped [default: 10].
    #[arg(long, value_name = "N", help_heading = "Reliability")]
    pub max_skipped_steps: Option<usize>,
}

/// `ladder sft` options.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct SftArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// Also train on prompt tokens (default: completion / assistant tokens only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub train_on_prompt: Option<bool>,
    /// Pack short examples together into sequences of --max-seq-len tokens (attention stays
    /// within each example).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Data")]
    pub packing: Option<bool>,
}

/// `ladder dpo` options: the training options of `ladder sft` plus the preference loss and the
/// reference model.
#[derive(Debug, Default, Args, Serialize, Deserialize)]
pub struct DpoArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub train: TrainArgs,
    /// Strength of the KL regularisation toward the reference (TRL's beta) [default: 0.1].
    #[arg(long, value_name = "BETA", help_heading = "Preference")]
    pub beta: Option<f64>,
    /// sigmoid (DPO), ipo (length-normalised, squared), hinge (SLiC) or robust (noise-robust
    /// DPO, with --label-smoothing) [default: sigmoid].
    #[arg(long, value_name = "LOSS", help_heading = "Preference")]
    pub loss: Option<String>,
    /// Assumed share of flipped labels ε for sigmoid (cDPO) and robust [default: 0.0].
    #[arg(long, value_name = "EPS", help_heading = "Preference")]
    pub label_smoothing: Option<f64>,
    /// Add α × NLL of the chosen completion (RPO; TRL's loss_type ["sigmoid", "sft"]) [default: 0].
    #[arg(long, value_name = "ALPHA", help_heading = "Preference")]
    pub sft_weight: Option<f64>,
    /// The reference policy: adapter-off (the base under a new LoRA adapter, no second copy),
    /// frozen (a frozen copy of the starting model: base + --adapter when continuing one), or
    /// precomputed (reference log-probs computed once before training and cached on disk)
    /// [default: adapter-off for a new adapter, precomputed otherwise].
    #[arg(long, value_name = "KIND", help_heading = "Preference")]
    pub reference: Option<String>,
    /// Folder of the precomputed-reference cache [default: $LADDER_CACHE_DIR, else
    /// $XDG_CACHE_HOME/ladder, else ~/.cache/ladder].
    #[arg(long, value_name = "DIR", help_heading = "Preference")]
    pub reference_cache: Option<PathBuf>,
    /// Longest prompt in tokens [default: --max-seq-len / 2 when --max-seq-len is set]. Longer
    /// prompts are skipped and counted, or cut from the left with --truncate-prompts.
    #[arg(long, value_name = "N", help_heading = "Preference")]
    pub max_prompt_len: Option<usize>,
    /// Keep the last --max-prompt-len tokens of long prompts instead of skipping their pairs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Preference")]
    pub truncate_prompts: Option<bool>,
}



/// `return Err(TrainError::Invalid(format!(...)))`.
macro_rules! bail {
    ($($t:tt)*) => { return Err(TrainError::Invalid(format!($($t)*))) };
}

macro_rules! err {
    ($($t:tt)*) => { TrainError::Invalid(format!($($t)*)) };
}

/// Reads `--config` (if any) and overlays the command-line flags on it.
pub fn merge_config<A: Serialize + DeserializeOwned + Default>(cli: A, config: Option<&Path>) -> Result<A> {
    let Some(path) = config else {
        return Ok(cli);
    };
    let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err!("{}: {}", path.display(), explain_toml(&e, &text)))?;
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
        err!("{}: {why}", path.display())
    })?;
    let mut merged = serde_json::to_value(&file).expect("serialisable");
    let flags = serde_json::to_value(&cli).expect("serialisable");
    for (key, value) in flags.as_object().expect("struct").iter() {
        if !value.is_null() {
            merged[key] = value.clone();
        }
    }
    serde_json::from_value(merged).map_err(|e| err!("{}: {e}", path.display()))
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
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))).map(|i| i + 1)
}

/// A TOML error as one line, with the line and column it points at.
pub fn explain_toml(e: &toml::de::Error, text: &str) -> String {
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

pub fn valid_keys<A: Serialize + Default>() -> Vec<String> {
    let v = serde_json::to_value(A::default()).expect("struct");
    v.as_object().expect("struct").keys().cloned().collect()
}

/// The valid key with the smallest edit distance, if reasonably close.
pub fn closest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= word.len().max(c.len()) / 3 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

pub fn levenshtein(a: &str, b: &str) -> usize {
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
fn resolve_stage(a: TrainArgs) -> Result<StageJob> {
    let Some(model) = a.model else { bail!("--model is required (a model folder or hf://ORG/NAME)") };
    let data = a.data.unwrap_or_default();
    if data.is_empty() {
        bail!("--data is required (one or more .jsonl / .parquet files)");
    }
    let Some(out) = a.out else { bail!("--out is required (the output folder)") };
    let full = a.full.unwrap_or(false);
    let lora_flags = a.lora_r.is_some() || a.lora_alpha.is_some() || a.lora_targets.is_some() || a.rslora.is_some() || a.lora_vision.is_some();
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
            .map_err(|e| err!("--lora-targets: {e}"))?;
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
    let lora_vision = match &a.lora_vision {
        Some(spec) => crate::vlm::parse_vision_targets(spec).map_err(|e| err!("--lora-vision: {e}"))?,
        None => Vec::new(),
    };
    let scheduler = a
        .lr_scheduler
        .as_deref()
        .unwrap_or("cosine")
        .parse()
        .map_err(|e| err!("--lr-scheduler: {e}"))?;
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
        .map_err(|e| err!("--on-nonfinite: {e}"))?;
    let shuffle = !a.no_shuffle.unwrap_or(false) && a.shuffle.unwrap_or(true);
    Ok(StageJob {
        model,
        adapter: a.adapter,
        data,
        out,
        device: a.device.unwrap_or_else(|| "cpu".into()),
        gradient_checkpointing: a.gradient_checkpointing.unwrap_or(false),
        method,
        lora_vision,
        max_seq_len: a.max_seq_len,
        skip_bad_rows: a.skip_bad_rows.unwrap_or(false),
        resume: a.resume,
        resume_anyway: a.resume_anyway.unwrap_or(false),
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
pub fn resolve_sft(cli: SftArgs) -> Result<SftJob> {
    let config = cli.train.config.clone();
    let a = merge_config(cli, config.as_deref())?;
    Ok(SftJob {
        stage: resolve_stage(a.train)?,
        train_on_prompt: a.train_on_prompt.unwrap_or(false),
        packing: a.packing.unwrap_or(false),
    })
}

/// `ladder dpo` flags and `--config` → [`DpoJob`].
pub fn resolve_dpo(cli: DpoArgs) -> Result<DpoJob> {
    let config = cli.train.config.clone();
    let a = merge_config(cli, config.as_deref())?;
    let stage = resolve_stage(a.train)?;
    let loss: DpoLoss = a.loss.as_deref().unwrap_or("sigmoid").parse().map_err(|e| err!("--loss: {e}"))?;
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
        Some(r) => r.parse().map_err(|e| err!("--reference: {e}"))?,
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
pub fn default_cache_dir() -> PathBuf {
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
