//! `ladder sft`: supervised fine-tuning (full or LoRA) on prompt/completion, chat or plain-text
//! rows, as TRL's `SFTTrainer` does it, through the shared loop.

use std::path::{Path, PathBuf};

use burn::module::Module;
use ladder_data::{pack, read_rows, tokenize_sft, Packed, ReadOptions, SftOptions as TokenizeOptions};
use ladder_model::{peft, Decoder, LoraSettings, StorageDtype};
use serde::Serialize;

use crate::checkpoint::{self, SaveModel};
use crate::error::{Result, TrainError};
use crate::objective::Sft;
use crate::optim::AdamW;
use crate::setup;
use crate::trainer::{train, LoopConfig, Summary};

/// How the model is trained.
#[derive(Clone, Debug, Serialize)]
pub enum Method {
    /// Every weight trains.
    Full,
    /// A LoRA adapter trains on the frozen base: a new one, or the `--adapter` loaded.
    Lora(LoraSettings),
}

/// Everything `ladder sft` needs, resolved from flags and `--config`.
#[derive(Clone, Debug, Serialize)]
pub struct SftJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    pub device: String,
    pub method: Method,
    pub train_on_prompt: bool,
    pub max_seq_len: Option<usize>,
    pub packing: bool,
    pub skip_bad_rows: bool,
    pub resume: Option<PathBuf>,
    pub overwrite: bool,
    pub train: LoopConfig,
}

/// What a finished job reports.
#[derive(Clone, Debug, Serialize)]
pub struct SftReport {
    pub out: PathBuf,
    pub examples: usize,
    pub skipped_rows: usize,
    pub truncated: usize,
    pub dropped_no_target: usize,
    pub summary: Summary,
}

/// Tokenised SFT examples from data files, with the counts worth reporting.
pub struct Prepared {
    pub items: Vec<Packed>,
    pub skipped_rows: usize,
    pub truncated: usize,
    pub dropped_no_target: usize,
}

/// Reads and tokenises every data file (bad rows stop the job unless `skip_bad_rows`).
pub fn prepare(job: &SftJob, tokenizer: &ladder_data::Tokenizer) -> Result<Prepared> {
    let opts = TokenizeOptions {
        train_on_prompt: job.train_on_prompt,
        max_seq_len: job.max_seq_len,
    };
    let (mut examples, mut skipped_rows, mut truncated, mut dropped) = (Vec::new(), 0, 0, 0);
    for path in &job.data {
        let dataset = read_rows(path, &ReadOptions { skip_bad_rows: job.skip_bad_rows })?;
        skipped_rows += dataset.skipped;
        for row in &dataset.rows {
            let t = tokenize_sft(tokenizer, &row.value, &opts).map_err(|e| {
                TrainError::Invalid(format!("{}:{}: {e}", row.origin.file.display(), row.origin.line))
            })?;
            truncated += t.truncated as usize;
            if t.example.targets.iter().skip(1).any(|x| *x) {
                examples.push(t.example);
            } else {
                dropped += 1;
            }
        }
    }
    if skipped_rows > 0 {
        tracing::warn!(skipped_rows, "bad rows skipped (--skip-bad-rows)");
    }
    if truncated > 0 {
        tracing::warn!(truncated, max_seq_len = ?job.max_seq_len, "examples truncated to --max-seq-len");
    }
    if dropped > 0 {
        tracing::warn!(dropped, "examples dropped: no target token left after truncation");
    }
    let items = match (job.packing, job.max_seq_len) {
        (true, Some(len)) => pack(&examples, len),
        (true, None) => return Err(TrainError::Invalid("--packing needs --max-seq-len".into())),
        (false, _) => examples.into_iter().map(Packed::from).collect(),
    };
    Ok(Prepared { items, skipped_rows, truncated, dropped_no_target: dropped })
}

struct Saver<'a> {
    job: &'a SftJob,
    source_dir: &'a Path,
    /// `None` for full fine-tuning.
    lora: Option<&'a LoraSettings>,
    dtype: StorageDtype,
}

impl SaveModel for Saver<'_> {
    fn save(&self, model: &Decoder, dir: &Path) -> Result<()> {
        match self.lora {
            Some(settings) => setup::save_adapter(model, settings, &self.job.model, self.source_dir, dir),
            None => setup::save_full(model, self.source_dir, dir, self.dtype),
        }
    }
}

/// Runs the job: load, tokenise, train, save. Bad input fails before anything is written.
pub fn run(job: &SftJob) -> Result<SftReport> {
    let device = crate::device::parse_device(&job.device)?.autodiff();
    let resume_dir = job.resume.as_deref().map(checkpoint::find).transpose()?;
    // A resumed LoRA run continues the checkpoint's adapter; a full run its weights.
    let (model_spec, adapter) = match (&resume_dir, &job.method) {
        (Some(dir), Method::Full) => (dir.to_string_lossy().into_owned(), None),
        (Some(dir), Method::Lora(_)) => (job.model.clone(), Some(dir.clone())),
        (None, _) => (job.model.clone(), job.adapter.clone()),
    };
    let loaded = setup::load(&model_spec, adapter.as_deref(), &device)?;
    let source_dir = match &resume_dir {
        Some(_) => setup::load(&job.model, None, &burn::tensor::Device::flex()).map(|l| l.dir)?,
        None => loaded.dir.clone(),
    };
    let prepared = prepare(job, &loaded.tokenizer)?;
    let pad_id = loaded
        .tokenizer
        .pad_id()
        .or(loaded.tokenizer.eos_id())
        .ok_or_else(|| TrainError::Invalid("the tokenizer defines neither a pad nor an EOS token".into()))?;
    let mut model = loaded.model;
    let lora = match &job.method {
        Method::Full => {
            if peft::has_adapters(&model) {
                return Err(TrainError::Invalid(
                    "--full with --adapter: merge the adapter first (`ladder merge`) or train the adapter with LoRA".into(),
                ));
            }
            None
        }
        Method::Lora(settings) => {
            let existing = loaded.adapter.clone();
            // Freeze the base first; adapter factors created or loaded after this train.
            let adapters: Vec<_> = peft::linears_mut(&mut model).into_iter().map(|(_, l)| l.lora.take()).collect();
            model = model.no_grad();
            for ((_, l), a) in peft::linears_mut(&mut model).into_iter().zip(adapters) {
                l.lora = a;
            }
            match existing {
                Some(s) => Some(s),
                None => {
                    peft::attach_new(&mut model, settings, job.train.seed, &device);
                    Some(settings.clone())
                }
            }
        }
    };
    setup::prepare_out_dir(&job.out, job.overwrite, resume_dir.is_some())?;
    let stage_config = serde_json::to_value(job).expect("serialisable");
    ladder_model::write_atomic(
        &job.out.join("training_args.json"),
        &serde_json::to_vec_pretty(&stage_config).expect("serialisable"),
    )?;
    let resume = match &resume_dir {
        Some(dir) => Some(checkpoint::load(dir, AdamW::new(job.train.adamw), &device)?),
        None => None,
    };
    let saver = Saver { job, source_dir: &source_dir, lora: lora.as_ref(), dtype: loaded.dtype };
    let objective = Sft { pad_id };
    let (model, summary) = train(&job.train, model, &objective, &prepared.items, &job.out, &saver, resume, stage_config)?;
    // Final weights: checkpoints are f32, the output keeps the source's storage type.
    saver.save(&model, &job.out)?;
    tracing::info!(out = %job.out.display(), loss = summary.final_loss, "saved");
    Ok(SftReport {
        out: job.out.clone(),
        examples: prepared.items.len(),
        skipped_rows: prepared.skipped_rows,
        truncated: prepared.truncated,
        dropped_no_target: prepared.dropped_no_target,
        summary,
    })
}
