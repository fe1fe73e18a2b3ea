//! `ladder dpo`: direct preference optimisation through the shared loop, with TRL's
//! `DPOTrainer` semantics (losses, tokenisation, metric names) and three reference policies.
//!
//! Departures from TRL, each on purpose:
//! - chosen and rejected share one pass over the prompt (`prompt | chosen | rejected` in one
//!   row, see [`ladder_model::Tokens::shared_prefix`]), so long prompts are paid once;
//! - the LM head runs only at completion positions ([`crate::loss::selected_logprobs`]);
//! - with gradient accumulation, losses are normalised by the whole optimizer step (pairs,
//!   chosen tokens), not averaged per micro-batch.
//!
//! The job's parts: [`data`] reads and tokenises the pairs, [`batch`] lays a micro-batch out
//! one pair per row, [`objective`] is the loss the shared loop minimises (its per-pair
//! formulas are [`crate::loss::pair_losses`]), and [`reference`] sets up the reference policy
//! and the cache of precomputed reference log-probs.

mod batch;
pub mod data;
pub mod objective;
pub mod reference;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Device;
use ladder_model::Decoder;
use serde::{Deserialize, Serialize};

pub use crate::loss::DpoLoss;
pub use data::{prepare, Pair, Prepared};
pub use objective::{Dpo, DpoNorm, Reference};
pub use reference::{fingerprint, reference_logps, CacheOutcome};
use reference::reference;

use crate::error::{Result, TrainError};
use crate::stage::{self, Method, StageJob};
use crate::trainer::Summary;

/// Where the reference log-probabilities come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// The policy with its (new) LoRA adapter switched off: the base, no second copy.
    AdapterOff,
    /// A frozen copy of the starting model (base + `--adapter` when continuing one).
    Frozen,
    /// The starting model's log-probs, computed once before training and cached on disk.
    Precomputed,
}

impl ReferenceKind {
    /// The reference a stage uses: `given`, or the default — adapter-off for a new LoRA
    /// adapter (no second copy of the model), precomputed otherwise. Adapter-off is refused
    /// where switching the adapter off would not give the starting model: a continued adapter
    /// (the raw base would become the reference, not the model being continued: DPO then
    /// reports loss ≈ 0 and accuracy 1 within a few steps) and full fine-tuning (no adapter).
    /// The one place this rule is written; recipes reach it through the same options.
    pub fn resolve(given: Option<ReferenceKind>, stage: &StageJob) -> std::result::Result<ReferenceKind, String> {
        let fresh_adapter = matches!(stage.method, Method::Lora(_)) && stage.adapter.is_none();
        match given {
            None if fresh_adapter => Ok(ReferenceKind::AdapterOff),
            None => Ok(ReferenceKind::Precomputed),
            Some(ReferenceKind::AdapterOff) if stage.adapter.is_some() => Err(format!(
                "adapter-off while continuing the adapter {}: switching the adapter off would make the raw base model the reference, \
                 not the model being continued (DPO then reports loss ≈ 0 and accuracy 1 within a few steps); use frozen (base + that adapter, frozen) or precomputed",
                stage.adapter.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
            )),
            Some(ReferenceKind::AdapterOff) if matches!(stage.method, Method::Full) => {
                Err("adapter-off needs a LoRA adapter to switch off; with `full` use frozen or precomputed".into())
            }
            Some(kind) => Ok(kind),
        }
    }
}

/// The DPO half of a job's options.
#[derive(Clone, Debug, Serialize)]
pub struct DpoSettings {
    pub beta: f64,
    pub loss: DpoLoss,
    pub label_smoothing: f64,
    /// Weight of the chosen completion's mean NLL added to the loss (RPO).
    pub sft_weight: f64,
    pub reference: ReferenceKind,
    /// Cache folder for precomputed reference log-probs.
    pub reference_cache: PathBuf,
    /// Longest prompt kept whole.
    pub max_prompt_len: Option<usize>,
    /// Cut long prompts from the left instead of skipping their pairs.
    pub truncate_prompts: bool,
}

/// Everything `ladder dpo` needs, resolved from flags and `--config`.
#[derive(Clone, Debug, Serialize)]
pub struct DpoJob {
    #[serde(flatten)]
    pub stage: StageJob,
    #[serde(flatten)]
    pub dpo: DpoSettings,
}

/// What a finished job reports.
#[derive(Clone, Debug, Serialize)]
pub struct DpoReport {
    pub out: PathBuf,
    pub pairs: usize,
    pub skipped_rows: usize,
    pub skipped_long_prompts: usize,
    pub truncated_prompts: usize,
    pub truncated_completions: usize,
    pub reference: ReferenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_cache: Option<CacheOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_cache_file: Option<PathBuf>,
    pub summary: Summary,
}

/// The starting model as the reference sees it: loaded again from `--model` (+ `--adapter`),
/// frozen, so that a resumed run still compares against where training began.
fn starting_model(job: &DpoJob, device: &Device) -> Result<Decoder> {
    let loaded = crate::setup::load(&job.stage.model, job.stage.adapter.as_deref(), device)?;
    Ok(loaded.model.no_grad())
}

/// Runs the job: load, tokenise, set up the reference, train, save. Bad input fails before
/// anything is written. A Qwen2.5-VL model folder trains through the same loop, each pair's
/// images going through the vision tower once (the prompt is shared by both completions).
pub fn run(job: &DpoJob) -> Result<DpoReport> {
    let (_, vision) = ladder_model::vlm::detect(&job.stage.model)?;
    if !job.stage.lora_vision.is_empty() && !vision {
        return Err(TrainError::Invalid("--lora-vision needs a vision-language model (Qwen2.5-VL)".into()));
    }
    let s = &job.dpo;
    let mut config = serde_json::to_value(job).expect("serialisable");
    config["objective"] = "dpo".into();
    let (prepared, (cache, cache_file), summary) = if vision {
        let stage = crate::vlm::load(&job.stage)?;
        let mut prepared = prepare(job, &stage.tokenizer, Some(&stage.images))?;
        let start = || crate::vlm::starting_model(&job.stage, &stage.device);
        let (reference, cache) = reference(job, &mut prepared, &stage.model, stage.resume_dir.is_some(), stage.pad_id, start)?;
        let objective = Dpo { settings: s.clone(), reference, pad_id: stage.pad_id };
        let saver = crate::vlm::VlmSaver { base: &job.stage.model, source_dir: &stage.source_dir, lora: &stage.lora };
        let summary = stage::run_with(&job.stage, stage.model, stage.resume_dir.as_deref(), &stage.device, &saver, &objective, &prepared.pairs, config)?;
        (prepared, cache, summary)
    } else {
        let stage = stage::load(&job.stage)?;
        let mut prepared = prepare(job, &stage.tokenizer, None)?;
        let start = || starting_model(job, &stage.device);
        let (reference, cache) = reference(job, &mut prepared, &stage.model, stage.resume_dir.is_some(), stage.pad_id, start)?;
        let objective = Dpo { settings: s.clone(), reference, pad_id: stage.pad_id };
        let summary = stage::run(&job.stage, stage, &objective, &prepared.pairs, config)?;
        (prepared, cache, summary)
    };
    Ok(DpoReport {
        out: job.stage.out.clone(),
        pairs: prepared.pairs.len(),
        skipped_rows: prepared.skipped_rows,
        skipped_long_prompts: prepared.skipped_long_prompts,
        truncated_prompts: prepared.truncated_prompts,
        truncated_completions: prepared.truncated_completions,
        reference: s.reference,
        reference_cache: cache,
        reference_cache_file: cache_file,
        summary,
    })
}

