//! `Qwen2_5_VLForConditionalGeneration` (transformers' `modeling_qwen2_5_vl.py`): the vision
//! tower of [`crate::vision`] feeding the shared text [`Decoder`], whose image-pad tokens take
//! the merged image features, with Qwen2-VL's multimodal RoPE.
//!
//! The language model *is* a Qwen2 [`Decoder`] (q/k/v bias, optional tied head) with
//! `mrope_section` set, so text-only training, the KV cache and shared-prefix attention work
//! unchanged; this file adds only the config mapping, the image-token scatter, the 3-row
//! positions (`get_rope_index`), checkpoint keys and PEFT adapter keys.
//!
//! Checkpoint keys are those `save_pretrained` writes (transformers 5.23 converts back to the
//! v4 layout): `model.layers.*`, `model.embed_tokens.weight`, `model.norm.weight`, `visual.*`,
//! `lm_head.weight`. The in-memory layout (`model.language_model.*`, `model.visual.*`) is
//! accepted too. PEFT adapter keys follow the module tree:
//! `base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight`.
//!
//! Over 600 lines for the same reason as `decoder.rs`: one model, read top to bottom, with its
//! tests (positions against transformers' `get_rope_index`, gradients through the tower).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::config::{DecoderConfig, HfConfig};
use crate::decoder::{Decoder, KvCache, Tokens, PAD_SEGMENT};
use crate::error::{ModelError, Result};
use crate::linear::{ForwardMode, Linear};
use crate::peft::{self, AdapterConfig, LoraSettings, PREFIX};
use crate::vision::{HfVisionConfig, VisionConfig, VisionTransformer};
use crate::weights::{StorageDtype, TensorFile};

/// The `architectures` value of the checkpoints this file loads.
pub const HF_NAME: &str = "Qwen2_5_VLForConditionalGeneration";

/// Linear names PEFT may target in the vision blocks.
pub const VISION_LINEAR: [&str; 5] = ["qkv", "proj", "gate_proj", "up_proj", "down_proj"];

/// The resolved configuration: the text decoder's, the vision tower's and the special tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct VlmConfig {
    pub text: DecoderConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

/// The top level of a Qwen2.5-VL `config.json` (the text keys are read separately).
#[derive(Deserialize)]
struct HfVlmConfig {
    architectures: Option<Vec<String>>,
    vision_config: Option<HfVisionConfig>,
    image_token_id: Option<u32>,
    video_token_id: Option<u32>,
    vision_start_token_id: Option<u32>,
    vision_end_token_id: Option<u32>,
    tie_word_embeddings: Option<bool>,
}

impl VlmConfig {
    /// Reads and resolves `config.json`: v5 nests the text model under `text_config`, v4 writes
    /// its keys at the top level (with `rope_scaling.mrope_section`); both are read, the nested
    /// keys winning.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json: serde_json::Value = crate::error::read_json(path)?;
        let parse_err = |source| ModelError::Json { path: path.to_path_buf(), source };
        let top: HfVlmConfig = serde_json::from_value(json.clone()).map_err(parse_err)?;
        let name = top.architectures.as_ref().and_then(|a| a.first()).cloned().unwrap_or_default();
        if name != HF_NAME {
            return Err(ModelError::UnsupportedArchitecture { path: path.to_path_buf(), found: name });
        }
        let mut text = json.as_object().cloned().unwrap_or_default();
        text.remove("vision_config");
        if let Some(serde_json::Value::Object(nested)) = text.remove("text_config") {
            text.extend(nested);
        }
        let mut text: HfConfig = serde_json::from_value(serde_json::Value::Object(text)).map_err(parse_err)?;
        // The language model is Qwen2's decoder (q/k/v bias, no o bias).
        text.architectures = Some(vec!["Qwen2ForCausalLM".into()]);
        // transformers ties when either level asks for it.
        text.tie_word_embeddings = Some(top.tie_word_embeddings.unwrap_or(false) || text.tie_word_embeddings.unwrap_or(false));
        let text = DecoderConfig::from_hf(&text, path)?;
        if text.mrope_section.is_none() {
            return Err(ModelError::MissingKey { path: path.to_path_buf(), key: "text_config.rope_parameters.mrope_section".into() });
        }
        let vision = VisionConfig::from_hf(&top.vision_config.unwrap_or_default(), path)?;
        if vision.out_hidden_size != text.hidden_size {
            return Err(ModelError::BadValue {
                path: path.to_path_buf(),
                key: "vision_config.out_hidden_size".into(),
                message: format!("{} differs from the text hidden_size {}", vision.out_hidden_size, text.hidden_size),
            });
        }
        Ok(VlmConfig {
            text,
            vision,
            image_token_id: top.image_token_id.unwrap_or(151655),
            video_token_id: top.video_token_id.unwrap_or(151656),
            vision_start_token_id: top.vision_start_token_id.unwrap_or(151652),
            vision_end_token_id: top.vision_end_token_id.unwrap_or(151653),
        })
    }
}

impl VlmConfig {
    /// `config.json` as transformers 5.23 saves a `Qwen2_5_VLForConditionalGeneration`: the
    /// language model under `text_config` (with `rope_parameters.mrope_section`), the vision
    /// tower under `vision_config`, the special token ids at the top. Written by `ladder init`;
    /// `scripts/make_vlm_fixtures.py` checks it against a transformers round trip.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let t = &self.text;
        let eos = match t.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        let text_config = serde_json::json!({
            "attention_dropout": 0.0,
            "bos_token_id": t.bos_token_id,
            "eos_token_id": eos,
            "hidden_act": "silu",
            "hidden_size": t.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": t.intermediate_size,
            "layer_types": vec!["full_attention"; t.num_layers],
            "max_position_embeddings": t.max_position_embeddings,
            "max_window_layers": 80,
            "model_type": "qwen2_5_vl_text",
            "num_attention_heads": t.num_heads,
            "num_hidden_layers": t.num_layers,
            "num_key_value_heads": t.num_kv_heads,
            "pad_token_id": null,
            "rms_norm_eps": t.rms_norm_eps,
            "rope_parameters": {"mrope_section": t.mrope_section, "rope_theta": t.rope_theta, "rope_type": "default"},
            "sliding_window": null,
            "tie_word_embeddings": t.tie_word_embeddings,
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": t.vocab_size,
        });
        serde_json::json!({
            "architectures": [HF_NAME],
            "dtype": "float32",
            "image_token_id": self.image_token_id,
            "model_type": "qwen2_5_vl",
            "text_config": text_config,
            "tie_word_embeddings": t.tie_word_embeddings,
            "video_token_id": self.video_token_id,
            "vision_config": self.vision.to_hf_json(),
            "vision_end_token_id": self.vision_end_token_id,
            "vision_start_token_id": self.vision_start_token_id,
        })
    }
}

/// Images for one forward: the processor's `pixel_values` and `image_grid_thw`.
#[derive(Clone, Debug)]
pub struct Images<'a> {
    /// `[patches, C*T*P*P]`, all images' patches in order.
    pub pixel_values: Tensor<2>,
    /// `(t, h, w)` in patches per image, in the order the image tokens appear in the batch
    /// (row by row).
    pub grids: &'a [[usize; 3]],
}

impl<'a> Images<'a> {
    /// Images from host memory: `pixel_values` row-major `[patches, patch_dim]` as the
    /// processor (or `ladder-data`) lays them out.
    pub fn from_host(pixel_values: Vec<f32>, patch_dim: usize, grids: &'a [[usize; 3]], device: &Device) -> Result<Self> {
        if patch_dim == 0 || !pixel_values.len().is_multiple_of(patch_dim) {
            return Err(ModelError::ImageInput(format!(
                "{} pixel values do not split into rows of {patch_dim}",
                pixel_values.len()
            )));
        }
        let rows = pixel_values.len() / patch_dim;
        let pixel_values = Tensor::from_data(TensorData::new(pixel_values, [rows, patch_dim]), device);
        Ok(Images { pixel_values, grids })
    }
}

/// `Qwen2_5_VLForConditionalGeneration`: vision tower + text decoder.
#[derive(burn::module::Module, Debug)]
pub struct VisionLanguageModel {
    pub visual: VisionTransformer,
    /// The language model with its head (`model.language_model` + `lm_head` in HF).
    pub language_model: Decoder,
    #[module(skip)]
    pub image_token_id: u32,
}

/// A loaded model folder.
pub struct LoadedVlm {
    pub model: VisionLanguageModel,
    pub config: VlmConfig,
    pub dtype: StorageDtype,
}

/// Loads a Qwen2.5-VL model folder (`config.json` + safetensors).
pub fn load_vlm(dir: &Path, device: &Device) -> Result<LoadedVlm> {
    if !dir.is_dir() {
        return Err(ModelError::MissingFolder { path: dir.to_path_buf() });
    }
    let config = VlmConfig::from_file(&dir.join("config.json"))?;
    let file = TensorFile::open_model_dir(dir)?;
    // Keys as saved (`model.layers.*`, `visual.*`), else the module tree's.
    let resolve = |key: &str| -> String {
        if file.contains(key) {
            return key.to_string();
        }
        let alt = if let Some(rest) = key.strip_prefix("visual.") {
            format!("model.visual.{rest}")
        } else if let Some(rest) = key.strip_prefix("model.") {
            format!("model.language_model.{rest}")
        } else {
            return key.to_string();
        };
        if file.contains(&alt) { alt } else { key.to_string() }
    };
    let dtype = file.get(&resolve("model.embed_tokens.weight"), None)?.dtype;
    let mut fetch = |key: &str, shape: &[usize]| Ok(file.get(&resolve(key), Some(shape))?.data);
    let language_model = crate::weights::build(&config.text, device, &mut fetch)?;
    let visual = VisionTransformer::build(&config.vision, device, &mut fetch)?;
    let model = VisionLanguageModel { visual, language_model, image_token_id: config.image_token_id };
    Ok(LoadedVlm { model, config, dtype })
}

/// A randomly initialised model, as [`crate::random_decoder`]: linear weights N(0, `std`),
/// biases 0, norm weights 1. Seeded and deterministic.
pub fn random_vlm(config: &VlmConfig, std: f64, seed: u64, device: &Device) -> VisionLanguageModel {
    build_random(config, std, seed, device, &mut |_, _, _| {})
}

/// The tensors of [`random_vlm`] (same seed, same numbers) under the keys and in the layout
/// `save_pretrained` writes (`model.layers.*`, `visual.*`, `[out, in]` linears, the patch
/// embedding as its `Conv3d` kernel): what `ladder init` saves. They are recorded as the
/// loader asks for them, so the file holds exactly the keys [`load_vlm`] reads.
pub fn random_vlm_tensors(config: &VlmConfig, std: f64, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    build_random(config, std, seed, &Device::flex(), &mut |key, shape, data| out.push((key.to_string(), shape.to_vec(), data.to_vec())));
    out
}

/// Sees each tensor of a model being built: HF key, HF shape, values.
type Record<'a> = dyn FnMut(&str, &[usize], &[f32]) + 'a;

/// Builds a random model, showing each tensor to `record`.
fn build_random(config: &VlmConfig, std: f64, seed: u64, device: &Device, record: &mut Record) -> VisionLanguageModel {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, std as f32).expect("finite std");
    let mut fetch = |key: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let n = shape.iter().product();
        let data = if key.contains("norm") || key.contains("ln_q") {
            vec![1.0; n]
        } else if key.ends_with(".bias") {
            vec![0.0; n]
        } else {
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        record(key, shape, &data);
        Ok(data)
    };
    let language_model = crate::weights::build(&config.text, device, &mut fetch).expect("random weights have the right shapes");
    let visual = VisionTransformer::build(&config.vision, device, &mut fetch).expect("random weights have the right shapes");
    VisionLanguageModel { visual, language_model, image_token_id: config.image_token_id }
}

impl VisionLanguageModel {
    /// Input embeddings: token embeddings with each image token's replaced by the next merged
    /// image feature (transformers' `masked_scatter`, in row-major token order). Padding
    /// tokens never take image features.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn embed(&self, tokens: &Tokens, images: Option<&Images>, mode: ForwardMode) -> Result<Tensor<3>> {
        let text = self.language_model.embed(tokens);
        let slots = image_slots(tokens, self.image_token_id);
        let Some(images) = images else {
            if !slots.is_empty() {
                return Err(ModelError::ImageInput(format!("{} image tokens but no images", slots.len())));
            }
            return Ok(text);
        };
        let features = self.visual.forward(images.pixel_values.clone(), images.grids, mode)?;
        let rows = features.dims()[0];
        if rows != slots.len() {
            return Err(ModelError::ImageInput(format!(
                "the images give {rows} features but the prompt has {} image tokens (id {})",
                slots.len(),
                self.image_token_id
            )));
        }
        let [b, t, h] = text.dims();
        let mut index: Vec<i64> = (0..(b * t) as i64).collect();
        for (k, &slot) in slots.iter().enumerate() {
            index[slot] = (b * t + k) as i64;
        }
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b * t]), &text.device());
        let table = Tensor::cat(vec![text.reshape([b * t, h]), features], 0);
        Ok(table.select(0, index).reshape([b, t, h]))
    }

    /// Multimodal positions `[3, batch, seq]` for `tokens` (see [`mrope_positions`]).
    pub fn mrope_positions(&self, tokens: &Tokens, grids: &[[usize; 3]]) -> Result<Vec<u32>> {
        mrope_positions(tokens, grids, self.image_token_id, self.visual.config.spatial_merge_size)
    }

    /// Final hidden states. `tokens.mrope_positions` default to [`mrope_positions`] of the
    /// batch.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn hidden(&self, tokens: &Tokens, images: Option<&Images>, mode: ForwardMode) -> Result<Tensor<3>> {
        let x = self.embed(tokens, images, mode)?;
        self.positioned(tokens, images, |tokens| self.language_model.hidden_from_embeddings(x, tokens, mode))
    }

    /// Runs `f` on `tokens` with their 3-row positions: the given ones, or [`mrope_positions`]
    /// of the batch and its images.
    fn positioned<R>(&self, tokens: &Tokens, images: Option<&Images>, f: impl FnOnce(&Tokens) -> R) -> Result<R> {
        if tokens.mrope_positions.is_some() {
            return Ok(f(tokens));
        }
        let owned = self.mrope_positions(tokens, images.map_or(&[], |i| i.grids))?;
        Ok(f(&tokens.clone().mrope_positions(&owned)))
    }

    /// Vocabulary logits, as `Qwen2_5_VLForConditionalGeneration.forward(...).logits`.
    ///
    /// # Shapes
    /// - output: `[batch, seq, vocab]`
    pub fn forward(&self, tokens: &Tokens, images: Option<&Images>, mode: ForwardMode) -> Result<Tensor<3>> {
        let hidden = self.hidden(tokens, images, mode)?;
        Ok(self.language_model.logits(hidden, mode))
    }

    /// [`Decoder::hidden_cached`] with images (a prefill): later text tokens fed through
    /// `language_model.hidden_cached` continue from the largest position + 1.
    pub fn hidden_cached(&self, tokens: &Tokens, images: Option<&Images>, cache: &mut KvCache, mode: ForwardMode) -> Result<Tensor<3>> {
        let x = self.embed(tokens, images, mode)?;
        self.positioned(tokens, images, |tokens| self.language_model.hidden_cached_from_embeddings(x, tokens, cache, mode))
    }

    /// Every linear layer with its PEFT module path: the language model's
    /// (`model.language_model.layers.0.self_attn.q_proj`), then the vision blocks'.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out: Vec<(String, &mut Linear)> = peft::linears_mut(&mut self.language_model)
            .into_iter()
            .map(|(p, l)| (language_path(&p), l))
            .collect();
        out.extend(self.visual.linears_mut());
        out
    }
}

/// Folds every adapter (language model and vision blocks) into its base weight, as PEFT's
/// `merge_and_unload`.
pub fn merge(model: &mut VisionLanguageModel) {
    for (_, linear) in model.linears_mut() {
        peft::merge_linear(linear);
    }
}

/// Every base tensor under the keys `save_pretrained` writes (`model.*`, `lm_head.weight`,
/// `visual.*`), HF layout: what [`load_vlm`] reads back.
pub fn hf_tensors(model: &VisionLanguageModel) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = crate::weights::hf_tensors(&model.language_model);
    out.extend(model.visual.hf_tensors());
    out
}

/// `model.layers.…` (the text decoder's path) → `model.language_model.layers.…`.
fn language_path(path: &str) -> String {
    path.replacen("model.", "model.language_model.", 1)
}

/// Flat `batch * seq` indices of the image tokens that take features (padding excluded).
fn image_slots(tokens: &Tokens, image_token_id: u32) -> Vec<usize> {
    (0..tokens.ids.len())
        .filter(|&i| tokens.ids[i] == image_token_id && tokens.segments.is_none_or(|s| s[i] != PAD_SEGMENT))
        .collect()
}

/// transformers' `get_rope_index` for a batch: positions `[3, batch, seq]` (t, h, w rows).
///
/// Text tokens get the same position on all three rows, counting up. Each image (the next
/// `t·h·w / merge²` image tokens, images taken in `grids` order through the batch) starts at
/// the current position `s`: merged token `(ti, i, j)` sits at `(s + ti, s + i, s + j)`, and
/// the text after it continues from `s + max(h, w) / merge`.
///
/// Rows may carry segments: padding ([`PAD_SEGMENT`]) gets position 0 and is skipped (as
/// transformers skips masked tokens); a packed row restarts at 0 with each new segment; with
/// `shared_prefix`, segments after the prompt (segment 0) continue from the prompt's end, so a
/// `prompt | chosen | rejected` row positions both completions as separate rows would.
pub fn mrope_positions(tokens: &Tokens, grids: &[[usize; 3]], image_token_id: u32, merge: usize) -> Result<Vec<u32>> {
    let (b, t) = (tokens.batch, tokens.seq);
    let n = b * t;
    let mut out = vec![0u32; 3 * n];
    let mut images = grids.iter().enumerate();
    for row in 0..b {
        let (mut pos, mut segment, mut prompt_end) = (0u32, None, 0u32);
        let mut i = 0;
        while i < t {
            let at = row * t + i;
            let seg = tokens.segments.map_or(0, |s| s[at]);
            if seg == PAD_SEGMENT {
                i += 1;
                continue;
            }
            if segment != Some(seg) {
                if segment == Some(0) {
                    prompt_end = pos;
                }
                if segment.is_some() {
                    pos = if tokens.shared_prefix && seg != 0 { prompt_end } else { 0 };
                }
                segment = Some(seg);
            }
            if tokens.ids[at] != image_token_id {
                for r in 0..3 {
                    out[r * n + at] = pos;
                }
                pos += 1;
                i += 1;
                continue;
            }
            let Some((k, &[gt, gh, gw])) = images.next() else {
                return Err(ModelError::ImageInput(format!(
                    "row {row} has more image tokens than image_grid_thw describes ({} images)",
                    grids.len()
                )));
            };
            let (mh, mw) = (gh / merge, gw / merge);
            let count = gt * mh * mw;
            let run = (i..t).take_while(|&j| tokens.ids[row * t + j] == image_token_id).count();
            if run < count {
                return Err(ModelError::ImageInput(format!(
                    "image {k} ({gt}x{gh}x{gw} patches) needs {count} image tokens, row {row} has {run} at position {i}"
                )));
            }
            let mut j = at;
            for ti in 0..gt {
                for y in 0..mh {
                    for x in 0..mw {
                        out[j] = pos + ti as u32;
                        out[n + j] = pos + y as u32;
                        out[2 * n + j] = pos + x as u32;
                        j += 1;
                    }
                }
            }
            pos += mh.max(mw) as u32;
            i += count;
        }
    }
    if let Some((k, _)) = images.next() {
        return Err(ModelError::ImageInput(format!(
            "image_grid_thw describes {} images but the batch has image tokens for {k}",
            grids.len()
        )));
    }
    Ok(out)
}

/// Which linears of a [`VisionLanguageModel`] carry LoRA: `settings.targets` name language
/// model projections ([`peft::ALL_LINEAR`]), `vision_targets` vision block linears
/// ([`VISION_LINEAR`]; empty by default: the vision tower stays frozen and unadapted).
#[derive(Clone, Debug, PartialEq)]
pub struct VlmLora {
    pub settings: LoraSettings,
    pub vision_targets: Vec<String>,
}

impl VlmLora {
    fn is_target(&self, path: &str) -> bool {
        let name = path.rsplit('.').next().unwrap_or(path);
        if path.starts_with("model.visual.") {
            self.vision_targets.iter().any(|t| t == name)
        } else {
            self.settings.targets.iter().any(|t| t == name)
        }
    }

    /// PEFT's `target_modules` for exactly these layers, as a regex (PEFT full-matches a string
    /// against module paths). Bare names would not do: the vision MLPs share `gate_proj`,
    /// `up_proj` and `down_proj` with the language model.
    pub fn peft_target_modules(&self) -> String {
        let mut parts = Vec::new();
        if !self.settings.targets.is_empty() {
            parts.push(format!(
                r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.({})",
                self.settings.targets.join("|")
            ));
        }
        if !self.vision_targets.is_empty() {
            parts.push(format!(r"model\.visual\.blocks\.\d+\.(attn|mlp)\.({})", self.vision_targets.join("|")));
        }
        parts.join("|")
    }
}

/// Attaches fresh adapters (PEFT's init, seeded) to the targeted linears.
pub fn attach_new(model: &mut VisionLanguageModel, lora: &VlmLora, seed: u64, device: &Device) {
    let targets = model.linears_mut().into_iter().filter(|(p, _)| lora.is_target(p)).map(|(_, l)| l);
    peft::attach_to(targets, &lora.settings, seed, device);
}

/// Loads a PEFT adapter folder made on `Qwen2_5_VLForConditionalGeneration`. The adapted
/// layers are those the file has tensors for (PEFT writes exactly those), so `target_modules`
/// may be names or a regex; every tensor must fit a layer of this model. Keys from
/// transformers < 4.52 (`base_model.model.model.layers.*`, `...visual.*`) load too.
pub fn load_adapter(model: &mut VisionLanguageModel, dir: &Path, device: &Device) -> Result<VlmLora> {
    if !dir.is_dir() {
        return Err(ModelError::MissingAdapter { path: dir.to_path_buf() });
    }
    let config_path = dir.join("adapter_config.json");
    let config: AdapterConfig = crate::error::read_json(&config_path)?;
    config.check_supported(&config_path)?;
    let settings = LoraSettings {
        r: config.r,
        alpha: config.lora_alpha,
        dropout: config.lora_dropout,
        targets: Vec::new(),
        rslora: config.use_rslora,
    };
    let file = TensorFile::open(&dir.join("adapter_model.safetensors"))?;
    let mismatch = |message: String| ModelError::AdapterMismatch { path: dir.to_path_buf(), message };
    let mut lora = VlmLora { settings, vision_targets: Vec::new() };
    let mut used = 0;
    for (path, linear) in model.linears_mut() {
        let legacy = path.replacen("model.language_model.", "model.", 1).replacen("model.visual.", "visual.", 1);
        let Some(module) = [&path, &legacy].into_iter().find(|p| file.contains(&format!("{PREFIX}{p}.lora_A.weight"))) else {
            continue;
        };
        let module = module.clone();
        peft::attach_from_file(&file, &module, &path, linear, &lora.settings, device, dir)?;
        used += 2;
        let name = path.rsplit('.').next().unwrap_or(&path).to_string();
        let list = if path.starts_with("model.visual.") { &mut lora.vision_targets } else { &mut lora.settings.targets };
        if !list.contains(&name) {
            list.push(name);
        }
    }
    let total = file.keys().count();
    if used != total {
        return Err(mismatch(format!("{} tensors do not match any linear layer of this model", total - used)));
    }
    Ok(lora)
}

/// Writes the adapters attached to `model` as a PEFT folder that `PeftModel.from_pretrained`
/// loads onto `Qwen2_5_VLForConditionalGeneration`.
pub fn save_adapter(model: &mut VisionLanguageModel, lora: &VlmLora, base_model: &str, dir: &Path) -> Result<()> {
    let mut config = AdapterConfig::new(&lora.settings, base_model);
    config.target_modules = serde_json::Value::String(lora.peft_target_modules());
    peft::write_adapter(model.linears_mut().into_iter().map(|(p, l)| (p, &*l)), &config, dir)
}

/// Whether a model folder holds a Qwen2.5-VL model (its `config.json`'s `model_type` or
/// `architectures`). Every command that loads a model asks this first.
pub fn is_vlm(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return false };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    json["model_type"] == "qwen2_5_vl" || json["architectures"].as_array().is_some_and(|a| a.iter().any(|n| n == HF_NAME))
}

/// Resolves a `--model` value to its folder and tells whether it is a vision-language model.
pub fn detect(model: &str) -> Result<(PathBuf, bool)> {
    let dir = crate::ModelSource::parse(model)?.resolve()?;
    let is = is_vlm(&dir);
    Ok((dir, is))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::host;

    /// The two-image fixture case: `get_rope_index` output recorded from transformers.
    #[test]
    fn positions_follow_get_rope_index() {
        // 3 text, image 1x4x4 (2x2 merged), 2 text, image 1x2x6 (1x3 merged), 1 text.
        let img = 9;
        let ids = [1, 2, 3, img, img, img, img, 4, 5, img, img, img, 6];
        let tokens = Tokens::new(&ids, 1, ids.len());
        let p = mrope_positions(&tokens, &[[1, 4, 4], [1, 2, 6]], img, 2).unwrap();
        let n = ids.len();
        assert_eq!(&p[..n], &[0, 1, 2, 3, 3, 3, 3, 5, 6, 7, 7, 7, 10]);
        assert_eq!(&p[n..2 * n], &[0, 1, 2, 3, 3, 4, 4, 5, 6, 7, 7, 7, 10]);
        assert_eq!(&p[2 * n..], &[0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn padding_is_skipped_and_shared_prompts_continue() {
        let img = 9;
        // Left padding, then a 1x2x2 image (one merged token) and text.
        let ids = [0, 0, 1, img, 2];
        let segs = [PAD_SEGMENT, PAD_SEGMENT, 0, 0, 0];
        let tokens = Tokens::new(&ids, 1, 5).segments(&segs);
        let p = mrope_positions(&tokens, &[[1, 2, 2]], img, 2).unwrap();
        assert_eq!(&p[..5], &[0, 0, 0, 1, 2]);
        // prompt | chosen | rejected: both completions continue from the prompt.
        let ids = [1, 2, 3, 4, 5, 6];
        let segs = [0, 0, 1, 1, 2, 2];
        let tokens = Tokens::new(&ids, 1, 6).segments(&segs).shared_prefix();
        let p = mrope_positions(&tokens, &[], img, 2).unwrap();
        assert_eq!(&p[..6], &[0, 1, 2, 3, 2, 3]);
    }

    #[test]
    fn image_token_count_mismatches_are_errors() {
        let img = 9;
        let ids = [1, img, img, 2];
        let tokens = Tokens::new(&ids, 1, 4);
        let err = mrope_positions(&tokens, &[[1, 4, 4]], img, 2).unwrap_err().to_string();
        assert!(err.contains("needs 4 image tokens"), "{err}");
        let err = mrope_positions(&tokens, &[], img, 2).unwrap_err().to_string();
        assert!(err.contains("more image tokens"), "{err}");
        let err = mrope_positions(&Tokens::new(&[1, 2], 1, 2), &[[1, 2, 2]], img, 2).unwrap_err().to_string();
        assert!(err.contains("describes 1 images"), "{err}");
    }

    /// transformers 4.x writes the text keys at the top level with `rope_scaling.type = mrope`;
    /// a top-level `tie_word_embeddings` ties the head.
    #[test]
    fn v4_config_with_top_level_text_keys_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let json = serde_json::json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "vocab_size": 50, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}, "tie_word_embeddings": true,
            "image_token_id": 40,
            "vision_config": {"depth": 1, "hidden_size": 8, "intermediate_size": 8, "num_heads": 2,
                "out_hidden_size": 16, "patch_size": 2, "window_size": 8, "fullatt_block_indexes": [0]}
        });
        std::fs::write(&path, json.to_string()).unwrap();
        let c = VlmConfig::from_file(&path).unwrap();
        assert_eq!(c.text.mrope_section, Some(vec![1, 1, 2]));
        assert!(c.text.tie_word_embeddings && c.text.qkv_bias && !c.text.o_bias);
        assert_eq!((c.text.rope_theta, c.text.rope_scaling.clone()), (1e6, None));
        assert_eq!((c.image_token_id, c.vision.window_tokens()), (40, 2));
        let bad = json.to_string().replace("[1, 1, 2]", "[1, 1, 1]").replace("[1,1,2]", "[1,1,1]");
        std::fs::write(&path, bad).unwrap();
        let err = VlmConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("mrope_section") && err.contains("head_dim / 2 = 4"), "{err}");
    }

    fn tiny() -> VlmConfig {
        let vision: HfVisionConfig = serde_json::from_value(serde_json::json!({
            "depth": 2, "hidden_size": 8, "intermediate_size": 8, "num_heads": 2, "patch_size": 2,
            "window_size": 4, "out_hidden_size": 16, "fullatt_block_indexes": [1]
        }))
        .unwrap();
        VlmConfig {
            text: DecoderConfig {
                mrope_section: Some(vec![1, 1, 2]),
                ..DecoderConfig::new(crate::Architecture::Qwen2, 50, 16, 32, 1, 2, 1)
            },
            vision: VisionConfig::from_hf(&vision, Path::new("config.json")).unwrap(),
            image_token_id: 40,
            video_token_id: 41,
            vision_start_token_id: 42,
            vision_end_token_id: 43,
        }
    }

    /// Training LoRA through an image prompt: the loss reaches the adapters of both the
    /// language model and the vision tower, and the frozen base gets no gradient.
    #[test]
    fn gradients_reach_language_and_vision_adapters() {
        use burn::module::Module;
        let device = Device::flex().autodiff();
        let config = tiny();
        let mut model = random_vlm(&config, 0.2, 1, &device).no_grad();
        let lora = VlmLora {
            settings: LoraSettings { r: 2, alpha: 4.0, dropout: 0.0, targets: vec!["q_proj".into()], rslora: false },
            vision_targets: vec!["qkv".into()],
        };
        attach_new(&mut model, &lora, 0, &device);
        let img = config.image_token_id;
        let ids = [1, 42, img, img, 43, 2, 3];
        let grids = [[1, 4, 2]]; // 8 patches, 2 merged tokens, one window each
        let patch_dim = config.vision.patch_dim();
        let pixels: Vec<f32> = (0..8 * patch_dim).map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5).collect();
        let images = Images::from_host(pixels, patch_dim, &grids, &device).unwrap();
        let logits = model.forward(&Tokens::new(&ids, 1, ids.len()), Some(&images), ForwardMode { adapters: true, train: true }).unwrap();
        let grads = logits.square().mean().backward();
        let mut seen = Vec::new();
        for (path, linear) in model.linears_mut() {
            if let Some(l) = &linear.lora {
                let g = l.b.val().grad(&grads).expect("LoRA B gets a gradient");
                let norm: f32 = host(g.abs().sum())[0];
                assert!(norm > 0.0, "{path}: zero gradient");
                seen.push(path.clone());
            }
            assert!(linear.weight.val().grad(&grads).is_none(), "{path}: the frozen base got a gradient");
        }
        assert_eq!(seen, ["model.language_model.layers.0.self_attn.q_proj", "model.visual.blocks.0.attn.qkv", "model.visual.blocks.1.attn.qkv"]);
    }

    #[test]
    fn peft_pattern_keeps_vision_mlps_apart() {
        let lora = VlmLora {
            settings: LoraSettings { r: 2, alpha: 4.0, dropout: 0.0, targets: vec!["q_proj".into(), "gate_proj".into()], rslora: false },
            vision_targets: vec!["qkv".into()],
        };
        assert_eq!(
            lora.peft_target_modules(),
            r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(q_proj|gate_proj)|model\.visual\.blocks\.\d+\.(attn|mlp)\.(qkv)"
        );
        assert!(lora.is_target("model.language_model.layers.3.mlp.gate_proj"));
        assert!(!lora.is_target("model.visual.blocks.0.mlp.gate_proj"));
        assert!(lora.is_target("model.visual.blocks.0.attn.qkv"));
    }
}
