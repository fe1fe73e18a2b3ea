//! What every training stage (SFT, DPO) shares around the loop: loading the model for the
//! chosen method (full, new LoRA adapter, or a continued one), resuming, the output folder,
//! `training_args.json`, checkpoints and the final save. A stage only adds its data and its
//! [`Objective`].

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use ladder_data::Tokenizer;
use ladder_model::{peft, Decoder, LoraSettings, StorageDtype};
use serde::Serialize;

use crate::checkpoint::{self, SaveModel};
use crate::error::{Result, TrainError};
use crate::model::LanguageModel;
use crate::objective::Objective;
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

/// The options every training stage has (flags and `--config` keys shared by `sft` and `dpo`).
#[derive(Clone, Debug, Serialize)]
pub struct StageJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    pub device: crate::device::DeviceSpec,
    /// The compute dtype (`--precision`). Left out of the serialised job in f32, so earlier
    /// runs' fingerprints stay the same.
    #[serde(skip_serializing_if = "crate::precision::Precision::is_f32")]
    pub precision: crate::precision::Precision,
    /// Burn's gradient checkpointing on the training device (`--gradient-checkpointing`).
    /// Left out of the serialised job when off, so earlier runs' fingerprints stay the same.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    pub method: Method,
    /// Vision block linears that also get LoRA (`--lora-vision`; Qwen2.5-VL only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lora_vision: Vec<String>,
    pub max_seq_len: Option<usize>,
    pub skip_bad_rows: bool,
    pub resume: Option<PathBuf>,
    /// Resume although the checkpoint's fingerprint differs (`--resume-anyway`). Left out of
    /// the serialised job when off, so earlier runs' fingerprints stay the same.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resume_anyway: bool,
    pub overwrite: bool,
    pub train: LoopConfig,
}

/// A model loaded and set up for a stage's method; nothing has been written yet.
pub struct StageModel {
    pub model: Decoder,
    pub tokenizer: Tokenizer,
    /// The original model folder (tokenizer and config files are copied from it).
    pub source_dir: PathBuf,
    pub dtype: StorageDtype,
    /// The adapter being trained; `None` for full fine-tuning.
    pub lora: Option<LoraSettings>,
    /// The checkpoint being resumed, if any.
    pub resume_dir: Option<PathBuf>,
    /// The training device (autodiff).
    pub device: Device,
    /// Padding id: the tokenizer's pad token, else EOS.
    pub pad_id: u32,
}

/// Loads the model (from the checkpoint when resuming) and prepares it for the method: full
/// fine-tuning trains everything; LoRA freezes the base and attaches a new adapter or trains the
/// loaded one.
pub fn load(job: &StageJob) -> Result<StageModel> {
    let device = crate::device::training_device(job.device, job.gradient_checkpointing)?;
    let resume_dir = job.resume.as_deref().map(checkpoint::find).transpose()?;
    // A resumed LoRA run continues the checkpoint's adapter; a full run its weights.
    let (model_spec, adapter) = match (&resume_dir, &job.method) {
        (Some(dir), Method::Full) => (dir.to_string_lossy().into_owned(), None),
        (Some(dir), Method::Lora(_)) => (job.model.clone(), Some(dir.clone())),
        (None, _) => (job.model.clone(), job.adapter.clone()),
    };
    let loaded = setup::load(&model_spec, adapter.as_deref(), &device)?;
    let source_dir = match &resume_dir {
        Some(_) => ladder_model::ModelSource::parse(&job.model)?.resolve()?,
        None => loaded.dir.clone(),
    };
    let pad_id = loaded
        .tokenizer
        .pad_id()
        .or(loaded.tokenizer.eos_id())
        .ok_or_else(|| match loaded.dir.join("tokenizer_config.json") {
            missing if !missing.exists() => TrainError::Invalid(format!(
                "{}: file not found: it names the EOS and pad tokens, which training needs",
                missing.display()
            )),
            _ => TrainError::Invalid("the tokenizer defines neither a pad nor an EOS token (tokenizer_config.json: eos_token, pad_token)".into()),
        })?;
    // A full checkpoint is f32; the final output keeps the source model's type.
    let dtype = match (&resume_dir, &job.method) {
        (Some(_), Method::Full) => ladder_model::weights::storage_dtype(&source_dir)?,
        _ => loaded.dtype,
    };
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
            // Freeze the base first; adapter factors created or loaded after this train.
            let adapters: Vec<_> = peft::linears_mut(&mut model).into_iter().map(|(_, l)| l.lora.take()).collect();
            model = model.no_grad();
            for ((_, l), a) in peft::linears_mut(&mut model).into_iter().zip(adapters) {
                l.lora = a;
            }
            match loaded.adapter {
                Some(existing) => Some(existing),
                None => {
                    peft::attach_new(&mut model, settings, job.train.seed, &device);
                    Some(settings.clone())
                }
            }
        }
    };
    // After the trainable parameters are set: what does not train is stored in the compute dtype.
    let model = job.precision.apply(model);
    Ok(StageModel {
        model,
        tokenizer: loaded.tokenizer,
        source_dir,
        dtype,
        lora,
        resume_dir,
        device,
        pad_id,
    })
}

struct Saver<'a> {
    base: &'a str,
    source_dir: &'a Path,
    /// `None` for full fine-tuning.
    lora: Option<&'a LoraSettings>,
    dtype: StorageDtype,
}

impl Saver<'_> {
    fn write(&self, model: &Decoder, dir: &Path, dtype: StorageDtype) -> Result<()> {
        match self.lora {
            Some(settings) => setup::save_adapter(model, settings, self.base, self.source_dir, dir),
            None => setup::save_full(model, self.source_dir, dir, dtype),
        }
    }
}

impl SaveModel for Saver<'_> {
    fn save(&self, model: &Decoder, dir: &Path) -> Result<()> {
        self.write(model, dir, self.dtype)
    }

    /// Checkpoints keep f32 weights whatever the source's type, so a resume is exact.
    fn save_checkpoint(&self, model: &Decoder, dir: &Path) -> Result<()> {
        self.write(model, dir, StorageDtype::F32)
    }
}

/// Trains `stage.model` on `items` and writes the result into `job.out`: the output folder is
/// created only now, after every input was checked, with `training_args.json` (`config`),
/// `metrics.jsonl`, checkpoints, and finally the adapter or full checkpoint.
pub fn run<O: Objective>(
    job: &StageJob,
    stage: StageModel,
    objective: &O,
    items: &[O::Item],
    config: serde_json::Value,
) -> Result<Summary> {
    let saver = Saver {
        base: &job.model,
        source_dir: &stage.source_dir,
        lora: stage.lora.as_ref(),
        dtype: stage.dtype,
    };
    run_with(job, stage.model, stage.resume_dir.as_deref(), &stage.device, &saver, objective, items, config)
}

/// [`run`] for any model (a text decoder or a vision-language model), saved by `saver`.
#[allow(clippy::too_many_arguments)]
pub fn run_with<M: LanguageModel, O: Objective<M>>(
    job: &StageJob,
    model: M,
    resume_dir: Option<&Path>,
    device: &Device,
    saver: &dyn SaveModel<M>,
    objective: &O,
    items: &[O::Item],
    config: serde_json::Value,
) -> Result<Summary> {
    // With several processes, rank 0 alone writes into the output folder.
    let root = crate::dist::world().is_root();
    let mut inputs = vec![("--model", Path::new(&job.model))];
    inputs.extend(job.adapter.as_deref().map(|a| ("--adapter", a)));
    inputs.extend(job.data.iter().map(|d| ("--data", d.as_path())));
    crate::outputs::check_not_input(&[("--out", &job.out)], &inputs)?;
    let mut config = config;
    config[crate::fingerprint::KEY] = serde_json::to_value(crate::fingerprint::Fingerprint::of(&job.model, job.adapter.as_deref(), &job.data)?).expect("serialisable");
    let resume = match resume_dir {
        Some(dir) => {
            let resume = checkpoint::load(dir, AdamW::new(job.train.adamw), device)?;
            let differences = crate::fingerprint::differences(&resume.state.config, resume.state.world_size, &config, crate::dist::world().size());
            crate::fingerprint::check_resume(dir, &resume.state.config, &differences, job.resume_anyway)?;
            Some(resume)
        }
        None => None,
    };
    // A checkpoint of this same folder continues its run; anything else starts a new one.
    let continuing = resume_dir.is_some_and(|dir| crate::outputs::is_within(dir, &job.out));
    let run_dir = if root { Some(crate::outputs::RunDir::open(&job.out, job.overwrite, continuing)?) } else { None };
    let result = (|| {
        // Held until the run ends (or fails): a second run on this folder stops here.
        let _lock = if root { Some(crate::lock::acquire(&job.out)?) } else { None };
        if root {
            ladder_model::write_atomic(&job.out.join("training_args.json"), &serde_json::to_vec_pretty(&config).expect("serialisable"))?;
        }
        let (model, summary) = train(&job.train, model, objective, items, &job.out, saver, resume, config)?;
        if root {
            // Final weights: checkpoints are f32, the output keeps the source's storage type.
            saver.save(&model, &job.out).map_err(|e| e.at_step(summary.steps, &job.out))?;
            tracing::info!(out = %job.out.display(), loss = summary.final_loss, "saved");
        }
        Ok(summary)
    })();
    if let Some(run_dir) = run_dir {
        run_dir.finish(matches!(result, Ok(_) | Err(TrainError::Interrupted { .. })))?;
    }
    result
}
