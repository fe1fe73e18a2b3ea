//! `ladder sft` / `ladder dpo` options and their resolution into library jobs ([`SftJob`],
//! [`DpoJob`]). Flags win over a `--config` file; a recipe's stage table is the same struct.

use std::path::{Path, PathBuf};

use clap::Args;
use ladder_model::LoraSettings;
use serde::{Deserialize, Serialize};

use super::file::{merge_config, valid_keys, ConfigFile};
use super::OptionError;
use crate::device::DeviceSpec;
use crate::precision::Precision;
use crate::dpo::{DpoJob, DpoLoss, DpoSettings, ReferenceKind};
use crate::error::Result;
use crate::sft::SftJob;
use crate::{AdamWConfig, LoopConfig, Method, OnNonFinite, OptimizerKind, SchedulerKind, StageJob};

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
    /// cpu, cuda, cuda:N or wgpu (GPU backends need a build with --features cuda / wgpu)
    /// [default: cpu].
    #[arg(long, value_name = "DEVICE", help_heading = "Inputs")]
    pub device: Option<DeviceSpec>,
    /// Compute dtype: bf16 or f16 keep activations and frozen weights in 16 bits and what
    /// trains in f32 (master weights, AdamW moments), with norms, softmax and losses in f32
    /// [default: bf16 on cuda, f32 elsewhere].
    #[arg(long, value_enum, value_name = "DTYPE", help_heading = "Inputs")]
    pub precision: Option<Precision>,

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

    /// Peak learning rate; 0 trains nothing, a sanity check that the run reproduces the
    /// starting model's numbers [default: 2e-4 for LoRA, 2e-5 for --full].
    #[arg(long, value_name = "LR", help_heading = "Optimisation")]
    pub lr: Option<f64>,
    /// Learning-rate decay after warmup [default: cosine].
    #[arg(long, value_enum, value_name = "KIND", help_heading = "Optimisation")]
    pub lr_scheduler: Option<SchedulerKind>,
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
    /// adamw: f32 moments, as torch.optim.AdamW. adamw-8bit: 8-bit block-wise moments, as
    /// torchao's AdamW8bit (HF's adamw_torch_8bit): a quarter of the optimizer's memory. Full
    /// fine-tuning holds weights, gradients and two moments, so this takes its floor from 16 to
    /// 10 bytes per parameter (0.5B: 7.4 → 4.6 GiB). Parameters under 4,096 elements keep f32
    /// moments [default: adamw].
    #[arg(long, value_enum, value_name = "KIND", help_heading = "Optimisation")]
    pub optimizer: Option<OptimizerKind>,
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
    /// more time; see the README's Performance section for measurements [default: on with
    /// --full, off for LoRA].
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
    #[arg(long, value_enum, value_name = "POLICY", help_heading = "Reliability")]
    pub on_nonfinite: Option<OnNonFinite>,
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
    /// The preference loss (TRL's loss_type) [default: sigmoid].
    #[arg(long, value_enum, value_name = "LOSS", help_heading = "Preference")]
    pub loss: Option<DpoLoss>,
    /// Assumed share of flipped labels ε for sigmoid (cDPO) and robust [default: 0.0].
    #[arg(long, value_name = "EPS", help_heading = "Preference")]
    pub label_smoothing: Option<f64>,
    /// Add α × NLL of the chosen completion (RPO; TRL's loss_type ["sigmoid", "sft"]) [default: 0].
    #[arg(long, value_name = "ALPHA", help_heading = "Preference")]
    pub sft_weight: Option<f64>,
    /// The reference policy [default: adapter-off for a new adapter, precomputed otherwise].
    #[arg(long, value_enum, value_name = "KIND", help_heading = "Preference")]
    pub reference: Option<ReferenceKind>,
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



/// `Err(OptionError)` for `key`.
macro_rules! bail {
    ($key:expr, $($t:tt)*) => { return Err(OptionError::new($key, format!($($t)*))) };
}

/// Range checks shared by every kind: `check(key, value, ok, what)`.
pub(super) fn check<T: std::fmt::Display>(key: &str, value: T, ok: bool, expected: &str) -> std::result::Result<T, OptionError> {
    if ok {
        Ok(value)
    } else {
        Err(OptionError::new(key, format!("must be {expected}, got {value}")))
    }
}

/// Whether `x` is a finite number in the half-open or closed range the check names.
pub(super) fn finite_at_least(x: f64, low: f64) -> bool {
    x.is_finite() && x >= low
}

/// The LoRA settings a stage continuing an adapter trains with: the adapter's own. A LoRA key
/// given anyway must agree with them, since training cannot change an adapter's shape (it
/// used to be ignored silently while training_args.json recorded the new value). Dropout is
/// kept from the adapter's config too, as PEFT does when it loads an adapter to train.
fn continued_lora(a: &TrainArgs, adapter: &Path, existing: &LoraSettings) -> std::result::Result<LoraSettings, OptionError> {
    let mismatch = |key: &str, given: String, has: String| {
        OptionError::new(
            key,
            format!(
                "{given}, but the adapter being continued ({}) has {has}: a continued adapter keeps its shape; drop `{key}`, or merge the adapter into its base first",
                adapter.display()
            ),
        )
    };
    if let Some(r) = a.lora_r.filter(|r| *r != existing.r) {
        return Err(mismatch("lora_r", format!("r = {r}"), format!("r = {}", existing.r)));
    }
    if let Some(alpha) = a.lora_alpha.filter(|x| *x != existing.alpha) {
        return Err(mismatch("lora_alpha", format!("alpha = {alpha}"), format!("alpha = {}", existing.alpha)));
    }
    if let Some(rs) = a.rslora.filter(|x| *x != existing.rslora) {
        return Err(mismatch("rslora", format!("rslora = {rs}"), format!("rslora = {}", existing.rslora)));
    }
    if let Some(p) = a.lora_dropout.filter(|x| *x != existing.dropout) {
        return Err(mismatch("lora_dropout", format!("dropout = {p}"), format!("dropout = {}", existing.dropout)));
    }
    if let Some(spec) = a.lora_targets.as_ref().filter(|_| !existing.targets.is_empty()) {
        let mut given = LoraSettings::parse_targets(spec).map_err(|e| OptionError::new("lora_targets", e))?;
        let mut has = existing.targets.clone();
        given.sort();
        has.sort();
        if given != has {
            return Err(mismatch("lora_targets", format!("targets {}", given.join(",")), format!("targets {}", has.join(","))));
        }
    }
    Ok(existing.clone())
}

/// The adapter's shape as its `adapter_config.json` gives it. A Qwen2.5-VL adapter's
/// `target_modules` is a regex over both towers, so its targets stay empty (not compared).
fn adapter_settings(adapter: &Path) -> std::result::Result<LoraSettings, OptionError> {
    let path = adapter.join("adapter_config.json");
    let bad = |e: ladder_model::ModelError| OptionError::new("adapter", format!("{}: {e}", adapter.display()));
    let config = ladder_model::peft::read_config(adapter).map_err(bad)?;
    config.check_supported(&path).map_err(bad)?;
    Ok(LoraSettings {
        r: config.r,
        alpha: config.lora_alpha,
        dropout: config.lora_dropout,
        targets: config.settings(&path).map(|s| s.targets).unwrap_or_default(),
        rslora: config.use_rslora,
    })
}

/// Whether gradient checkpointing is on when `gradient_checkpointing` is not given. On for full
/// fine-tuning: there the activations kept for the backward pass, not the weights and AdamW
/// state, set the peak at real shapes, and recomputing the memory-bound ones cut the 135M peak
/// from 3,906 to 3,251 MiB at no measurable cost in tokens/s (README, "Memory for full
/// fine-tuning"). Off for LoRA, whose peak is already far below PyTorch + PEFT's.
pub fn checkpointing_by_default(full: bool) -> bool {
    full
}

/// Applies the defaults every training stage shares and checks the combination. `inherited` is
/// the LoRA shape of `adapter` when the caller knows it without reading the folder (a recipe's
/// parent stage, which has not run yet when the recipe is planned).
pub fn resolve_stage(a: TrainArgs, inherited: Option<&LoraSettings>) -> std::result::Result<StageJob, OptionError> {
    let Some(model) = a.model.clone() else { bail!("model", "is required (a model folder or hf://ORG/NAME)") };
    let data = a.data.clone().unwrap_or_default();
    if data.is_empty() {
        bail!("data", "is required (one or more .jsonl / .parquet files)");
    }
    let Some(out) = a.out.clone() else { bail!("out", "is required (the output folder)") };
    let full = a.full.unwrap_or(false);
    let lora_keys = a.lora_r.is_some() || a.lora_alpha.is_some() || a.lora_targets.is_some() || a.rslora.is_some() || a.lora_vision.is_some();
    if full && a.adapter.is_some() {
        bail!(
            "full",
            "trains every weight, but `adapter` {} is a LoRA adapter to continue: merge it into its base first (`ladder merge`, or a merge stage in a recipe), or drop `full` to keep training the adapter",
            a.adapter.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    if full && lora_keys {
        bail!("full", "trains every weight: drop the `lora_*` options, or drop `full` to train a LoRA adapter");
    }
    let method = if full {
        Method::Full
    } else if let Some(adapter) = &a.adapter {
        let existing = match inherited {
            Some(s) => s.clone(),
            None => adapter_settings(adapter)?,
        };
        Method::Lora(continued_lora(&a, adapter, &existing)?)
    } else {
        let r = a.lora_r.unwrap_or(16);
        check("lora_r", r, r >= 1, "at least 1")?;
        let targets = LoraSettings::parse_targets(a.lora_targets.as_deref().unwrap_or("all-linear")).map_err(|e| OptionError::new("lora_targets", e))?;
        let dropout = a.lora_dropout.unwrap_or(0.0);
        let alpha = a.lora_alpha.unwrap_or(2.0 * r as f64);
        Method::Lora(LoraSettings {
            r,
            alpha: check("lora_alpha", alpha, alpha > 0.0 && alpha.is_finite(), "a positive number")?,
            dropout: check("lora_dropout", dropout, (0.0..1.0).contains(&dropout), "in [0, 1)")?,
            targets,
            rslora: a.rslora.unwrap_or(false),
        })
    };
    let lora_vision = match &a.lora_vision {
        Some(spec) => crate::vlm::parse_vision_targets(spec).map_err(|e| OptionError::new("lora_vision", e))?,
        None => Vec::new(),
    };
    let device = a.device.unwrap_or_default();
    device.check_built().map_err(|e| OptionError::new("device", e))?;
    let lr = a.lr.unwrap_or(if full { 2e-5 } else { 2e-4 });
    check("lr", lr, finite_at_least(lr, 0.0), "a non-negative number (0 is a sanity check: the starting model's numbers)")?;
    let batch_size = a.batch_size.unwrap_or(8);
    check("batch_size", batch_size, batch_size >= 1, "at least 1")?;
    let grad_accum = a.grad_accum.unwrap_or(1);
    check("grad_accum", grad_accum, grad_accum >= 1, "at least 1")?;
    let epochs = a.epochs.unwrap_or(1);
    check("epochs", epochs, epochs >= 1, "at least 1 (a run that trains no step saves nothing useful)")?;
    if let Some(n) = a.max_steps {
        check("max_steps", n, n >= 1, "at least 1 (a run that trains no step saves nothing useful)")?;
    }
    if let Some(n) = a.max_seq_len {
        check("max_seq_len", n, n >= 2, "at least 2 (a prompt token and a completion token)")?;
    }
    if let Some(n) = a.save_every {
        check("save_every", n, n >= 1, "at least 1 (leave it out to save only at the end)")?;
    }
    if let Some(n) = a.keep_last {
        check("keep_last", n, n >= 1, "at least 1 (leave it out to keep every checkpoint)")?;
    }
    let max_grad_norm = a.max_grad_norm.unwrap_or(1.0);
    check("max_grad_norm", max_grad_norm, finite_at_least(max_grad_norm, 0.0), "a non-negative number (0 turns clipping off)")?;
    let beta1 = a.adam_beta1.unwrap_or(0.9);
    check("adam_beta1", beta1, (0.0..1.0).contains(&beta1), "in [0, 1)")?;
    let beta2 = a.adam_beta2.unwrap_or(0.999);
    check("adam_beta2", beta2, (0.0..1.0).contains(&beta2), "in [0, 1) (1 never updates the second moment from 0, so every step divides by eps)")?;
    let eps = a.adam_eps.unwrap_or(1e-8);
    check("adam_eps", eps, eps > 0.0 && eps.is_finite(), "a positive number")?;
    let weight_decay = a.weight_decay.unwrap_or(0.0);
    check("weight_decay", weight_decay, finite_at_least(weight_decay, 0.0), "a non-negative number")?;
    let shuffle = !a.no_shuffle.unwrap_or(false) && a.shuffle.unwrap_or(true);
    Ok(StageJob {
        model,
        adapter: a.adapter,
        data,
        out,
        device,
        precision: Precision::resolve(a.precision, device).map_err(|e| OptionError::new("precision", e))?,
        gradient_checkpointing: a.gradient_checkpointing.unwrap_or_else(|| checkpointing_by_default(full)),
        method,
        lora_vision,
        max_seq_len: a.max_seq_len,
        skip_bad_rows: a.skip_bad_rows.unwrap_or(false),
        resume: a.resume,
        resume_anyway: a.resume_anyway.unwrap_or(false),
        overwrite: a.overwrite.unwrap_or(false),
        train: LoopConfig {
            lr,
            scheduler: a.lr_scheduler.unwrap_or_default(),
            warmup_steps: a.warmup_steps.unwrap_or(0),
            adamw: AdamWConfig { beta1, beta2, eps, weight_decay, optimizer: a.optimizer.unwrap_or_default() },
            max_grad_norm: (max_grad_norm > 0.0).then_some(max_grad_norm),
            batch_size,
            grad_accum,
            epochs,
            max_steps: a.max_steps,
            seed: a.seed.unwrap_or(42),
            shuffle,
            save_every: a.save_every,
            keep_last: a.keep_last,
            on_nonfinite: a.on_nonfinite.unwrap_or_default(),
            max_skipped_steps: a.max_skipped_steps.unwrap_or(10),
            interrupt: Default::default(),
        },
    })
}

/// [`SftArgs`] → [`SftJob`]; `inherited` as in [`resolve_stage`].
pub fn resolve_sft_args(a: SftArgs, inherited: Option<&LoraSettings>) -> std::result::Result<SftJob, OptionError> {
    Ok(SftJob {
        stage: resolve_stage(a.train, inherited)?,
        train_on_prompt: a.train_on_prompt.unwrap_or(false),
        packing: a.packing.unwrap_or(false),
    })
}

/// [`DpoArgs`] → [`DpoJob`]; `inherited` as in [`resolve_stage`].
pub fn resolve_dpo_args(a: DpoArgs, inherited: Option<&LoraSettings>) -> std::result::Result<DpoJob, OptionError> {
    let stage = resolve_stage(a.train, inherited)?;
    let loss = a.loss.unwrap_or(DpoLoss::Sigmoid);
    let beta = a.beta.unwrap_or(0.1);
    check("beta", beta, beta > 0.0 && beta.is_finite(), "a positive number")?;
    let label_smoothing = a.label_smoothing.unwrap_or(0.0);
    check("label_smoothing", label_smoothing, (0.0..0.5).contains(&label_smoothing), "in [0, 0.5)")?;
    if label_smoothing > 0.0 && !matches!(loss, DpoLoss::Sigmoid | DpoLoss::Robust) {
        bail!("label_smoothing", "applies to `loss` sigmoid or robust, not {loss}");
    }
    let sft_weight = a.sft_weight.unwrap_or(0.0);
    check("sft_weight", sft_weight, finite_at_least(sft_weight, 0.0), "a non-negative number")?;
    let reference = ReferenceKind::resolve(a.reference, &stage).map_err(|e| OptionError::new("reference", e))?;
    if let Some(n) = a.max_prompt_len {
        check("max_prompt_len", n, n >= 1, "at least 1")?;
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

/// `ladder sft` flags and `--config` → [`SftJob`].
pub fn resolve_sft(cli: SftArgs) -> Result<SftJob> {
    let config = cli.train.config.clone();
    let (args, file) = merge_config(cli, config.as_deref(), &[("`ladder dpo`", valid_keys::<DpoArgs>())])?;
    resolve_sft_args(args, None).map_err(|e| ConfigFile::locate(file.as_ref(), e))
}

/// `ladder dpo` flags and `--config` → [`DpoJob`].
pub fn resolve_dpo(cli: DpoArgs) -> Result<DpoJob> {
    let config = cli.train.config.clone();
    let (args, file) = merge_config(cli, config.as_deref(), &[("`ladder sft`", valid_keys::<SftArgs>())])?;
    resolve_dpo_args(args, None).map_err(|e| ConfigFile::locate(file.as_ref(), e))
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
