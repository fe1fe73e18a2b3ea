//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors` with
//! keys `base_model.model.<module>.lora_A.weight` `[r, in]` and `...lora_B.weight` `[out, r]`,
//! as `peft.PeftModel.save_pretrained` writes and vLLM, TGI and mistral.rs read.
//!
//! Initialisation follows PEFT's default: A Kaiming-uniform (a = √5, i.e. U(±1/√in)), B zero,
//! scale α/r, or α/√r with rsLoRA.

use std::path::Path;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::linear::{Linear, Lora};
use crate::weights::{host, transpose, write_safetensors, StorageDtype, TensorFile};

/// The projections `all-linear` expands to (PEFT excludes the output head).
pub const ALL_LINEAR: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// What an adapter is: rank, scaling, targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraSettings {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (`q_proj`, ...), matched against the last path component.
    pub targets: Vec<String>,
    pub rslora: bool,
}

impl LoraSettings {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Parses `q_proj,v_proj` or `all-linear`, rejecting names no layer has.
    pub fn parse_targets(spec: &str) -> std::result::Result<Vec<String>, String> {
        if spec.trim() == "all-linear" {
            return Ok(ALL_LINEAR.iter().map(|s| s.to_string()).collect());
        }
        let targets: Vec<String> = spec.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        for t in &targets {
            if !ALL_LINEAR.contains(&t.as_str()) {
                return Err(format!(
                    "unknown LoRA target {t:?}; expected a comma-separated list of {} or all-linear",
                    ALL_LINEAR.join(", ")
                ));
            }
        }
        if targets.is_empty() {
            return Err("no LoRA targets given".into());
        }
        Ok(targets)
    }
}

/// `adapter_config.json` as PEFT writes it (fields PEFT ≥ 0.10 reads back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdapterConfig {
    #[serde(default)]
    pub alpha_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub auto_mapping: Option<serde_json::Value>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub inference_mode: bool,
    #[serde(default = "default_true")]
    pub init_lora_weights: serde_json::Value,
    #[serde(default)]
    pub layers_pattern: Option<serde_json::Value>,
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
    /// Written as an integer when whole, as PEFT writes `lora_alpha = 16`.
    #[serde(serialize_with = "whole_as_integer")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub modules_to_save: Option<serde_json::Value>,
    pub peft_type: String,
    pub r: usize,
    #[serde(default)]
    pub rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub revision: Option<String>,
    pub target_modules: serde_json::Value,
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub use_rslora: bool,
}

fn whole_as_integer<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

fn default_bias() -> String {
    "none".into()
}
fn default_true() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

impl AdapterConfig {
    pub fn new(settings: &LoraSettings, base_model: &str) -> Self {
        AdapterConfig {
            alpha_pattern: Default::default(),
            auto_mapping: None,
            base_model_name_or_path: Some(base_model.to_string()),
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
            init_lora_weights: serde_json::Value::Bool(true),
            layers_pattern: None,
            layers_to_transform: None,
            lora_alpha: settings.alpha,
            lora_dropout: settings.dropout,
            modules_to_save: None,
            peft_type: "LORA".into(),
            r: settings.r,
            rank_pattern: Default::default(),
            revision: None,
            target_modules: serde_json::json!(settings.targets),
            task_type: Some("CAUSAL_LM".into()),
            use_dora: false,
            use_rslora: settings.rslora,
        }
    }

    /// Refuses the PEFT features `ladder` does not implement (everything but the targets).
    pub fn check_supported(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, message: &str| ModelError::BadValue {
            path: path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        };
        if self.peft_type != "LORA" {
            return Err(bad("peft_type", "only LORA adapters are supported"));
        }
        if self.use_dora {
            return Err(bad("use_dora", "DoRA adapters are not supported"));
        }
        if self.bias != "none" {
            return Err(bad("bias", "only \"none\" is supported"));
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_null()) {
            return Err(bad("modules_to_save", "fully trained extra modules are not supported"));
        }
        if !self.rank_pattern.is_empty() || !self.alpha_pattern.is_empty() {
            return Err(bad("rank_pattern", "per-module ranks are not supported"));
        }
        if self.layers_to_transform.as_ref().is_some_and(|m| !m.is_null()) {
            return Err(bad("layers_to_transform", "layer subsets are not supported"));
        }
        Ok(())
    }

    /// The settings, refusing PEFT features `ladder` does not implement rather than
    /// silently loading a different adapter.
    pub fn settings(&self, path: &Path) -> Result<LoraSettings> {
        self.check_supported(path)?;
        let bad = |key: &str, message: &str| ModelError::BadValue {
            path: path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        };
        let targets = match &self.target_modules {
            serde_json::Value::String(s) if s == "all-linear" => ALL_LINEAR.iter().map(|s| s.to_string()).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("target_modules", "expected a list of module names"))?,
            _ => return Err(bad("target_modules", "expected a list of module names or \"all-linear\"")),
        };
        if let Some(t) = targets.iter().find(|t| !ALL_LINEAR.contains(&t.as_str())) {
            return Err(bad("target_modules", &format!("unsupported target {t:?}")));
        }
        if self.r == 0 {
            return Err(bad("r", "the LoRA rank must be at least 1"));
        }
        Ok(LoraSettings {
            r: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets,
            rslora: self.use_rslora,
        })
    }
}

/// Every linear layer of the decoder with its module path (`model.layers.0.self_attn.q_proj`).
pub fn linears_mut(model: &mut Decoder) -> Vec<(String, &mut Linear)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let a = &mut layer.self_attn;
        for (name, l) in [("q_proj", &mut a.q_proj), ("k_proj", &mut a.k_proj), ("v_proj", &mut a.v_proj), ("o_proj", &mut a.o_proj)] {
            out.push((format!("model.layers.{i}.self_attn.{name}"), l));
        }
        let m = &mut layer.mlp;
        for (name, l) in [("gate_proj", &mut m.gate_proj), ("up_proj", &mut m.up_proj), ("down_proj", &mut m.down_proj)] {
            out.push((format!("model.layers.{i}.mlp.{name}"), l));
        }
    }
    out
}

/// Read-only twin of [`linears_mut`].
pub fn linears(model: &Decoder) -> Vec<(String, &Linear)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let a = &layer.self_attn;
        for (name, l) in [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)] {
            out.push((format!("model.layers.{i}.self_attn.{name}"), l));
        }
        let m = &layer.mlp;
        for (name, l) in [("gate_proj", &m.gate_proj), ("up_proj", &m.up_proj), ("down_proj", &m.down_proj)] {
            out.push((format!("model.layers.{i}.mlp.{name}"), l));
        }
    }
    out
}

pub(crate) fn is_target(path: &str, settings: &LoraSettings) -> bool {
    let name = path.rsplit('.').next().unwrap_or(path);
    settings.targets.iter().any(|t| t == name)
}

/// Attaches fresh adapters (PEFT's init) to the targeted layers, seeded.
pub fn attach_new(model: &mut Decoder, settings: &LoraSettings, seed: u64, device: &Device) {
    let targets = linears_mut(model).into_iter().filter(|(path, _)| is_target(path, settings)).map(|(_, l)| l);
    attach_to(targets, settings, seed, device);
}

/// Attaches fresh adapters (PEFT's init: A Kaiming-uniform, B zero) to each of `linears` in
/// order, from one seeded stream.
pub fn attach_to<'a>(linears: impl IntoIterator<Item = &'a mut Linear>, settings: &LoraSettings, seed: u64, device: &Device) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for linear in linears {
        let (d_in, d_out, r) = (linear.d_in(), linear.d_out(), settings.r);
        let bound = 1.0 / (d_in as f64).sqrt();
        let a: Vec<f32> = (0..d_in * r).map(|_| rng.random_range(-bound..bound) as f32).collect();
        linear.lora = Some(Lora {
            a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [d_in, r]), device)),
            b: Param::from_tensor(Tensor::zeros([r, d_out], device)),
            scale: settings.scale(),
            dropout: settings.dropout,
        });
    }
}

/// PEFT's prefix on every adapter key (`PeftModel.base_model.model`).
pub const PREFIX: &str = "base_model.model.";

/// An adapter folder's `adapter_config.json`.
pub fn read_config(dir: &Path) -> Result<AdapterConfig> {
    if !dir.is_dir() {
        return Err(ModelError::MissingAdapter { path: dir.to_path_buf() });
    }
    crate::error::read_json(&dir.join("adapter_config.json"))
}

/// Loads a PEFT adapter folder onto `model`, checking every shape against the model.
pub fn load_adapter(model: &mut Decoder, dir: &Path, device: &Device) -> Result<LoraSettings> {
    if !dir.is_dir() {
        return Err(ModelError::MissingAdapter { path: dir.to_path_buf() });
    }
    let settings = read_config(dir)?.settings(&dir.join("adapter_config.json"))?;
    let file = TensorFile::open(&dir.join("adapter_model.safetensors"))?;
    let mismatch = |message: String| ModelError::AdapterMismatch { path: dir.to_path_buf(), message };
    let mut used = 0;
    for (path, linear) in linears_mut(model) {
        if !is_target(&path, &settings) {
            continue;
        }
        attach_from_file(&file, &path, &path, linear, &settings, device, dir)?;
        used += 2;
    }
    let total = file.keys().count();
    if used != total {
        let known: std::collections::HashSet<String> = linears(model)
            .iter()
            .flat_map(|(p, _)| [format!("{PREFIX}{p}.lora_A.weight"), format!("{PREFIX}{p}.lora_B.weight")])
            .collect();
        let mut extra: Vec<&str> = file.keys().filter(|k| !known.contains(*k)).collect();
        extra.sort();
        return Err(mismatch(format!(
            "{} tensors do not match any targeted layer of this model (first: {:?})",
            total - used,
            extra.first().copied().unwrap_or("a target outside target_modules")
        )));
    }
    Ok(settings)
}

/// Loads the adapter of layer `path` from `file`, whose keys name it `module` (an older
/// transformers may have written another prefix), onto `linear`, checking both shapes. Shared
/// by the text model and Qwen2.5-VL.
pub fn attach_from_file(file: &TensorFile, module: &str, path: &str, linear: &mut Linear, settings: &LoraSettings, device: &Device, dir: &Path) -> Result<()> {
    let (d_in, d_out, r) = (linear.d_in(), linear.d_out(), settings.r);
    let key_a = format!("{PREFIX}{module}.lora_A.weight");
    let a = file.get(&key_a, None)?;
    let b = file.get(&format!("{PREFIX}{module}.lora_B.weight"), None)?;
    // The right layer shapes at another rank: `r` in adapter_config.json is what is wrong.
    if a.shape.len() == 2 && b.shape.len() == 2 && a.shape[1] == d_in && b.shape[0] == d_out && a.shape[0] == b.shape[1] && a.shape[0] != r {
        return Err(ModelError::BadValue {
            path: dir.join("adapter_config.json"),
            key: "r".into(),
            message: format!("{r}, but the adapter's tensors have rank {} ({key_a} is {:?})", a.shape[0], a.shape),
        });
    }
    if a.shape != [r, d_in] || b.shape != [d_out, r] {
        return Err(ModelError::AdapterMismatch {
            path: dir.to_path_buf(),
            message: format!(
                "{path}: lora_A {:?} / lora_B {:?}, but this model needs [{r}, {d_in}] / [{d_out}, {r}] (an adapter for another base model, or an `r` that disagrees with its tensors?)",
                a.shape, b.shape
            ),
        });
    }
    linear.lora = Some(Lora {
        a: Param::from_tensor(Tensor::from_data(TensorData::new(transpose(&a.data, r, d_in), [d_in, r]), device)),
        b: Param::from_tensor(Tensor::from_data(TensorData::new(transpose(&b.data, d_out, r), [r, d_out]), device)),
        scale: settings.scale(),
        dropout: settings.dropout,
    });
    Ok(())
}

/// Writes a PEFT adapter folder: the adapters among `linears` (module path, layer) in PEFT's
/// layout (`lora_A` `[r, in]`, `lora_B` `[out, r]`), and `config`. Shared by the text model
/// and Qwen2.5-VL, which differ only in their layers and `target_modules`.
pub fn write_adapter<'a>(linears: impl IntoIterator<Item = (String, &'a Linear)>, config: &AdapterConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    let mut tensors = Vec::new();
    for (path, linear) in linears {
        if let Some(lora) = &linear.lora {
            let (d_in, d_out, r) = (linear.d_in(), linear.d_out(), lora.a.shape().dims::<2>()[1]);
            let (a, b): (Vec<f32>, Vec<f32>) = (host(lora.a.val()), host(lora.b.val()));
            tensors.push((format!("{PREFIX}{path}.lora_A.weight"), vec![r, d_in], transpose(&a, d_in, r)));
            tensors.push((format!("{PREFIX}{path}.lora_B.weight"), vec![d_out, r], transpose(&b, r, d_out)));
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors, StorageDtype::F32)?;
    let json = serde_json::to_vec_pretty(config).expect("serialisable");
    crate::io::write_atomic(&dir.join("adapter_config.json"), &json)
}

/// Writes the adapters attached to `model` as a PEFT folder.
pub fn save_adapter(model: &Decoder, settings: &LoraSettings, base_model: &str, dir: &Path) -> Result<()> {
    write_adapter(linears(model), &AdapterConfig::new(settings, base_model), dir)
}

/// Folds every adapter into its base weight (`W + s·A·B`) and removes it.
pub fn merge(model: &mut Decoder) {
    for (_, linear) in linears_mut(model) {
        merge_linear(linear);
    }
}

/// Folds one layer's adapter, if it has one, into its weight and removes it.
pub fn merge_linear(linear: &mut Linear) {
    if let Some(lora) = linear.lora.take() {
        let delta = lora.a.val().matmul(lora.b.val()) * lora.scale;
        linear.weight = Param::from_tensor(linear.weight.val() + delta);
    }
}

/// Removes every adapter (the model becomes its base again).
pub fn detach(model: &mut Decoder) {
    for (_, linear) in linears_mut(model) {
        linear.lora = None;
    }
}

/// Whether any layer carries an adapter.
pub fn has_adapters(model: &Decoder) -> bool {
    linears(model).iter().any(|(_, l)| l.lora.is_some())
}
