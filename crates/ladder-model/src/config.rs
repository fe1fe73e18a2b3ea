//! `config.json` → [`DecoderConfig`]: mirrors transformers' `LlamaConfig`, `Qwen2Config` and
//! `MistralConfig`, which differ only in defaults and in a few flags resolved here.
//!
//! Two layers, as in candle: [`HfConfig`] is what Hugging Face writes (every value optional),
//! [`DecoderConfig`] is what the model runs. All defaults are applied in one place,
//! [`DecoderConfig::from_hf`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The architectures `ladder` runs; they share one decoder ([`crate::decoder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    Llama,
    Qwen2,
    Mistral,
}

impl Architecture {
    /// The `architectures` value transformers writes for this model class.
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
        }
    }

    fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Architecture::Llama),
            "Qwen2ForCausalLM" => Some(Architecture::Qwen2),
            "MistralForCausalLM" => Some(Architecture::Mistral),
            _ => None,
        }
    }
}

/// `eos_token_id` is an integer or a list of integers in the wild.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    Single(u32),
    Multiple(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::Single(id) => vec![*id],
            TokenIds::Multiple(ids) => ids.clone(),
        }
    }
}

/// `config.json` as transformers writes it (v4 and v5 spellings); unknown keys are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HfConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers v5 folds `rope_theta` and `rope_scaling` into one object.
    pub rope_parameters: Option<serde_json::Value>,
    pub max_position_embeddings: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub hidden_act: Option<String>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
}

/// RoPE frequency scaling (`rope_scaling` / `rope_parameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// Position interpolation: positions divided by `factor`.
    Linear { factor: f64 },
}

/// The resolved configuration the decoder runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2 always, Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama `attention_bias` only).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Mistral's sliding-window attention span, when set.
    pub sliding_window: Option<usize>,
    /// Qwen2-VL's multimodal RoPE: how many of the `head_dim / 2` frequencies take their
    /// position from the temporal, height and width rows (in that order, cycling). `None` for
    /// text-only models; with 1-D positions the three rows are equal and mrope is plain RoPE.
    #[serde(default)]
    pub mrope_section: Option<Vec<usize>>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl DecoderConfig {
    /// Reads and resolves `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let hf: HfConfig = crate::error::read_json(path)?;
        Self::from_hf(&hf, path)
    }

    /// Applies every default and checks every required key; `path` is named in errors.
    pub fn from_hf(hf: &HfConfig, path: &Path) -> Result<Self> {
        let missing = |key: &str| ModelError::MissingKey {
            path: path.to_path_buf(),
            key: key.to_string(),
        };
        let bad = |key: &str, message: String| ModelError::BadValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let names = hf.architectures.as_ref().ok_or_else(|| missing("architectures"))?;
        let name = names.first().ok_or_else(|| bad("architectures", "empty list".into()))?;
        let architecture = Architecture::from_hf_name(name).ok_or_else(|| {
            ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: name.clone(),
            }
        })?;
        let vocab_size = hf.vocab_size.ok_or_else(|| missing("vocab_size"))?;
        let hidden_size = hf.hidden_size.ok_or_else(|| missing("hidden_size"))?;
        let intermediate_size = hf.intermediate_size.ok_or_else(|| missing("intermediate_size"))?;
        let num_layers = hf.num_hidden_layers.ok_or_else(|| missing("num_hidden_layers"))?;
        let num_heads = hf.num_attention_heads.ok_or_else(|| missing("num_attention_heads"))?;
        let num_kv_heads = hf.num_key_value_heads.unwrap_or(num_heads);
        if num_heads == 0 {
            return Err(bad("num_attention_heads", "must be at least 1".into()));
        }
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!("{num_kv_heads} must divide num_attention_heads ({num_heads})"),
            ));
        }
        if hf.head_dim.is_none() && !hidden_size.is_multiple_of(num_heads) {
            return Err(bad(
                "hidden_size",
                format!("{hidden_size} is not divisible by num_attention_heads ({num_heads}), and no head_dim is given"),
            ));
        }
        let head_dim = hf.head_dim.unwrap_or(hidden_size / num_heads);
        if !head_dim.is_multiple_of(2) {
            return Err(bad("head_dim", format!("{head_dim} must be even for RoPE")));
        }
        if let Some(act) = &hf.hidden_act {
            if act != "silu" {
                return Err(bad("hidden_act", format!("{act:?} is not supported (only \"silu\")")));
            }
        }
        let (rope_theta, rope_scaling) = resolve_rope(hf, path)?;
        // θ ≤ 0 makes every rotary frequency NaN or infinite: the model would output NaN.
        if !(rope_theta > 0.0 && rope_theta.is_finite()) {
            return Err(bad("rope_theta", format!("{rope_theta} must be a positive number")));
        }
        if hf.max_position_embeddings == Some(0) {
            return Err(bad("max_position_embeddings", "must be at least 1".into()));
        }
        let eos_token_ids = hf.eos_token_id.as_ref().map(TokenIds::to_vec).unwrap_or_default();
        if let Some(id) = eos_token_ids.iter().find(|&&id| id as usize >= vocab_size) {
            tracing::warn!(
                config = %path.display(),
                "eos_token_id {id} is outside the vocabulary (vocab_size {vocab_size}): the model can never produce it, so generation stops only at the length limit or another EOS"
            );
        }
        let mrope_section = resolve_mrope(hf, head_dim, path)?;
        let attention_bias = hf.attention_bias.unwrap_or(false);
        let sliding_window = match architecture {
            Architecture::Mistral => hf.sliding_window,
            Architecture::Qwen2 if hf.use_sliding_window == Some(true) => hf.sliding_window,
            _ => None,
        };
        Ok(DecoderConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            mlp_bias: hf.mlp_bias.unwrap_or(false),
            sliding_window,
            mrope_section,
            bos_token_id: hf.bos_token_id.as_ref().and_then(|b| b.to_vec().first().copied()),
            eos_token_ids,
        })
    }

    /// A config built in code (random models for `ladder init`, benchmark shapes, tests): the
    /// given sizes and, for everything else, the defaults [`DecoderConfig::from_hf`] applies to
    /// a `config.json` that gives only these sizes. Adjust other fields with struct update.
    pub fn new(
        architecture: Architecture,
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_layers: usize,
        num_heads: usize,
        num_kv_heads: usize,
    ) -> Self {
        DecoderConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim: hidden_size / num_heads,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            qkv_bias: architecture == Architecture::Qwen2,
            o_bias: false,
            mlp_bias: false,
            sliding_window: None,
            mrope_section: None,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }

    /// `config.json` as transformers writes it for this architecture, so that a model made by
    /// `ladder init` loads in `AutoModelForCausalLM.from_pretrained`.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let model_type = match self.architecture {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Mistral => "mistral",
        };
        let rope_scaling = match &self.rope_scaling {
            None => serde_json::Value::Null,
            Some(RopeScaling::Linear { factor }) => serde_json::json!({"rope_type": "linear", "factor": factor}),
            Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings }) => {
                serde_json::json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        let mut config = serde_json::json!({
            "architectures": [self.architecture.hf_name()],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        match self.architecture {
            Architecture::Qwen2 => {
                config["use_sliding_window"] = serde_json::json!(self.sliding_window.is_some());
                config["sliding_window"] = serde_json::json!(self.sliding_window);
            }
            Architecture::Mistral => config["sliding_window"] = serde_json::json!(self.sliding_window),
            Architecture::Llama => {
                config["attention_bias"] = serde_json::json!(self.qkv_bias);
                config["mlp_bias"] = serde_json::json!(self.mlp_bias);
            }
        }
        config
    }

    /// Number of query heads sharing one key/value head (grouped-query attention).
    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

/// Reads `rope_theta` and the scaling from either the v4 keys or v5's `rope_parameters`.
fn resolve_rope(hf: &HfConfig, path: &Path) -> Result<(f64, Option<RopeScaling>)> {
    let params = hf.rope_parameters.as_ref();
    let theta = hf
        .rope_theta
        .or_else(|| params.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()))
        .unwrap_or(10_000.0);
    let scaling = hf.rope_scaling.as_ref().filter(|v| !v.is_null()).or(params);
    let Some(scaling) = scaling else {
        return Ok((theta, None));
    };
    let key = if hf.rope_scaling.is_some() {
        "rope_scaling"
    } else {
        "rope_parameters"
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |field: &str| -> Result<f64> {
        scaling.get(field).and_then(|v| v.as_f64()).ok_or_else(|| ModelError::MissingKey {
            path: path.to_path_buf(),
            key: format!("{key}.{field}"),
        })
    };
    let scaling = match kind {
        // Qwen2-VL's v4 configs say `"type": "mrope"`; its sections are read by resolve_mrope.
        "default" | "mrope" => None,
        "llama3" => Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        other => {
            return Err(ModelError::BadValue {
                path: path.to_path_buf(),
                key: format!("{key}.rope_type"),
                message: format!("{other:?} is not supported (default, linear, llama3)"),
            })
        }
    };
    Ok((theta, scaling))
}

/// `mrope_section` from `rope_parameters` (v5) or `rope_scaling` (v4), checked to cover the
/// `head_dim / 2` rotary frequencies.
fn resolve_mrope(hf: &HfConfig, head_dim: usize, path: &Path) -> Result<Option<Vec<usize>>> {
    let found = [("rope_parameters", &hf.rope_parameters), ("rope_scaling", &hf.rope_scaling)]
        .into_iter()
        .find_map(|(key, v)| v.as_ref().and_then(|v| v.get("mrope_section")).map(|s| (key, s)));
    let Some((key, section)) = found else {
        return Ok(None);
    };
    let bad = |message: String| ModelError::BadValue {
        path: path.to_path_buf(),
        key: format!("{key}.mrope_section"),
        message,
    };
    let section: Vec<usize> = serde_json::from_value(section.clone())
        .map_err(|e| bad(format!("expected a list of integers: {e}")))?;
    if section.iter().sum::<usize>() != head_dim / 2 {
        return Err(bad(format!("{section:?} must sum to head_dim / 2 = {}", head_dim / 2)));
    }
    Ok(Some(section))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DecoderConfig> {
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        DecoderConfig::from_hf(&hf, Path::new("config.json"))
    }

    const QWEN: &str = r#"{"architectures":["Qwen2ForCausalLM"],"vocab_size":10,"hidden_size":8,
        "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
        "rope_theta":1000000.0,"tie_word_embeddings":true,"eos_token_id":[3,4]}"#;

    #[test]
    fn qwen2_has_qkv_bias_and_tied_embeddings() {
        let c = parse(QWEN).unwrap();
        assert!(c.qkv_bias && !c.o_bias && c.tie_word_embeddings);
        assert_eq!((c.head_dim, c.kv_groups(), c.rope_theta), (4, 2, 1e6));
        assert_eq!(c.eos_token_ids, vec![3, 4]);
    }

    #[test]
    fn llama3_scaling_is_read_from_v4_and_v5_keys() {
        let v4 = QWEN.replace("Qwen2", "Llama").replace(
            "\"rope_theta\":1000000.0",
            r#""rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}"#,
        );
        let v5 = QWEN.replace("Qwen2", "Llama").replace(
            "\"rope_theta\":1000000.0",
            r#""rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}"#,
        );
        let (a, b) = (parse(&v4).unwrap(), parse(&v5).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert!(matches!(a.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0));
        assert!(!a.qkv_bias);
    }

    #[test]
    fn new_applies_the_same_defaults_as_config_json() {
        let json = r#"{"architectures":["Qwen2ForCausalLM"],"vocab_size":10,"hidden_size":8,
            "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1}"#;
        let from_json = parse(json).unwrap();
        assert_eq!(DecoderConfig::new(Architecture::Qwen2, 10, 8, 16, 1, 2, 1), from_json);
    }

    #[test]
    fn hf_json_reads_back_as_the_same_config() {
        for json in [QWEN.to_string(), QWEN.replace("Qwen2", "Llama").replace(
            "\"rope_theta\":1000000.0",
            r#""rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}"#,
        )] {
            let c = parse(&json).unwrap();
            let back: HfConfig = serde_json::from_value(c.to_hf_json()).unwrap();
            let mut again = DecoderConfig::from_hf(&back, Path::new("config.json")).unwrap();
            again.max_position_embeddings = c.max_position_embeddings;
            assert_eq!(again, c);
        }
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse(&QWEN.replace("\"hidden_size\":8,", "")).unwrap_err();
        assert_eq!(err.to_string(), "config.json: missing required key `hidden_size`");
        let err = parse(&QWEN.replace("Qwen2ForCausalLM", "GPT2LMHeadModel")).unwrap_err();
        assert!(err.to_string().contains("unsupported architecture \"GPT2LMHeadModel\""));
        let err = parse(&QWEN.replace("\"num_key_value_heads\":1", "\"num_key_value_heads\":3"))
            .unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"));
    }
}
