//! Errors for model loading and saving: each names the file, key or tensor involved.

use std::path::PathBuf;

/// Everything that can go wrong between a checkpoint on disk and a model in memory.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model folder {path} does not exist")]
    MissingFolder { path: PathBuf },
    #[error("{path} is a file; expected a model folder (config.json, model.safetensors, tokenizer.json)")]
    NotAFolder { path: PathBuf },
    #[error("adapter folder {path} {}; expected a PEFT adapter folder (adapter_config.json, adapter_model.safetensors)", if path.is_file() { "is a file" } else { "does not exist" })]
    MissingAdapter { path: PathBuf },
    #[error("{path}: file not found (a Hugging Face model folder needs it)")]
    MissingFile { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: missing required key `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: key `{key}`: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "{path}: unsupported architecture {found:?}; supported: LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM"
    )]
    UnsupportedArchitecture { path: PathBuf, found: String },
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor `{key}` not found in the checkpoint")]
    MissingTensor { path: PathBuf, key: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{key}` has dtype {dtype}, expected F32, BF16 or F16")]
    UnsupportedDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    /// Weights read from a checkpoint that hold NaN or infinity: every output of the model
    /// would be NaN, so it is refused at load instead.
    #[error("{path}: tensor `{key}` holds {count} NaN or infinite values: these weights are broken (a diverged training run?)")]
    NonFiniteTensor { path: PathBuf, key: String, count: usize },
    /// Weights about to be saved that hold NaN or infinity: nothing is written.
    #[error("{path}: not written: tensor `{key}` holds {count} NaN or infinite values")]
    NonFiniteSave { path: PathBuf, key: String, count: usize },
    #[error("{path}: adapter does not fit this model: {message}")]
    AdapterMismatch { path: PathBuf, message: String },
    #[error("{0}")]
    Source(String),
    /// Images that do not fit the prompt or the vision tower (pixel rows, grids, image tokens).
    #[error("image input: {0}")]
    ImageInput(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Reads a file, naming it in the error.
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            ModelError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads and parses a JSON file, naming it in the error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}
