//! Options of the commands that run a model without training it: `ladder generate`, `ladder
//! pairs`, `ladder eval`, `ladder logprobs` and `ladder merge`. `pairs`, `eval` and `merge` are
//! recipe stages too, with the same keys and defaults.

use std::path::PathBuf;

use clap::Args;
use ladder_data::degeneration::{Detector, FinishReason};
use ladder_model::GenerateConfig;
use serde::{Deserialize, Serialize};

use super::train::{check, finite_at_least};
use super::OptionError;
use crate::device::DeviceSpec;
use crate::precision::Precision;
use crate::evaluate::{EvalJob, EvalSource};
use crate::generate::GenerateJob;
use crate::logprobs::LogprobsJob;
use crate::pairs::PairsJob;

type Resolved<T> = std::result::Result<T, OptionError>;

/// The model a command runs: the same three keys everywhere.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct ModelArgs {
    /// Model folder or hf://ORG/NAME[@REVISION].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// A PEFT LoRA adapter to apply.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// cpu, cuda, cuda:N or wgpu [default: cpu].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceSpec>,
    /// Compute dtype: bf16 or f16 hold the weights and activations in 16 bits, with the
    /// logits in f32 [default: bf16 on cuda, f32 elsewhere].
    #[arg(long, value_enum, value_name = "DTYPE")]
    pub precision: Option<Precision>,
}

impl ModelArgs {
    fn resolve(self) -> Resolved<(String, Option<PathBuf>, DeviceSpec, Precision)> {
        let Some(model) = self.model else { return Err(OptionError::new("model", "is required (a model folder or hf://ORG/NAME)")) };
        let device = self.device.unwrap_or_default();
        device.check_built().map_err(|e| OptionError::new("device", e))?;
        let precision = Precision::resolve(self.precision, device).map_err(|e| OptionError::new("precision", e))?;
        Ok((model, self.adapter, device, precision))
    }
}

/// Decoding options shared by `generate`, `pairs` and `eval`.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct SamplingArgs {
    /// Most new tokens per row, the EOS token included [default: 256 for generate, 512 for
    /// pairs, 1024 for eval].
    #[arg(long, value_name = "N", help_heading = "Decoding")]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy search [default: 0, or 1 for pairs].
    #[arg(long, value_name = "T", help_heading = "Decoding")]
    pub temperature: Option<f64>,
    /// Sample from the K most likely tokens only; 0 disables [default: 0].
    #[arg(long, value_name = "K", help_heading = "Decoding")]
    pub top_k: Option<usize>,
    /// Sample from the smallest set of tokens whose probability reaches P; 1 disables
    /// [default: 1].
    #[arg(long, value_name = "P", help_heading = "Decoding")]
    pub top_p: Option<f64>,
    /// Divide positive / multiply negative logits of tokens already seen (prompt included) by
    /// R, as transformers' repetition_penalty; 1 disables [default: 1].
    #[arg(long, value_name = "R", help_heading = "Decoding")]
    pub repetition_penalty: Option<f64>,
    /// Stop a row when its text contains STR (cut before it); repeat for several.
    #[arg(long = "stop", value_name = "STR", help_heading = "Decoding")]
    pub stop: Option<Vec<String>>,
    /// Sampling seed; each row gets its own stream, so batching does not change samples
    /// [default: 0; in a recipe, the recipe's seed].
    #[arg(long, value_name = "N", help_heading = "Decoding")]
    pub seed: Option<u64>,
    /// Prompts decoded together [default: 8].
    #[arg(long, value_name = "N", help_heading = "Decoding")]
    pub batch_size: Option<usize>,
    /// Recompute the whole sequence every step instead of using the KV cache (slow; for
    /// checks and benchmarks).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", help_heading = "Decoding")]
    pub no_cache: Option<bool>,
}

/// A command's own decoding defaults.
pub struct DecodingDefaults {
    pub max_new_tokens: usize,
    pub temperature: f64,
}

pub const GENERATE_DEFAULTS: DecodingDefaults = DecodingDefaults { max_new_tokens: 256, temperature: 0.0 };
pub const PAIRS_DEFAULTS: DecodingDefaults = DecodingDefaults { max_new_tokens: 512, temperature: 1.0 };
pub const EVAL_DEFAULTS: DecodingDefaults = DecodingDefaults { max_new_tokens: 1024, temperature: 0.0 };

impl SamplingArgs {
    /// The library's decoding options and the batch size.
    pub fn resolve(self, defaults: &DecodingDefaults) -> Resolved<(GenerateConfig, usize)> {
        let max_new_tokens = self.max_new_tokens.unwrap_or(defaults.max_new_tokens);
        check("max_new_tokens", max_new_tokens, max_new_tokens >= 1, "at least 1")?;
        let temperature = self.temperature.unwrap_or(defaults.temperature);
        check("temperature", temperature, finite_at_least(temperature, 0.0), "a non-negative number (0 is greedy)")?;
        let top_p = self.top_p.unwrap_or(1.0);
        check("top_p", top_p, top_p > 0.0 && top_p <= 1.0, "in (0, 1]")?;
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        check("repetition_penalty", repetition_penalty, repetition_penalty > 0.0 && repetition_penalty.is_finite(), "a positive number")?;
        let batch_size = self.batch_size.unwrap_or(8);
        check("batch_size", batch_size, batch_size >= 1, "at least 1")?;
        let stop = self.stop.unwrap_or_default();
        if stop.iter().any(String::is_empty) {
            return Err(OptionError::new("stop", "must not be empty (every text contains the empty string)"));
        }
        let config = GenerateConfig {
            max_new_tokens,
            temperature,
            top_k: self.top_k.unwrap_or(0),
            top_p,
            repetition_penalty,
            stop,
            seed: self.seed.unwrap_or(0),
            use_cache: !self.no_cache.unwrap_or(false),
        };
        Ok((config, batch_size))
    }
}

/// The degeneration rule (the benchmark's), shared by `pairs` and `eval`.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct DetectorArgs {
    /// Degeneration rule: the last C characters... [default: 15].
    #[arg(long, value_name = "C", help_heading = "Detector")]
    pub suffix_chars: Option<usize>,
    /// ...occur at least N times in an output that ended without EOS [default: 4].
    #[arg(long, value_name = "N", help_heading = "Detector")]
    pub min_suffix_count: Option<usize>,
}

impl DetectorArgs {
    fn resolve(self) -> Resolved<Detector> {
        let d = Detector::default();
        let suffix_chars = self.suffix_chars.unwrap_or(d.suffix_chars);
        check("suffix_chars", suffix_chars, suffix_chars >= 1, "at least 1")?;
        let min_suffix_count = self.min_suffix_count.unwrap_or(d.min_suffix_count);
        // The suffix always occurs once (it is the suffix): 1 would flag every output.
        check("min_suffix_count", min_suffix_count, min_suffix_count >= 2, "at least 2 (1 would call every output degenerate)")?;
        Ok(Detector { suffix_chars, min_suffix_count, ..d })
    }
}

/// `ladder generate` options.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct GenerateArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
    /// Prompts (.jsonl).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Output JSONL, one row per prompt, in input order (written only when every row is done).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub sampling: SamplingArgs,
}

/// [`GenerateArgs`] → [`GenerateJob`].
pub fn resolve_generate(a: GenerateArgs) -> Resolved<GenerateJob> {
    let (model, adapter, device, precision) = a.model.resolve()?;
    let (config, batch_size) = a.sampling.resolve(&GENERATE_DEFAULTS)?;
    Ok(GenerateJob {
        model,
        adapter,
        data: a.data.ok_or_else(|| OptionError::new("data", "is required (a .jsonl file of prompts)"))?,
        out: a.out.ok_or_else(|| OptionError::new("out", "is required (the output .jsonl file)"))?,
        device,
        precision,
        batch_size,
        config,
    })
}

/// `ladder pairs` options (and a recipe's `pairs` stage).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct PairsArgs {
    /// The model whose outputs become the rejected side (usually the SFT model).
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
    /// Rows {"prompt","completion"}: the completion is the clean reference, the chosen side
    /// (repeat the flag for several files).
    #[arg(long, value_name = "FILE")]
    pub data: Option<Vec<PathBuf>>,
    /// Output JSONL of {"prompt","chosen","rejected","source"}; the summary goes to
    /// <stem>.summary.json beside it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Samples drawn per prompt (K) [default: 4].
    #[arg(long, value_name = "K")]
    pub samples: Option<usize>,
    /// Also reject non-degenerate samples whose composite score against the reference is
    /// below X (in [0, 1]).
    #[arg(long, value_name = "X")]
    pub min_score: Option<f64>,
    /// For prompts with no rejected sample, build a repetition loop from the reference.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub synthetic_fallback: Option<bool>,
    /// At most N pairs per prompt; 0 keeps all distinct rejected samples [default: 1].
    #[arg(long, value_name = "N")]
    pub max_pairs_per_prompt: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub detector: DetectorArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub sampling: SamplingArgs,
}

/// [`PairsArgs`] → [`PairsJob`].
pub fn resolve_pairs(a: PairsArgs) -> Resolved<PairsJob> {
    let (model, adapter, device, precision) = a.model.resolve()?;
    let (generate, batch_size) = a.sampling.resolve(&PAIRS_DEFAULTS)?;
    let data = a.data.unwrap_or_default();
    if data.is_empty() {
        return Err(OptionError::new("data", "is required (prompts with references: {\"prompt\",\"completion\"} rows)"));
    }
    let samples = a.samples.unwrap_or(4);
    check("samples", samples, samples >= 1, "at least 1")?;
    if let Some(x) = a.min_score {
        check("min_score", x, (0.0..=1.0).contains(&x), "in [0, 1] (a composite score)")?;
    }
    Ok(PairsJob {
        model,
        adapter,
        data,
        out: a.out.ok_or_else(|| OptionError::new("out", "is required (the output .jsonl file)"))?,
        device,
        precision,
        samples,
        generate,
        batch_size,
        detector: a.detector.resolve()?,
        min_score: a.min_score,
        synthetic_fallback: a.synthetic_fallback.unwrap_or(false),
        max_pairs_per_prompt: a.max_pairs_per_prompt.unwrap_or(1),
    })
}

/// `ladder eval` options (and a recipe's `eval` stage).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct EvalArgs {
    /// Score this file of rows {"prediction","reference"} with an optional "finish_reason"
    /// (eos|stop|length), from any system (an API, vLLM, `ladder generate`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "data"], required_unless_present = "model")]
    pub predictions: Option<PathBuf>,
    /// Or generate with --model (greedy unless --temperature), timed, and score that.
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
    /// Test rows {"prompt","completion"} for --model: the completion is the reference (repeat
    /// the flag for several files).
    #[arg(long, value_name = "FILE", requires = "model")]
    pub data: Option<Vec<PathBuf>>,
    #[command(flatten)]
    #[serde(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub detector: DetectorArgs,
    /// Where to write eval.json (with --model, predictions.jsonl goes beside it).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Judge rows without a finish_reason as this one (eos, stop or length) instead of leaving
    /// them out of the degeneration rate.
    #[arg(long, value_name = "REASON")]
    pub assume_finish_reason: Option<String>,
    /// Measured throughput of the system that produced --predictions, in pages per second
    /// (with --model it is measured).
    #[arg(long, value_name = "X", conflicts_with = "model")]
    pub pages_per_s: Option<f64>,
    /// Hourly price of the hardware: gives the cost per million pages.
    #[arg(long, value_name = "USD")]
    pub price_per_hour: Option<f64>,
    /// Also print one line per row.
    #[arg(long)]
    #[serde(skip)]
    pub rows: bool,
}

/// [`EvalArgs`] → [`EvalJob`].
pub fn resolve_eval(a: EvalArgs) -> Resolved<EvalJob> {
    let assume_finish_reason = a
        .assume_finish_reason
        .as_deref()
        .map(|r| r.parse::<FinishReason>().map_err(|e| OptionError::new("assume_finish_reason", e)))
        .transpose()?;
    if let Some(x) = a.price_per_hour {
        check("price_per_hour", x, finite_at_least(x, 0.0), "a non-negative number")?;
    }
    if let Some(x) = a.pages_per_s {
        check("pages_per_s", x, x > 0.0 && x.is_finite(), "a positive number")?;
    }
    let detector = a.detector.resolve()?;
    let data = a.data.unwrap_or_default();
    let source = match a.predictions {
        Some(file) => {
            if !data.is_empty() || a.model.model.is_some() {
                return Err(OptionError::new("predictions", "scores rows made elsewhere: give `predictions`, or `data` to generate with the model, not both"));
            }
            if a.price_per_hour.is_some() && a.pages_per_s.is_none() {
                return Err(OptionError::new("price_per_hour", "with `predictions` needs `pages_per_s` (the throughput it is paid for)"));
            }
            EvalSource::Predictions { file, pages_per_s: a.pages_per_s }
        }
        None => {
            if data.is_empty() {
                return Err(OptionError::new("data", "is required: test rows {\"prompt\",\"completion\"} to generate for (or give `predictions`)"));
            }
            if a.pages_per_s.is_some() {
                return Err(OptionError::new("pages_per_s", "applies to `predictions`: with a model the throughput is measured"));
            }
            let (model, adapter, device, precision) = a.model.resolve()?;
            let (generate, batch_size) = a.sampling.resolve(&EVAL_DEFAULTS)?;
            EvalSource::Model { model, adapter, data, device, precision, generate, batch_size }
        }
    };
    Ok(EvalJob {
        source,
        out: a.out.ok_or_else(|| OptionError::new("out", "is required (where eval.json goes)"))?,
        price_per_hour: a.price_per_hour,
        assume_finish_reason,
        detector,
    })
}

/// `ladder logprobs` options.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct LogprobsArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
    /// Rows to score (.jsonl or .parquet).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Output JSONL, one record per row.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// [`LogprobsArgs`] → [`LogprobsJob`].
pub fn resolve_logprobs(a: LogprobsArgs) -> Resolved<LogprobsJob> {
    let (model, adapter, device, precision) = a.model.resolve()?;
    Ok(LogprobsJob {
        model,
        adapter,
        device,
        precision,
        data: a.data.ok_or_else(|| OptionError::new("data", "is required (rows to score)"))?,
        out: a.out.ok_or_else(|| OptionError::new("out", "is required (the output .jsonl file)"))?,
    })
}

/// `ladder merge` options (a recipe's `merge` stage takes none: its model and adapter come
/// from `from`).
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
pub struct MergeArgs {
    /// Base model folder or hf://ORG/NAME[@REVISION].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The PEFT LoRA adapter to fold in.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Output folder for the merged checkpoint (new or empty).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace what --out already holds (as a whole, once the merged model is written).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub overwrite: Option<bool>,
}

/// Fold `adapter` into `model` and write a full checkpoint in `out`.
#[derive(Clone, Debug, Serialize)]
pub struct MergeJob {
    pub model: String,
    pub adapter: PathBuf,
    pub out: PathBuf,
    /// Left out of the serialised job when off, so earlier recipe fingerprints stay the same.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
}

/// [`MergeArgs`] → [`MergeJob`].
pub fn resolve_merge(a: MergeArgs) -> Resolved<MergeJob> {
    Ok(MergeJob {
        model: a.model.ok_or_else(|| OptionError::new("model", "is required (the base model)"))?,
        adapter: a.adapter.ok_or_else(|| OptionError::new("adapter", "is required (the adapter to fold in)"))?,
        out: a.out.ok_or_else(|| OptionError::new("out", "is required (the output folder)"))?,
        overwrite: a.overwrite.unwrap_or(false),
    })
}
