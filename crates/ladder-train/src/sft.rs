//! `ladder sft`: supervised fine-tuning (full or LoRA) on prompt/completion, chat or plain-text
//! rows, as TRL's `SFTTrainer` does it, through the shared loop.

use std::path::PathBuf;

use ladder_data::{pack, read_rows, tokenize_sft, tokenize_sft_with_images, ImageConfig, Packed, ReadOptions, SftOptions as TokenizeOptions, IMAGE_PAD};
use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::objective::Sft;
use crate::stage::{self, StageJob};
use crate::trainer::Summary;

/// Everything `ladder sft` needs, resolved from flags and `--config`.
#[derive(Clone, Debug, Serialize)]
pub struct SftJob {
    #[serde(flatten)]
    pub stage: StageJob,
    pub train_on_prompt: bool,
    pub packing: bool,
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

/// Reads and tokenises every data file (bad rows stop the job unless `skip_bad_rows`). Rows
/// with images need `images`, the image processor of a vision-language model; their images
/// are loaded here, so a missing or corrupt file stops the job before training. A text row
/// longer than `max_positions` (the model's `max_position_embeddings`) once truncated to
/// `--max-seq-len` is an error naming its `file:line`: the model has no position for its tail.
pub fn prepare(job: &SftJob, tokenizer: &ladder_data::Tokenizer, images: Option<&ImageConfig>, max_positions: usize) -> Result<Prepared> {
    let opts = TokenizeOptions {
        train_on_prompt: job.train_on_prompt,
        max_seq_len: job.stage.max_seq_len,
    };
    let (mut examples, mut skipped_rows, mut truncated, mut dropped) = (Vec::new(), 0, 0, 0);
    for path in &job.stage.data {
        let dataset = read_rows(path, &ReadOptions { skip_bad_rows: job.stage.skip_bad_rows })?;
        skipped_rows += dataset.skipped;
        for row in &dataset.rows {
            let at = |e: String| TrainError::Invalid(format!("{}:{}: {e}", row.origin.file.display(), row.origin.line));
            let t = if row.value.images().is_empty() {
                let t = tokenize_sft(tokenizer, &row.value, &opts).map_err(|e| at(e.to_string()))?;
                let len = t.example.input_ids.len();
                if len > max_positions {
                    return Err(at(format!(
                        "{len} tokens, more than the model's max_position_embeddings ({max_positions}); pass --max-seq-len {max_positions} (or less) to truncate such rows"
                    )));
                }
                t
            } else {
                let Some(cfg) = images else { return Err(crate::vlm::text_model_error(row)) };
                let pixels = crate::vlm::row_images(row, cfg)?;
                let counts: Vec<usize> = pixels.iter().map(|p| p.num_tokens(cfg.merge_size)).collect();
                let mut t = tokenize_sft_with_images(tokenizer, &row.value, &counts, &opts).map_err(|e| at(e.to_string()))?;
                let pad = tokenizer.token_id(IMAGE_PAD);
                let kept = t.example.input_ids.iter().filter(|&&id| Some(id) == pad).count();
                if kept != counts.iter().sum::<usize>() {
                    return Err(at(format!(
                        "--max-seq-len {} cuts into the row's {} image tokens; raise it",
                        opts.max_seq_len.unwrap_or(0),
                        counts.iter().sum::<usize>()
                    )));
                }
                t.example.images = pixels;
                t
            };
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
        tracing::warn!(truncated, max_seq_len = job.stage.max_seq_len.unwrap_or(0), "examples truncated to --max-seq-len");
    }
    if dropped > 0 {
        tracing::warn!(dropped, "examples dropped: no target token left after truncation");
    }
    let items = match (job.packing, job.stage.max_seq_len) {
        (true, Some(len)) => pack(&examples, len),
        (true, None) => return Err(TrainError::Invalid("--packing needs --max-seq-len".into())),
        (false, _) => examples.into_iter().map(Packed::from).collect(),
    };
    Ok(Prepared { items, skipped_rows, truncated, dropped_no_target: dropped })
}

/// Runs the job: load, tokenise, train, save. Bad input fails before anything is written.
/// A Qwen2.5-VL model folder trains through the same loop, with the rows' images.
pub fn run(job: &SftJob) -> Result<SftReport> {
    let (_, vision) = ladder_model::vlm::detect(&job.stage.model)?;
    if !job.stage.lora_vision.is_empty() && !vision {
        return Err(TrainError::Invalid("--lora-vision needs a vision-language model (Qwen2.5-VL)".into()));
    }
    let mut config = serde_json::to_value(job).expect("serialisable");
    // Recorded so that `--resume` refuses another objective's checkpoint.
    config["objective"] = "sft".into();
    let (prepared, summary) = if vision {
        let stage = crate::vlm::load(&job.stage)?;
        let max_positions = stage.model.language_model.config.max_position_embeddings;
        let prepared = prepare(job, &stage.tokenizer, Some(&stage.images), max_positions)?;
        let objective = Sft { pad_id: stage.pad_id };
        let saver = crate::vlm::VlmSaver { base: &job.stage.model, source_dir: &stage.source_dir, lora: &stage.lora };
        let summary = stage::run_with(&job.stage, stage.model, stage.resume_dir.as_deref(), &stage.device, &saver, &objective, &prepared.items, config)?;
        (prepared, summary)
    } else {
        let stage = stage::load(&job.stage)?;
        let prepared = prepare(job, &stage.tokenizer, None, stage.model.config.max_position_embeddings)?;
        let objective = Sft { pad_id: stage.pad_id };
        let summary = stage::run(&job.stage, stage, &objective, &prepared.items, config)?;
        (prepared, summary)
    };
    Ok(SftReport {
        out: job.stage.out.clone(),
        examples: prepared.items.len(),
        skipped_rows: prepared.skipped_rows,
        truncated: prepared.truncated,
        dropped_no_target: prepared.dropped_no_target,
        summary,
    })
}
