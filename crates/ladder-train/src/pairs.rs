//! `ladder pairs`: DPO preference pairs from a model's own degenerate outputs, the method's
//! key move (../shared/background.md): for each prompt, sample K generations; those the
//! degeneration detector flags become `rejected`, the clean reference becomes `chosen`.
//!
//! Options cover the cases a real SFT model leaves: low-scoring but non-degenerate samples can
//! be rejected too, and a prompt that produced no usable sample can get a synthetic repetition
//! loop built from its reference. Every pair records where it came from; the run is
//! deterministic for a seed (each sample has its own sampler seed, independent of batching).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use ladder_data::degeneration::{Detector, FinishReason as Finish, Verdict};
use ladder_data::{read_rows, ReadOptions, Row};
use ladder_model::generate::{row_seed, FinishReason, GenerateConfig, Request};
use serde::Serialize;
use serde_json::{json, Value};

use crate::device::DeviceSpec;
use crate::error::{Result, TrainError};
use crate::generate::Generator;
use crate::setup::write_output;

/// Everything `ladder pairs` needs.
#[derive(Clone, Debug, Serialize)]
pub struct PairsJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    /// Rows `{"prompt","completion"}`: the completion is the clean reference (files read in
    /// order, as one list of prompts).
    pub data: Vec<PathBuf>,
    pub out: PathBuf,
    pub device: DeviceSpec,
    /// The compute dtype (`--precision`); left out of the serialised job in f32.
    #[serde(skip_serializing_if = "crate::precision::Precision::is_f32")]
    pub precision: crate::precision::Precision,
    /// Samples drawn per prompt (K).
    pub samples: usize,
    pub generate: GenerateConfig,
    /// Prompts per generation batch (each contributes K rows).
    pub batch_size: usize,
    pub detector: Detector,
    /// Also reject non-degenerate samples whose composite score against the reference is
    /// below this.
    pub min_score: Option<f64>,
    /// Build a degenerate continuation of the reference for prompts with no rejected sample.
    pub synthetic_fallback: bool,
    /// At most this many pairs per prompt (0: no limit).
    pub max_pairs_per_prompt: usize,
}

/// Counts reported on stderr and in `<out>.summary.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairsSummary {
    pub out: PathBuf,
    pub prompts: usize,
    pub samples: usize,
    pub degenerate: usize,
    /// Degenerate samples by the rule that fired.
    pub by_rule: BTreeMap<String, usize>,
    pub low_score: usize,
    pub duplicates_dropped: usize,
    pub synthetic: usize,
    pub pairs: usize,
    pub prompts_without_pair: usize,
    pub generated_tokens: usize,
    pub seconds: f64,
}

/// Maps generation's finish reason onto the detector's (the two crates do not depend on each
/// other).
pub fn finish(r: FinishReason) -> Finish {
    match r {
        FinishReason::Eos => Finish::Eos,
        FinishReason::Stop => Finish::Stop,
        FinishReason::Length => Finish::Length,
    }
}

/// A repetition loop built from `reference`: its first third, then the 24 characters before
/// the cut repeated — what a looping SFT model writes — until the detector calls it degenerate
/// and it is at least twice the reference's length. Used for prompts where sampling found no
/// degenerate output.
pub fn synthetic_loop(reference: &str, detector: &Detector) -> String {
    let chars: Vec<char> = reference.chars().collect();
    let cut = (chars.len() / 3).max(1).min(chars.len());
    let unit_len = 24.min(cut);
    let unit: String = chars[cut - unit_len..cut].iter().collect();
    let mut text: String = chars[..cut].iter().collect();
    let cap = 64 * chars.len().max(unit_len * 8);
    while text.chars().count() < cap
        && (text.chars().count() < 2 * chars.len() || !detector.check(&text, Finish::Length).degenerate)
    {
        text.push_str(&unit);
    }
    text
}

/// A prompt with its clean reference, tokenised.
pub struct Prompted {
    /// The prompt as written (string or messages), for output rows.
    pub prompt: Value,
    pub reference: String,
    pub ids: Vec<u32>,
    /// 1-based line (or Parquet row) in the data file.
    pub line: usize,
    /// The prompt's images (a vision-language model's rows).
    pub images: crate::generate::PromptImages,
    /// The row's `"images"` as written out again: absolute paths.
    pub image_paths: Vec<String>,
}

/// Reads `{"prompt","completion"}` rows whose completion is the reference, from every file in
/// order; errors name `file:line`. Shared by `ladder pairs` and `ladder eval --model`.
pub fn read_prompted(data: &[PathBuf], tok: &ladder_data::Tokenizer, images: Option<&ladder_data::ImageConfig>) -> Result<Vec<Prompted>> {
    let mut rows = Vec::new();
    for file in data {
        rows.extend(read_rows(file, &ReadOptions::default())?.rows);
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let at = |m: String| TrainError::Invalid(format!("{}:{}: {m}", row.origin.file.display(), row.origin.line));
        let Row::Completion { prompt, completion, .. } = &row.value else {
            return Err(at("expected {\"prompt\",\"completion\"} rows, the completion being the clean reference".into()));
        };
        if completion.trim().is_empty() {
            return Err(at("the reference completion is empty".into()));
        }
        let (ids, pixels) = match images {
            _ if row.value.images().is_empty() => (ladder_data::sft::prompt_ids(tok, prompt).map_err(|e| at(e.to_string()))?, Vec::new()),
            None => return Err(crate::vlm::text_model_error(row)),
            Some(cfg) => {
                let pixels = crate::vlm::row_images(row, cfg)?;
                let counts: Vec<usize> = pixels.iter().map(|p| p.num_tokens(cfg.merge_size)).collect();
                (ladder_data::prompt_ids_with_images(tok, prompt, &counts).map_err(|e| at(e.to_string()))?, pixels)
            }
        };
        let image_paths = row
            .value
            .images()
            .iter()
            .map(|source| match source {
                // Absolute: the pairs file lives elsewhere (a recipe's run folder), and a path
                // relative to the data file (or to a relative data file's folder) would not
                // resolve from there.
                ladder_data::ImageSource::Path(p) => std::path::absolute(p).map(|p| p.display().to_string()).map_err(|e| at(format!("image {}: {e}", p.display()))),
                ladder_data::ImageSource::Bytes { .. } => Err(at("embedded image bytes cannot be written to the output rows yet; use image files".into())),
            })
            .collect::<Result<Vec<String>>>()?;
        if ids.is_empty() {
            return Err(at("the prompt encodes to no tokens".into()));
        }
        // The prompt as written: a string, or the message list (TRL's conversational form).
        let prompt_value = match prompt {
            ladder_data::Prompt::Text(t) => json!(t),
            ladder_data::Prompt::Messages(m) => json!(m),
        };
        out.push(Prompted { prompt: prompt_value, reference: completion.clone(), ids, line: row.origin.line, images: pixels, image_paths });
    }
    Ok(out)
}

/// Runs the job: load, sample, judge, write pairs and the summary atomically.
pub fn run(job: &PairsJob) -> Result<PairsSummary> {
    if job.samples == 0 {
        return Err(TrainError::Invalid("--samples must be at least 1".into()));
    }
    let summary_file = summary_path(&job.out);
    let inputs: Vec<(&str, &Path)> = job.data.iter().map(|d| ("--data", d.as_path())).collect();
    crate::outputs::check_not_input(&[("--out", &job.out), ("the summary beside --out", &summary_file)], &inputs)?;
    let generator = Generator::load(&job.model, job.adapter.as_deref(), job.device, job.precision, &job.generate)?;
    let prompts = read_prompted(&job.data, generator.tokenizer(), generator.image_config())?;
    let k = job.samples;
    // Sample s of prompt i is request i·K + s, seeded by that index: independent of batching.
    let requests: Vec<Request> = (0..prompts.len() * k)
        .map(|r| Request { ids: prompts[r / k].ids.clone(), seed: row_seed(job.generate.seed, r as u64) })
        .collect();
    let bar = crate::progress::bar(requests.len(), 0, "samples");
    bar.set_prefix("pairs");
    let started = std::time::Instant::now();
    let images: Vec<&[std::sync::Arc<ladder_data::Preprocessed>]> = (0..requests.len()).map(|r| prompts[r / k].images.as_slice()).collect();
    let (generations, tokens) = generator.generate(&requests, &images, &job.generate, job.batch_size * k, &bar);
    bar.finish_and_clear();
    let mut summary = PairsSummary { out: job.out.clone(), prompts: prompts.len(), generated_tokens: tokens, ..Default::default() };
    let mut lines = String::new();
    for (i, p) in prompts.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut written = 0;
        for s in 0..k {
            let g = &generations[i * k + s];
            summary.samples += 1;
            let verdict = job.detector.check(&g.text, finish(g.finish_reason));
            let score = ladder_eval::score(&g.text, &p.reference);
            let reason = if verdict.degenerate {
                summary.degenerate += 1;
                let rule = verdict.rule.map_or("degenerate", |r| r.as_str()).to_string();
                *summary.by_rule.entry(rule.clone()).or_default() += 1;
                rule
            } else if job.min_score.is_some_and(|m| score < m) && g.text != p.reference {
                summary.low_score += 1;
                "low_score".into()
            } else {
                continue;
            };
            if !seen.insert(g.text.clone()) || g.text == p.reference {
                summary.duplicates_dropped += 1;
                continue;
            }
            if job.max_pairs_per_prompt > 0 && written >= job.max_pairs_per_prompt {
                continue;
            }
            let source = json!({
                "model": job.model, "adapter": job.adapter, "sample": s,
                "seed": row_seed(job.generate.seed, (i * k + s) as u64),
                "sampling": job.generate, "finish_reason": g.finish_reason, "n_tokens": g.n_tokens,
                "reason": reason, "detector": verdict, "score": score, "synthetic": false,
            });
            push_pair(&mut lines, p, &g.text, source);
            written += 1;
        }
        if written == 0 && job.synthetic_fallback {
            let text = synthetic_loop(&p.reference, &job.detector);
            let verdict: Verdict = job.detector.check(&text, Finish::Length);
            let source = json!({
                "model": job.model, "adapter": job.adapter, "reason": "synthetic",
                "detector": verdict, "score": ladder_eval::score(&text, &p.reference), "synthetic": true,
            });
            push_pair(&mut lines, p, &text, source);
            summary.synthetic += 1;
            written += 1;
        }
        summary.pairs += written;
        summary.prompts_without_pair += (written == 0) as usize;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if summary.pairs == 0 {
        return Err(TrainError::Invalid(format!(
            "no pairs: none of {} samples was degenerate{}; try more --samples, a higher --temperature or --max-new-tokens, --min-score, or --synthetic-fallback",
            summary.samples,
            if job.min_score.is_some() { " or below --min-score" } else { "" }
        )));
    }
    // Every rank has every generation (see `Generator::generate`); rank 0 writes.
    if crate::dist::world().is_root() {
        write_output(&job.out, lines.as_bytes())?;
        let summary_path = summary_path(&job.out);
        write_output(&summary_path, &serde_json::to_vec_pretty(&summary).expect("json"))?;
        tracing::info!(pairs = summary.pairs, degenerate = summary.degenerate, synthetic = summary.synthetic, "pairs written");
    }
    Ok(summary)
}

/// A pair row: the prompt (with its images, if any), the reference as chosen.
fn push_pair(lines: &mut String, p: &Prompted, rejected: &str, source: Value) {
    let mut row = json!({"prompt": p.prompt, "chosen": p.reference, "rejected": rejected, "source": source});
    if !p.image_paths.is_empty() {
        row["images"] = json!(p.image_paths);
    }
    lines.push_str(&row.to_string());
    lines.push('\n');
}

/// `pairs.jsonl` → `pairs.summary.json`.
pub fn summary_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pairs".into());
    out.with_file_name(format!("{stem}.summary.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_loops_are_degenerate_by_the_benchmark_rule() {
        let detector = Detector::default();
        for reference in ["{\"header\": \"CERTIDÃO\", \"text\": \"nascimento de João, filho de Maria\"}", "short", " The quick brown fox", "The quick brown fox jumps over the lazy dog."] {
            let text = synthetic_loop(reference, &detector);
            assert!(text.starts_with(&reference.chars().take(reference.chars().count() / 3).collect::<String>()));
            let v = detector.check(&text, Finish::Length);
            assert!(v.degenerate, "{text:?}: {v:?}");
        }
    }

    #[test]
    fn summary_sits_next_to_the_pairs() {
        assert_eq!(summary_path(Path::new("runs/x/pairs.jsonl")), Path::new("runs/x/pairs.summary.json"));
    }
}
