//! `ladder logprobs`: summed completion log-probabilities per row, with TRL 1.16's tokenisation
//! (`ladder_data::sft`: a text prompt with special tokens, the completion without and EOS
//! appended; a conversation rendered with the chat template, the completion being all that
//! prompt + completion adds, the template's end of turn included). Parity tests compare these
//! with transformers; DPO uses the same function for its reference pass.

use std::path::{Path, PathBuf};

use ladder_data::{completion_ids, preference_ids, read_rows, ReadOptions, Row};
use ladder_model::{Decoder, ForwardMode, Tokens};
use serde_json::json;

use crate::device::DeviceSpec;
use crate::error::{Result, TrainError};
use crate::loss::target_logprobs;

/// Sum of the log-probs of `completion` given `prompt` (both token ids), and its length.
pub fn sequence_logprob(model: &Decoder, prompt: &[u32], completion: &[u32], mode: ForwardMode) -> f64 {
    let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
    let targets: Vec<bool> = (0..ids.len()).map(|i| i >= prompt.len()).collect();
    let logits = model.forward(&Tokens::new(&ids, 1, ids.len()), mode);
    target_logprobs(logits, &ids, &targets, &model.device()).sum().into_scalar::<f64>()
}

/// Everything `ladder logprobs` needs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogprobsJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub device: DeviceSpec,
    /// The compute dtype (`--precision`); left out of the serialised job in f32.
    #[serde(skip_serializing_if = "crate::precision::Precision::is_f32")]
    pub precision: crate::precision::Precision,
    pub data: PathBuf,
    pub out: PathBuf,
}

/// Loads the model, scores every row and writes one JSON line per row to `job.out`
/// atomically; returns the number of rows.
pub fn run_job(job: &LogprobsJob) -> Result<usize> {
    if ladder_model::vlm::detect(&job.model)?.1 {
        return Err(TrainError::Invalid(format!(
            "{} is a Qwen2.5-VL model: `ladder logprobs` scores text models only so far (DPO computes image rows' log-probs itself, `--reference precomputed`)",
            job.model
        )));
    }
    crate::outputs::check_not_input(&[("--out", &job.out)], &[("--data", &job.data)])?;
    let mut loaded = crate::setup::load(&job.model, job.adapter.as_deref(), &job.device.device()?)?;
    loaded.model = job.precision.apply(loaded.model);
    let records = run(&loaded.model, &loaded.tokenizer, &job.data)?;
    let mut text = String::new();
    for r in &records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    crate::setup::write_output(&job.out, text.as_bytes())?;
    Ok(records.len())
}

/// Computes one JSON record per row of `data`.
pub fn run(model: &Decoder, tokenizer: &ladder_data::Tokenizer, data: &Path) -> Result<Vec<serde_json::Value>> {
    let dataset = read_rows(data, &ReadOptions::default())?;
    let mode = ForwardMode::default();
    let bar = crate::progress::bar(dataset.rows.len(), 0, "rows");
    bar.set_prefix("logprobs");
    let mut out = Vec::with_capacity(dataset.rows.len());
    for (index, row) in dataset.rows.iter().enumerate() {
        let at = |e: ladder_data::DataError| {
            TrainError::Invalid(format!("{}:{}: {e}", row.origin.file.display(), row.origin.line))
        };
        let record = match &row.value {
            Row::Completion { prompt, completion, .. } => {
                let (p, c) = completion_ids(tokenizer, prompt, completion).map_err(at)?;
                json!({"index": index, "logp": sequence_logprob(model, &p, &c, mode), "n_tokens": c.len()})
            }
            Row::Preference { prompt, chosen, rejected, .. } => {
                let (p, c, r) = preference_ids(tokenizer, prompt, chosen, rejected).map_err(at)?;
                json!({
                    "index": index,
                    "logp_chosen": sequence_logprob(model, &p, &c, mode),
                    "logp_rejected": sequence_logprob(model, &p, &r, mode),
                    "n_tokens_chosen": c.len(),
                    "n_tokens_rejected": r.len(),
                })
            }
            _ => {
                return Err(TrainError::Invalid(format!(
                    "{}:{}: `ladder logprobs` needs {{\"prompt\",\"completion\"}} or {{\"prompt\",\"chosen\",\"rejected\"}} rows",
                    row.origin.file.display(),
                    row.origin.line
                )))
            }
        };
        out.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}
