//! `ladder init`: a new, randomly initialised model in Hugging Face format, with its own
//! byte-level BPE tokenizer trained on the user's data (or an existing tokenizer), so a ladder
//! can start from a model made from scratch — the demo's generalist is one, pre-trained by an
//! `sft` stage on `{"text"}` rows. With a [`VisionShape`] the model is a
//! `Qwen2_5_VLForConditionalGeneration` (the text shape becomes its language model), with
//! Qwen2-VL's vision tokens, chat template and image processor, so the VLM demo can start
//! from scratch too. The folder is built aside and renamed into place, so a failure leaves
//! nothing behind.

use std::path::{Path, PathBuf};

use ladder_data::{read_rows, ImageConfig, Prompt, ReadOptions, Row, Tokenizer, IMAGE_PAD};
use ladder_model::config::DecoderConfig;
use ladder_model::vision::VisionConfig;
use ladder_model::weights::{hf_tensors, write_safetensors};
use ladder_model::{Architecture, StorageDtype, VlmConfig};
use serde::Serialize;

use crate::error::{io, Result, TrainError};

/// Where the tokenizer comes from.
#[derive(Clone, Debug, Serialize)]
pub enum TokenizerSource {
    /// Train a byte-level BPE of `vocab_size` tokens on the text of these data files.
    Train { data: Vec<PathBuf>, vocab_size: usize },
    /// Copy `tokenizer.json` / `tokenizer_config.json` from this folder.
    Existing(PathBuf),
}

/// Everything `ladder init` needs.
#[derive(Clone, Debug, Serialize)]
pub struct InitJob {
    pub out: PathBuf,
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub tokenizer: TokenizerSource,
    pub seed: u64,
    /// Standard deviation of the normal initialisation (transformers' `initializer_range`).
    pub init_std: f64,
    pub overwrite: bool,
    /// Make a Qwen2.5-VL model with this vision tower (the text fields above shape its
    /// language model, which must then be Qwen2's).
    pub vision: Option<VisionShape>,
    /// With `vision`: take the language model (shape, weights and tokenizer, which
    /// `tokenizer` must then name) from this Qwen2 checkpoint instead, as Qwen2.5-VL's language
    /// model starts from Qwen2.5's; only the vision tower and the new vision tokens' embeddings
    /// are random.
    pub text_model: Option<PathBuf>,
}

/// The vision tower and image processor of a new Qwen2.5-VL model. Qwen2.5-VL's fixed
/// choices stay: 3 channels, temporal patches of 2 frames, a 2×2 spatial merge, SwiGLU with
/// biases; the last block attends to the whole image and the others within windows (Qwen's
/// released models use full attention in every eighth block).
#[derive(Clone, Debug, Serialize)]
pub struct VisionShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub patch_size: usize,
    /// Window edge in pixels (Qwen2.5-VL: 112, i.e. 4×4 merged tokens of 28 pixels).
    pub window_size: usize,
    /// The image processor's bounds on resized area (`size.shortest_edge` / `longest_edge`):
    /// `max_pixels / (patch_size · 2)²` is the most image tokens one image gives.
    pub min_pixels: u64,
    pub max_pixels: u64,
}

/// Qwen2.5-VL's spatial merge and temporal patch size.
const MERGE: usize = 2;
const TEMPORAL_PATCH: usize = 2;

/// What `ladder init` made.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub out: PathBuf,
    pub params: usize,
    pub vocab_size: usize,
    pub tokenizer_texts: usize,
}

/// Every string of a row: what the tokenizer should learn to encode.
fn texts_of(row: &Row, out: &mut Vec<String>) {
    let prompt = |p: &Prompt, out: &mut Vec<String>| match p {
        Prompt::Text(t) => out.push(t.clone()),
        Prompt::Messages(m) => out.extend(m.iter().map(|m| m.content.clone())),
    };
    match row {
        Row::Text { text } => out.push(text.clone()),
        Row::Completion { prompt: p, completion, .. } => {
            prompt(p, out);
            out.push(completion.clone());
        }
        Row::Messages { messages, .. } => out.extend(messages.iter().map(|m| m.content.clone())),
        Row::Preference { prompt: p, chosen, rejected, .. } => {
            prompt(p, out);
            out.extend([chosen.clone(), rejected.clone()]);
        }
    }
}

fn check(job: &InitJob) -> Result<()> {
    let bad = |m: String| Err(TrainError::Invalid(m));
    if job.num_heads == 0 {
        return bad("--heads must be at least 1".into());
    }
    if job.num_kv_heads == 0 || !job.num_heads.is_multiple_of(job.num_kv_heads) {
        return bad(format!("--kv-heads ({}) must divide --heads ({})", job.num_kv_heads, job.num_heads));
    }
    if !job.hidden_size.is_multiple_of(job.num_heads) {
        return bad(format!("--hidden-size ({}) is not divisible by --heads ({})", job.hidden_size, job.num_heads));
    }
    if !(job.hidden_size / job.num_heads).is_multiple_of(2) {
        return bad(format!("--hidden-size ({}) must be --heads ({}) × an even head size", job.hidden_size, job.num_heads));
    }
    if job.num_layers == 0 || job.intermediate_size == 0 {
        return bad("--layers and --intermediate-size must be at least 1".into());
    }
    if job.text_model.is_some() && job.vision.is_none() {
        return bad("--text-model makes a vision-language model from a text one: it needs --arch qwen2_5_vl".into());
    }
    if let Some(v) = &job.vision {
        if job.architecture != Architecture::Qwen2 {
            return bad(format!("a Qwen2.5-VL model's language model is Qwen2's, not {:?}", job.architecture));
        }
        if job.hidden_size / job.num_heads < 8 {
            return bad(format!("--hidden-size / --heads = {} is too small a head for multimodal RoPE (use ≥ 8)", job.hidden_size / job.num_heads));
        }
        if v.num_heads == 0 || v.hidden_size % v.num_heads != 0 || (v.hidden_size / v.num_heads) % 4 != 0 {
            return bad(format!("--vision-hidden-size ({}) must be --vision-heads ({}) × a head size divisible by 4 (2-D RoPE)", v.hidden_size, v.num_heads));
        }
        if v.depth == 0 || v.intermediate_size == 0 || v.patch_size == 0 {
            return bad("--vision-layers, --vision-intermediate-size and --patch-size must be at least 1".into());
        }
        let unit = (v.patch_size * MERGE) as u64;
        if v.window_size < v.patch_size * MERGE {
            return bad(format!("--window-size {} is smaller than one merged token ({unit} pixels)", v.window_size));
        }
        if v.min_pixels < unit * unit || v.max_pixels < v.min_pixels {
            return bad(format!(
                "--min-pixels {} / --max-pixels {}: need (patch size × 2)² = {} ≤ min ≤ max",
                v.min_pixels,
                v.max_pixels,
                unit * unit
            ));
        }
    }
    if let TokenizerSource::Train { vocab_size, .. } = &job.tokenizer {
        if *vocab_size < 300 {
            return bad(format!("--vocab-size {vocab_size} is too small: a byte-level BPE needs 256 byte tokens, the special tokens and some merges (use ≥ 300)"));
        }
    }
    if !(job.init_std.is_finite() && job.init_std > 0.0) {
        return bad(format!("--init-std {}: expected a positive number (the standard deviation of the weights)", job.init_std));
    }
    // Either would write a model whose every output is NaN (config.json refuses them on load).
    if !(job.rope_theta.is_finite() && job.rope_theta > 0.0) {
        return bad(format!("--rope-theta {}: expected a positive number", job.rope_theta));
    }
    if job.max_position_embeddings == 0 {
        return bad("--max-position-embeddings must be at least 1".into());
    }
    let sources: Vec<(&str, &Path)> = match &job.tokenizer {
        TokenizerSource::Existing(dir) => vec![("--tokenizer", dir.as_path())],
        TokenizerSource::Train { data, .. } => data.iter().map(|d| ("--tokenizer-data", d.as_path())).collect(),
    };
    let text_model: Vec<(&str, &Path)> = job.text_model.iter().map(|d| ("--text-model", d.as_path())).collect();
    crate::outputs::check_not_input(&[("--out", &job.out)], &[sources, text_model].concat())?;
    crate::outputs::check_out_dir(&job.out, job.overwrite)
}

/// Builds the tokenizer and the model in a sibling temporary folder, then puts it in place of
/// `out` ([`crate::outputs::write_dir_atomically`]).
pub fn run(job: &InitJob) -> Result<InitReport> {
    check(job)?;
    let mut report = None;
    crate::outputs::write_dir_atomically(&job.out, job.overwrite, |staging| {
        report = Some(write_model(job, staging)?);
        Ok(())
    })?;
    let report = report.expect("written");
    tracing::info!(out = %job.out.display(), params = report.params, "initialised");
    Ok(report)
}

/// Writes the tokenizer, config and random weights of `job` into the folder `dir`.
fn write_model(job: &InitJob, dir: &Path) -> Result<InitReport> {
    let mut n_texts = 0;
    let tokenizer = match &job.tokenizer {
        TokenizerSource::Train { data, vocab_size } => {
            let mut texts = Vec::new();
            for path in data {
                for row in read_rows(path, &ReadOptions::default())?.rows {
                    texts_of(&row.value, &mut texts);
                }
            }
            n_texts = texts.len();
            tracing::info!(texts = n_texts, vocab_size, "training the tokenizer");
            ladder_data::tokenizer::train_bpe(&texts, *vocab_size, dir)?
        }
        TokenizerSource::Existing(source) => {
            // Read from where the user pointed, so an error names their folder, not ours.
            Tokenizer::from_dir(source)?;
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"] {
                let src = source.join(name);
                if src.exists() {
                    std::fs::copy(&src, dir.join(name)).map_err(io(&src))?;
                }
            }
            Tokenizer::from_dir(dir)?
        }
    };
    let tokenizer = match job.vision {
        Some(_) => ladder_data::tokenizer::add_vision_tokens(dir)?,
        None => tokenizer,
    };
    let eos = tokenizer
        .eos_id()
        .ok_or_else(|| TrainError::Invalid("the tokenizer has no eos_token (tokenizer_config.json)".into()))?;
    let config = match &job.text_model {
        Some(dir) => text_model_config(dir, &tokenizer)?,
        None => DecoderConfig {
            rope_theta: job.rope_theta,
            max_position_embeddings: job.max_position_embeddings,
            tie_word_embeddings: job.tie_word_embeddings,
            bos_token_id: tokenizer.bos_id(),
            eos_token_ids: vec![eos],
            ..DecoderConfig::new(
                job.architecture,
                tokenizer.vocab_size(),
                job.hidden_size,
                job.intermediate_size,
                job.num_layers,
                job.num_heads,
                job.num_kv_heads,
            )
        },
    };
    let (tensors, json) = match &job.vision {
        None => {
            let model = ladder_model::random_decoder(&config, job.init_std, job.seed, &burn::tensor::Device::flex());
            (hf_tensors(&model), config.to_hf_json())
        }
        Some(shape) => {
            let vlm = vlm_config(config.clone(), shape, &tokenizer)?;
            write_preprocessor(dir, shape)?;
            let mut tensors = ladder_model::random_vlm_tensors(&vlm, job.init_std, job.seed);
            if let Some(dir) = &job.text_model {
                take_text_weights(&mut tensors, dir)?;
            }
            (tensors, vlm.to_hf_json())
        }
    };
    let params = tensors.iter().map(|t| t.2.len()).sum();
    write_safetensors(&dir.join("model.safetensors"), &tensors, StorageDtype::F32)?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&json).expect("json")).map_err(io(&config_path))?;
    Ok(InitReport { out: job.out.clone(), params, vocab_size: config.vocab_size, tokenizer_texts: n_texts })
}

/// The language model's configuration read from a text checkpoint, its vocabulary grown to
/// the tokenizer's (which now has the vision tokens).
fn text_model_config(dir: &Path, tokenizer: &Tokenizer) -> Result<DecoderConfig> {
    let config = DecoderConfig::from_file(&dir.join("config.json"))?;
    if config.architecture != Architecture::Qwen2 {
        return Err(TrainError::Invalid(format!(
            "--text-model {}: a Qwen2.5-VL language model is Qwen2's, this is {}",
            dir.display(),
            config.architecture.hf_name()
        )));
    }
    Ok(DecoderConfig { vocab_size: config.vocab_size.max(tokenizer.vocab_size()), ..config })
}

/// Replaces the random language-model tensors by the text checkpoint's (same keys: Qwen2 and
/// Qwen2.5-VL save their language model alike). The embedding (and untied head) rows past the
/// text vocabulary — the vision tokens — keep their random values.
fn take_text_weights(tensors: &mut [(String, Vec<usize>, Vec<f32>)], dir: &Path) -> Result<()> {
    let file = ladder_model::TensorFile::open_model_dir(dir)?;
    let mut taken = 0;
    for (key, shape, data) in tensors.iter_mut() {
        if key.starts_with("visual.") {
            continue;
        }
        let text = file.get(key, None)?;
        let fits = text.shape == *shape || (text.shape.len() == 2 && text.shape[1] == shape[1] && text.shape[0] <= shape[0]);
        if !fits {
            return Err(TrainError::Invalid(format!("--text-model {}: {key} is {:?}, the language model needs {shape:?}", dir.display(), text.shape)));
        }
        data[..text.data.len()].copy_from_slice(&text.data);
        taken += 1;
    }
    tracing::info!(tensors = taken, from = %dir.display(), "language model taken from the text checkpoint");
    Ok(())
}

/// Qwen2.5-VL's `mrope_section` for a head: of the `head_dim / 2` rotary frequencies a quarter
/// follow time and the rest split between height and width, Qwen2.5-VL's [16, 24, 24] of 64.
fn mrope_section(head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let t = half / 4;
    let h = (half - t) / 2;
    vec![t, h, half - t - h]
}

/// The Qwen2.5-VL configuration: `text` as the language model (with multimodal RoPE), the
/// vision tower of `shape` projecting into its width, and the vision token ids the tokenizer
/// gave.
fn vlm_config(text: DecoderConfig, shape: &VisionShape, tokenizer: &Tokenizer) -> Result<VlmConfig> {
    let id = |token: &str| {
        tokenizer.token_id(token).ok_or_else(|| TrainError::Invalid(format!("the tokenizer has no {token} token after adding the vision tokens")))
    };
    let text = DecoderConfig { mrope_section: Some(mrope_section(text.head_dim)), ..text };
    let vision = VisionConfig {
        depth: shape.depth,
        hidden_size: shape.hidden_size,
        intermediate_size: shape.intermediate_size,
        num_heads: shape.num_heads,
        in_channels: 3,
        patch_size: shape.patch_size,
        temporal_patch_size: TEMPORAL_PATCH,
        spatial_merge_size: MERGE,
        window_size: shape.window_size,
        out_hidden_size: text.hidden_size,
        fullatt_block_indexes: vec![shape.depth - 1],
        rope_theta: 10_000.0,
    };
    Ok(VlmConfig {
        image_token_id: id(IMAGE_PAD)?,
        video_token_id: id("<|video_pad|>")?,
        vision_start_token_id: id("<|vision_start|>")?,
        vision_end_token_id: id("<|vision_end|>")?,
        text,
        vision,
    })
}

/// `preprocessor_config.json` as transformers 5.23 saves a `Qwen2VLImageProcessor` with these
/// sizes (the pixel bounds under `size`), checked by reading it back as ladder will.
fn write_preprocessor(dir: &Path, shape: &VisionShape) -> Result<()> {
    let defaults = ImageConfig::default();
    let json = serde_json::json!({
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": defaults.image_mean,
        "image_processor_type": "Qwen2VLImageProcessor",
        "image_std": defaults.image_std,
        "merge_size": MERGE,
        "patch_size": shape.patch_size,
        "processor_class": "Qwen2_5_VLProcessor",
        "resample": 3,
        "rescale_factor": defaults.rescale_factor,
        "size": {"longest_edge": shape.max_pixels, "shortest_edge": shape.min_pixels},
        "temporal_patch_size": TEMPORAL_PATCH,
    });
    let path = dir.join("preprocessor_config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")).map_err(io(&path))?;
    let read = ImageConfig::from_dir(dir)?;
    debug_assert_eq!((read.min_pixels, read.max_pixels, read.patch_size), (shape.min_pixels, shape.max_pixels, shape.patch_size));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrope_sections_follow_qwen_and_cover_the_head() {
        assert_eq!(mrope_section(128), [16, 24, 24]);
        assert_eq!(mrope_section(32), [4, 6, 6]);
        for d in (8..=256).step_by(2) {
            assert_eq!(mrope_section(d).iter().sum::<usize>(), d / 2, "head_dim {d}");
        }
    }
}
