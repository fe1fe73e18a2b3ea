//! Preference rows read and tokenised as TRL's `DPOTrainer` does (prompt with special tokens,
//! each completion without, EOS appended), with long prompts skipped or cut as configured.

use std::sync::Arc;

use ladder_data::{preference_ids, preference_ids_with_images, read_rows, ImageConfig, Preprocessed, ReadOptions, Row, Tokenizer};

use crate::error::{Result, TrainError};
use crate::stage::StageJob;

use super::{DpoJob, DpoSettings};

/// A tokenised preference pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// `file:line` of its row.
    pub origin: String,
    pub prompt: Vec<u32>,
    /// Chosen completion ids as TRL 1.16 tokenizes them (`ladder_data::preference_ids`, as
    /// `ladder logprobs`): EOS appended to text, the template's end of turn for a conversation.
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// Reference log-probs `(chosen, rejected)` when precomputed.
    pub reference: Option<(f64, f64)>,
    /// The prompt's images, in the order of its image tokens (none for text).
    pub images: Vec<Arc<Preprocessed>>,
}

/// Tokenised pairs and the counts worth reporting.
#[derive(Debug, Default)]
pub struct Prepared {
    pub pairs: Vec<Pair>,
    pub skipped_rows: usize,
    pub skipped_long_prompts: usize,
    pub truncated_prompts: usize,
    pub truncated_completions: usize,
}

/// Reads and tokenises preference rows; bad rows stop the job with their `file:line` unless
/// `skip_bad_rows`, and long prompts are skipped or cut as configured. Rows with images need
/// `images`, a vision-language model's image processor; a missing or unreadable image stops
/// the job naming its row.
pub fn prepare(job: &DpoJob, tok: &Tokenizer, images: Option<&ImageConfig>) -> Result<Prepared> {
    let mut out = Prepared::default();
    let skip = job.stage.skip_bad_rows;
    for path in &job.stage.data {
        let dataset = read_rows(path, &ReadOptions { skip_bad_rows: skip })?;
        out.skipped_rows += dataset.skipped;
        for row in &dataset.rows {
            let origin = format!("{}:{}", row.origin.file.display(), row.origin.line);
            let pixels = match images {
                _ if row.value.images().is_empty() => Vec::new(),
                Some(cfg) => crate::vlm::row_images(row, cfg)?,
                None => return Err(crate::vlm::text_model_error(row)),
            };
            let counts: Vec<usize> = images.map_or(Vec::new(), |cfg| pixels.iter().map(|p| p.num_tokens(cfg.merge_size)).collect());
            let pair = match &row.value {
                Row::Preference { prompt, chosen, rejected, .. } => check_pair(chosen, rejected)
                    .and_then(|()| {
                        let (p, c, r) = match pixels.is_empty() {
                            true => preference_ids(tok, prompt, chosen, rejected),
                            false => preference_ids_with_images(tok, prompt, chosen, rejected, &counts),
                        }
                        .map_err(|e| e.to_string())?;
                        if p.is_empty() {
                            return Err("the prompt encodes to no tokens, so nothing predicts the first completion token".into());
                        }
                        Ok(Pair { origin: origin.clone(), prompt: p, chosen: c, rejected: r, reference: None, images: pixels.clone() })
                    }),
                _ => Err("`ladder dpo` needs {\"prompt\",\"chosen\",\"rejected\"} rows".to_string()),
            };
            match pair {
                Ok(pair) => {
                    if let Some(pair) = fit(pair, &job.stage, &job.dpo, &mut out) {
                        out.pairs.push(pair);
                    }
                }
                Err(message) if skip => {
                    tracing::warn!("{origin}: {message} (skipped)");
                    out.skipped_rows += 1;
                }
                Err(message) => return Err(TrainError::Invalid(format!("{origin}: {message}"))),
            }
        }
    }
    if out.skipped_long_prompts > 0 {
        tracing::warn!(
            skipped = out.skipped_long_prompts,
            max_prompt_len = job.dpo.max_prompt_len.unwrap_or(0),
            "pairs skipped: prompt longer than --max-prompt-len (--truncate-prompts keeps their last tokens instead)"
        );
    }
    if out.truncated_prompts + out.truncated_completions > 0 {
        tracing::warn!(prompts = out.truncated_prompts, completions = out.truncated_completions, "truncated to fit");
    }
    if out.pairs.is_empty() {
        return Err(TrainError::Invalid("no preference pairs left to train on".into()));
    }
    Ok(out)
}

fn check_pair(chosen: &str, rejected: &str) -> std::result::Result<(), String> {
    if chosen.trim().is_empty() {
        return Err("\"chosen\" is empty".into());
    }
    if rejected.trim().is_empty() {
        return Err("\"rejected\" is empty".into());
    }
    if chosen == rejected {
        return Err("\"chosen\" and \"rejected\" are identical, so the pair carries no preference".into());
    }
    Ok(())
}

/// Applies `--max-prompt-len` and `--max-seq-len`; `None` when the pair is skipped.
fn fit(mut pair: Pair, stage: &StageJob, dpo: &DpoSettings, counts: &mut Prepared) -> Option<Pair> {
    if let Some(max) = dpo.max_prompt_len.filter(|&m| pair.prompt.len() > m) {
        // Cutting a prompt with images would cut into its image tokens.
        if !dpo.truncate_prompts || max == 0 || !pair.images.is_empty() {
            counts.skipped_long_prompts += 1;
            return None;
        }
        pair.prompt.drain(..pair.prompt.len() - max);
        counts.truncated_prompts += 1;
    }
    if let Some(max) = stage.max_seq_len {
        let room = max.saturating_sub(pair.prompt.len());
        if room == 0 {
            counts.skipped_long_prompts += 1;
            return None;
        }
        if pair.chosen.len() > room || pair.rejected.len() > room {
            pair.chosen.truncate(room);
            pair.rejected.truncate(room);
            counts.truncated_completions += 1;
        }
    }
    Some(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pairs_are_refused() {
        assert!(check_pair("", "x").unwrap_err().contains("\"chosen\" is empty"));
        assert!(check_pair("x", " ").unwrap_err().contains("\"rejected\" is empty"));
        assert!(check_pair("same", "same").unwrap_err().contains("identical"));
        assert!(check_pair("a", "b").is_ok());
    }
}
