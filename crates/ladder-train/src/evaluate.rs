//! `ladder eval` (and a recipe's eval stage): score predictions against their references with
//! `ladder-eval` — the benchmark's composite score, degeneration rate, throughput and cost per
//! million pages. With a model it first generates for every test prompt (greedy by default),
//! timed, and writes the predictions beside `eval.json` so they can be re-scored
//! (`ladder eval --predictions`).

use std::path::{Path, PathBuf};

use ladder_data::degeneration::{Detector, FinishReason as Finish};
use ladder_eval::{EvalOptions, EvalReport, Prediction, Throughput};
use ladder_model::generate::{row_seed, GenerateConfig, Request};
use serde::Serialize;
use serde_json::json;

use crate::device::DeviceSpec;
use crate::error::Result;
use crate::generate::Generator;
use crate::pairs::{finish, read_prompted};
use crate::setup::write_output;

/// Everything `ladder eval` needs: what to score, and how.
#[derive(Clone, Debug, Serialize)]
pub struct EvalJob {
    pub source: EvalSource,
    /// `eval.json`; generated predictions go to `predictions.jsonl` in the same folder.
    pub out: PathBuf,
    pub price_per_hour: Option<f64>,
    /// Rows without a finish reason are judged as this one (else left out of the rate).
    pub assume_finish_reason: Option<Finish>,
    pub detector: Detector,
}

/// Where the predictions come from.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSource {
    /// Generate with a model for test rows `{"prompt","completion"}` (the completion is the
    /// reference), timed: the throughput is measured.
    Model {
        model: String,
        adapter: Option<PathBuf>,
        data: Vec<PathBuf>,
        device: DeviceSpec,
        /// The compute dtype (`--precision`); left out of the serialised job in f32.
        #[serde(skip_serializing_if = "crate::precision::Precision::is_f32")]
        precision: crate::precision::Precision,
        generate: GenerateConfig,
        batch_size: usize,
    },
    /// Rows `{"prediction","reference","finish_reason"?}` another system produced, with its
    /// measured throughput if known.
    Predictions { file: PathBuf, pages_per_s: Option<f64> },
}

/// Scores the job's predictions (generating them first for a model) and writes `eval.json`
/// (and `predictions.jsonl` beside it for a model), atomically.
pub fn run(job: &EvalJob) -> Result<EvalReport> {
    // Neither output may be one of the inputs (an input is never overwritten).
    let predictions_file = job.out.with_file_name("predictions.jsonl");
    match &job.source {
        EvalSource::Predictions { file, .. } => crate::outputs::check_not_input(&[("--out", &job.out)], &[("--predictions", file)])?,
        EvalSource::Model { data, .. } => {
            let inputs: Vec<(&str, &Path)> = data.iter().map(|d| ("--data", d.as_path())).collect();
            crate::outputs::check_not_input(&[("--out", &job.out), ("predictions.jsonl beside --out", &predictions_file)], &inputs)?
        }
    }
    let base = EvalOptions {
        detector: job.detector.clone(),
        assume_finish_reason: job.assume_finish_reason,
        price_per_hour: job.price_per_hour,
        ..Default::default()
    };
    let report = match &job.source {
        EvalSource::Predictions { file, pages_per_s } => {
            let opts = EvalOptions {
                throughput: pages_per_s.map(|pages_per_s| Throughput { pages_per_s, output_tokens_per_s: None }),
                ..base
            };
            ladder_eval::score_predictions(file, &opts)?
        }
        EvalSource::Model { model, adapter, data, device, precision, generate, batch_size } => {
            let generator = Generator::load(model, adapter.as_deref(), *device, *precision, generate)?;
            let (predictions, lines, throughput) = predict(&generator, data, generate, *batch_size)?;
            // Every rank has every generation (see `Generator::generate`); rank 0 writes.
            if crate::dist::world().is_root() {
                write_output(&predictions_file, lines.as_bytes())?;
            }
            let opts = EvalOptions { throughput: Some(throughput), ..base };
            EvalReport::new(predictions.iter().map(|p| ladder_eval::score_row(p, &opts)).collect(), &opts)
        }
    };
    if crate::dist::world().is_root() {
        write_output(&job.out, &serde_json::to_vec_pretty(&report).expect("json"))?;
    }
    Ok(report)
}

/// Generates for every test row, timed: the predictions, their JSONL, and the throughput.
fn predict(generator: &Generator, data: &[PathBuf], generate: &GenerateConfig, batch_size: usize) -> Result<(Vec<Prediction>, String, Throughput)> {
    let prompts = read_prompted(data, generator.tokenizer(), generator.image_config())?;
    let requests: Vec<Request> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Request { ids: p.ids.clone(), seed: row_seed(generate.seed, i as u64) })
        .collect();
    let bar = crate::progress::bar(prompts.len(), 0, "pages");
    bar.set_prefix("eval");
    let started = std::time::Instant::now();
    let images: Vec<&[std::sync::Arc<ladder_data::Preprocessed>]> = prompts.iter().map(|p| p.images.as_slice()).collect();
    let (generations, tokens) = generator.generate(&requests, &images, generate, batch_size, &bar);
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
    let throughput = Throughput::from_run(predictions.len(), Some(tokens as u64), seconds);
    Ok((predictions, lines, throughput))
}
