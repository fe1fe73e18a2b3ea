//! `ladder eval --model`: generate for every test prompt (greedy by default), time it, and
//! score the outputs against their references with `ladder-eval` — the benchmark's composite
//! score, degeneration rate, throughput and cost per million pages. The predictions are
//! written beside `eval.json` so they can be re-scored (`ladder eval --predictions`).

use std::path::PathBuf;

use ladder_data::degeneration::Detector;
use ladder_eval::{EvalOptions, EvalReport, Prediction, Throughput};
use ladder_model::generate::{generate_with, row_seed, GenerateConfig, Request};
use ladder_model::ForwardMode;
use serde::Serialize;
use serde_json::json;

use crate::error::{Result, TrainError};
use crate::pairs::{finish, read_prompted, write};

/// Everything `ladder eval --model` needs.
#[derive(Clone, Debug, Serialize)]
pub struct EvalJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    /// Rows `{"prompt","completion"}`; the completion is the reference.
    pub data: PathBuf,
    /// `eval.json`; the predictions go to `predictions.jsonl` in the same folder.
    pub out: PathBuf,
    pub device: String,
    pub generate: GenerateConfig,
    pub batch_size: usize,
    pub price_per_hour: Option<f64>,
    pub detector: Detector,
}

/// Generates, scores, writes `predictions.jsonl` and `eval.json`.
pub fn run(job: &EvalJob) -> Result<EvalReport> {
    job.generate.validate().map_err(|e| TrainError::Invalid(format!("generation options: {e}")))?;
    let device = crate::device::parse_device(&job.device)?;
    let loaded = crate::setup::load(&job.model, job.adapter.as_deref(), &device)?;
    let tok = &loaded.tokenizer;
    let prompts = read_prompted(&job.data, tok)?;
    let mut eos: Vec<u32> = loaded.model.config.eos_token_ids.clone();
    eos.extend(tok.eos_id());
    let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
    let bar = crate::progress::bar(prompts.len(), 0, "pages");
    bar.set_prefix("eval");
    let started = std::time::Instant::now();
    let (mut predictions, mut lines, mut tokens) = (Vec::new(), String::new(), 0usize);
    for (c, chunk) in prompts.chunks(job.batch_size.max(1)).enumerate() {
        let first = c * job.batch_size.max(1);
        let requests: Vec<Request> = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| Request { ids: p.ids.clone(), seed: row_seed(job.generate.seed, (first + j) as u64) })
            .collect();
        let generations = generate_with(&loaded.model, &requests, &job.generate, &eos, &decode, ForwardMode::default(), &mut |n| {
            tokens += n;
            let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{rate:.0} tok/s"));
        });
        for (p, g) in chunk.iter().zip(generations) {
            lines.push_str(&json!({
                "prompt": p.prompt, "prediction": g.text, "reference": p.reference,
                "finish_reason": g.finish_reason, "n_tokens": g.n_tokens,
            }).to_string());
            lines.push('\n');
            predictions.push(Prediction {
                line: p.line,
                prediction: g.text,
                reference: p.reference.clone(),
                finish_reason: Some(finish(g.finish_reason)),
            });
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let opts = EvalOptions {
        detector: job.detector.clone(),
        throughput: Some(Throughput::from_run(predictions.len(), Some(tokens as u64), seconds)),
        price_per_hour: job.price_per_hour,
        ..Default::default()
    };
    let report = EvalReport::new(predictions.iter().map(|p| ladder_eval::score_row(p, &opts)).collect(), &opts);
    write(&job.out.with_file_name("predictions.jsonl"), lines.as_bytes())?;
    write(&job.out, &serde_json::to_vec_pretty(&report).expect("json"))?;
    Ok(report)
}
