//! `ladder eval --model`: generate for every test prompt (greedy by default), time it, and
//! score the outputs against their references with `ladder-eval` — the benchmark's composite
//! score, degeneration rate, throughput and cost per million pages. The predictions are
//! written beside `eval.json` so they can be re-scored (`ladder eval --predictions`).

use std::path::PathBuf;

use ladder_data::degeneration::Detector;
use ladder_eval::{EvalOptions, EvalReport, Prediction, Throughput};
use ladder_model::generate::{row_seed, GenerateConfig, Request};
use serde::Serialize;
use serde_json::json;

use crate::error::Result;
use crate::generate::Generator;
use crate::pairs::{finish, read_prompted};
use crate::setup::write_output;

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
    let predictions_file = job.out.with_file_name("predictions.jsonl");
    crate::outputs::check_not_input(&[("--out", &job.out), ("predictions.jsonl beside --out", &predictions_file)], &[("--data", &job.data)])?;
    let generator = Generator::load(&job.model, job.adapter.as_deref(), &job.device, &job.generate)?;
    let prompts = read_prompted(&job.data, generator.tokenizer(), generator.image_config())?;
    let requests: Vec<Request> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Request { ids: p.ids.clone(), seed: row_seed(job.generate.seed, i as u64) })
        .collect();
    let bar = crate::progress::bar(prompts.len(), 0, "pages");
    bar.set_prefix("eval");
    let started = std::time::Instant::now();
    let images: Vec<&[std::sync::Arc<ladder_data::Preprocessed>]> = prompts.iter().map(|p| p.images.as_slice()).collect();
    let (generations, tokens) = generator.generate(&requests, &images, &job.generate, job.batch_size, &bar);
    bar.finish_and_clear();
    let (mut predictions, mut lines) = (Vec::new(), String::new());
    for (p, g) in prompts.iter().zip(generations) {
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
    let seconds = started.elapsed().as_secs_f64();
    let opts = EvalOptions {
        detector: job.detector.clone(),
        throughput: Some(Throughput::from_run(predictions.len(), Some(tokens as u64), seconds)),
        price_per_hour: job.price_per_hour,
        ..Default::default()
    };
    let report = EvalReport::new(predictions.iter().map(|p| ladder_eval::score_row(p, &opts)).collect(), &opts);
    write_output(&predictions_file, lines.as_bytes())?;
    write_output(&job.out, &serde_json::to_vec_pretty(&report).expect("json"))?;
    Ok(report)
}
