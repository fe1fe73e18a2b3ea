//! `ladder generate`: continuations of JSONL prompts with a model (and optional LoRA adapter),
//! in batches, written as JSONL rows that keep every input column. The decoding itself is
//! [`ladder_model::generate`]; this is the job around it (rows, tokenisation as TRL encodes
//! prompts, batching, progress, atomic output).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ladder_data::{preprocess, prompt_ids_with_images, ImageConfig, Preprocessed, Tokenizer};
use ladder_model::generate::{generate_vlm, generate_with, row_seed};
use ladder_model::{Decoder, FinishReason, ForwardMode, GenerateConfig, Images, Request, VisionLanguageModel};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::device::DeviceSpec;
use crate::precision::Precision;
use crate::error::{Result, TrainError};
use crate::setup;

/// The model a [`Generator`] decodes with. There is one per generator, so the size difference
/// between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Model {
    Text(Decoder),
    Vision(VisionLanguageModel),
}

/// A model loaded for generation, with the ids that end a row (config.json's `eos_token_id`
/// list and the tokenizer's EOS). Shared by `ladder generate`, `ladder pairs` and
/// `ladder eval --model`. A Qwen2.5-VL folder generates from prompts with images.
pub struct Generator {
    model: Model,
    tokenizer: Tokenizer,
    /// The image processor of a vision-language model; `None` for a text model.
    images: Option<ImageConfig>,
    eos: Vec<u32>,
}

/// A prompt's images, in the order of its image tokens.
pub type PromptImages = Vec<Arc<Preprocessed>>;

impl Generator {
    /// Checks `config` and loads `model` (+ `adapter`) on `device` (no autodiff), its language
    /// model computing in `precision` (the vision tower stays f32).
    pub fn load(model: &str, adapter: Option<&Path>, device: DeviceSpec, precision: Precision, config: &GenerateConfig) -> Result<Self> {
        config.validate().map_err(|e| TrainError::Invalid(format!("generation options: {e}")))?;
        let device = device.device()?;
        let (dir, vision) = ladder_model::vlm::detect(model)?;
        if vision {
            let (mut model, tokenizer, images, eos) = crate::vlm::load_for_generation(&dir, adapter, &device)?;
            model.language_model = precision.apply(model.language_model);
            return Ok(Generator { model: Model::Vision(model), tokenizer, images: Some(images), eos });
        }
        let mut loaded = setup::load(model, adapter, &device)?;
        loaded.model = precision.apply(loaded.model);
        let positions = loaded.model.config.max_position_embeddings;
        if config.max_new_tokens >= positions {
            tracing::warn!(
                "--max-new-tokens {} reaches past the model's max_position_embeddings ({positions}): tokens beyond that position are outside what the model was trained on",
                config.max_new_tokens
            );
        }
        let mut eos = loaded.model.config.eos_token_ids.clone();
        eos.extend(loaded.tokenizer.eos_id());
        Ok(Generator { model: Model::Text(loaded.model), tokenizer: loaded.tokenizer, images: None, eos })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The image processor, for a vision-language model.
    pub fn image_config(&self) -> Option<&ImageConfig> {
        self.images.as_ref()
    }

    /// Generates for every request, `batch_size` at a time in the given order, advancing `bar`
    /// by rows and showing tokens/s. `images[i]` are request i's images (empty: none at all).
    /// Returns the generations (in request order) and the number of new tokens. With several
    /// processes, each generates its share of the batches (the batches one process would
    /// make; each request has its own sampling seed) and every rank gets every generation.
    pub fn generate(
        &self,
        requests: &[Request],
        images: &[&[Arc<Preprocessed>]],
        config: &GenerateConfig,
        batch_size: usize,
        bar: &indicatif::ProgressBar,
    ) -> (Vec<ladder_model::Generation>, usize) {
        let tok = &self.tokenizer;
        let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_else(|e| format!("<{e}>"));
        let start = Instant::now();
        let mut tokens = 0usize;
        let size = batch_size.max(1);
        let batches: Vec<&[Request]> = requests.chunks(size).collect();
        let shares = crate::dist::world().map_shared(batches.len(), |b| {
            let batch = batches[b];
            let before = tokens;
            let mut on_token = |n: usize| {
                tokens += n;
                bar.set_message(format!("{:.1} tokens/s", tokens as f64 / start.elapsed().as_secs_f64().max(1e-9)));
            };
            let mode = ForwardMode::default();
            let generated = match &self.model {
                Model::Text(model) => generate_with(model, batch, config, &self.eos, &decode, mode, &mut on_token),
                Model::Vision(model) => {
                    let rows = images.get(b * size..b * size + batch.len()).unwrap_or(&[]);
                    let (pixels, grids) = crate::vlm::batch_images(rows);
                    let device = model.language_model.device();
                    // Prompts were checked against their images when they were read.
                    let images = (!grids.is_empty())
                        .then(|| Images::from_host(pixels, model.visual.config.patch_dim(), &grids, &device).expect("preprocessed for this model"));
                    generate_vlm(model, images.as_ref(), batch, config, &self.eos, &decode, mode, &mut on_token).expect("image tokens match the images")
                }
            };
            bar.inc(batch.len() as u64);
            serde_json::to_vec(&(tokens - before, generated)).expect("serialisable")
        });
        let (mut out, mut tokens) = (Vec::with_capacity(requests.len()), 0usize);
        for share in shares {
            let (n, generated): (usize, Vec<ladder_model::Generation>) = serde_json::from_slice(&share).expect("written above");
            tokens += n;
            out.extend(generated);
        }
        (out, tokens)
    }
}

/// Everything `ladder generate` needs.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateJob {
    pub model: String,
    pub adapter: Option<PathBuf>,
    /// JSONL rows `{"prompt": text | messages}` or `{"messages": [...]}`.
    pub data: PathBuf,
    pub out: PathBuf,
    pub device: DeviceSpec,
    /// The compute dtype (`--precision`); left out of the serialised job in f32.
    #[serde(skip_serializing_if = "crate::precision::Precision::is_f32")]
    pub precision: crate::precision::Precision,
    /// Prompts decoded together.
    pub batch_size: usize,
    pub config: GenerateConfig,
}

/// What a finished job reports.
#[derive(Clone, Debug, Serialize)]
pub struct GenerateReport {
    pub out: PathBuf,
    pub rows: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub eos: usize,
    pub stop: usize,
    pub length: usize,
}

/// A prompt row: its JSON object (carried to the output) and prompt token ids.
pub struct PromptRow {
    pub columns: Map<String, Value>,
    pub ids: Vec<u32>,
    /// Its images (rows with `"image"` / `"images"`, for a vision-language model).
    pub images: PromptImages,
}

/// Reads and tokenises every row, failing on the first bad one with `file:line: reason`. Rows
/// with `"image"` / `"images"` (paths relative to the data file) need `images`, a
/// vision-language model's image processor; their images are loaded and preprocessed here.
pub fn read_prompts(path: &Path, tok: &Tokenizer, images: Option<&ImageConfig>) -> Result<Vec<PromptRow>> {
    let base = path.parent().unwrap_or(Path::new(""));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "jsonl" | "json") {
        return Err(TrainError::Invalid(format!("{}: expected a .jsonl file of prompts", path.display())));
    }
    let mut rows = Vec::new();
    for (line, value) in ladder_data::read_json_lines(path)? {
        let at = |message: String| TrainError::Invalid(format!("{}:{line}: {message}", path.display()));
        let value = value.map_err(at)?;
        let (prompt, sources) = ladder_data::parse_prompt_row(&value, base).map_err(at)?;
        let (ids, pixels) = match images {
            _ if sources.is_empty() => (ladder_data::sft::prompt_ids(tok, &prompt).map_err(|e| at(e.to_string()))?, Vec::new()),
            None => return Err(at("the row has images but the model is text-only; use a vision-language model (Qwen2.5-VL) or drop the image".into())),
            Some(cfg) => {
                let pixels = sources
                    .iter()
                    .enumerate()
                    .map(|(k, source)| {
                        let img = source.load().and_then(|img| preprocess(&img, cfg));
                        img.map(Arc::new).map_err(|e| at(format!("image {} ({}): {e}", k + 1, source.describe())))
                    })
                    .collect::<Result<PromptImages>>()?;
                let counts: Vec<usize> = pixels.iter().map(|p| p.num_tokens(cfg.merge_size)).collect();
                (prompt_ids_with_images(tok, &prompt, &counts).map_err(|e| at(e.to_string()))?, pixels)
            }
        };
        if ids.is_empty() {
            return Err(at("the prompt encodes to no tokens".into()));
        }
        let Value::Object(columns) = value else { unreachable!("parse_prompt_row checked it") };
        rows.push(PromptRow { columns, ids, images: pixels });
    }
    if rows.is_empty() {
        return Err(TrainError::Invalid(format!("{}: no prompts", path.display())));
    }
    Ok(rows)
}

/// Runs the job and writes `job.out` (all rows, or nothing on error).
pub fn run(job: &GenerateJob) -> Result<GenerateReport> {
    if job.batch_size == 0 {
        return Err(TrainError::Invalid("--batch-size must be at least 1".into()));
    }
    crate::outputs::check_not_input(&[("--out", &job.out)], &[("--data", &job.data)])?;
    let generator = Generator::load(&job.model, job.adapter.as_deref(), job.device, job.precision, &job.config)?;
    let rows = read_prompts(&job.data, generator.tokenizer(), generator.image_config())?;
    // Similar lengths together waste less on padding; seeds follow the row index, so the
    // output does not depend on the batching.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rows[i].ids.len()));
    let requests: Vec<Request> =
        order.iter().map(|&i| Request { ids: rows[i].ids.clone(), seed: row_seed(job.config.seed, i as u64) }).collect();
    let bar = crate::progress::bar(rows.len(), 0, "rows");
    bar.set_prefix("generate");
    let start = Instant::now();
    let images: Vec<&[Arc<Preprocessed>]> = order.iter().map(|&i| rows[i].images.as_slice()).collect();
    let (generated, tokens) = generator.generate(&requests, &images, &job.config, job.batch_size, &bar);
    bar.finish_and_clear();
    let mut results = vec![None; rows.len()];
    for (&i, g) in order.iter().zip(generated) {
        results[i] = Some(g);
    }
    let seconds = start.elapsed().as_secs_f64();

    let mut report = GenerateReport {
        out: job.out.clone(),
        rows: rows.len(),
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        eos: 0,
        stop: 0,
        length: 0,
    };
    let mut text = String::new();
    for (row, g) in rows.into_iter().zip(results) {
        let g = g.expect("every row generated");
        match g.finish_reason {
            FinishReason::Eos => report.eos += 1,
            FinishReason::Stop => report.stop += 1,
            FinishReason::Length => report.length += 1,
        }
        let mut columns = row.columns;
        columns.insert("generated".into(), Value::String(g.text));
        columns.insert("n_tokens".into(), g.n_tokens.into());
        columns.insert("finish_reason".into(), serde_json::to_value(g.finish_reason).expect("serialisable"));
        text.push_str(&Value::Object(columns).to_string());
        text.push('\n');
    }
    if crate::dist::world().is_root() {
        setup::write_output(&job.out, text.as_bytes())?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ladder_data::{Message, Prompt};
    use serde_json::json;

    #[test]
    fn prompts_from_every_row_shape() {
        let row_prompt = |v: Value| ladder_data::parse_prompt_row(&v, Path::new("")).map(|(p, _)| p);
        assert_eq!(row_prompt(json!({"prompt": "hi", "reference": "x"})).unwrap(), Prompt::Text("hi".into()));
        let chat = json!({"prompt": [{"role": "user", "content": "hi"}]});
        assert_eq!(row_prompt(chat).unwrap(), Prompt::Messages(vec![Message::new("user", "hi")]));
        let conversation = json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]});
        assert_eq!(row_prompt(conversation).unwrap(), Prompt::Messages(vec![Message::new("user", "hi")]));
        let open = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(row_prompt(open).unwrap(), Prompt::Messages(vec![Message::new("user", "hi")]));
        assert!(row_prompt(json!({"text": "x"})).unwrap_err().contains("[\"text\"]"));
        assert!(row_prompt(json!({"prompt": 3})).unwrap_err().contains("\"prompt\" must be"));
        assert!(row_prompt(json!({"messages": [{"role": "assistant", "content": "a"}]})).unwrap_err().contains("no turn before the assistant"));
        assert!(row_prompt(json!({"prompt": []})).unwrap_err().contains("empty"));
        assert!(row_prompt(json!([1])).is_err());
    }
}
