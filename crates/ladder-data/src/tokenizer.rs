//! A Hugging Face tokenizer folder, as transformers' `PreTrainedTokenizerFast` reads it:
//! `tokenizer.json` (the `tokenizers` model) plus `tokenizer_config.json` (special tokens,
//! `chat_template`), or a separate `chat_template.jinja` as transformers v5 saves it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat_template::{ChatTemplate, Message};
use crate::error::{DataError, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
    pad: Option<(String, u32)>,
    template: Option<ChatTemplate>,
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(DataError::MissingFile { path });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| DataError::Tokenizer {
            path: path.clone(),
            message: format!("cannot load tokenizer: {e}"),
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(|source| DataError::Io {
                path: config_path.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|e| DataError::Tokenizer {
                path: config_path.clone(),
                message: format!("malformed JSON: {e}"),
            })?
        } else {
            Value::Null
        };
        let special = |key: &str| -> Result<Option<(String, u32)>> {
            let Some(token) = token_string(config.get(key)) else {
                return Ok(None);
            };
            let id = inner.token_to_id(&token).ok_or_else(|| DataError::Tokenizer {
                path: config_path.clone(),
                message: format!("{key} {token:?} is not in tokenizer.json's vocabulary"),
            })?;
            Ok(Some((token, id)))
        };
        let (bos, eos, pad) = (special("bos_token")?, special("eos_token")?, special("pad_token")?);
        let source = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => {
                let jinja = dir.join("chat_template.jinja");
                jinja
                    .exists()
                    .then(|| std::fs::read_to_string(&jinja))
                    .transpose()
                    .map_err(|source| DataError::Io { path: jinja, source })?
            }
        };
        let template = source
            .map(|s| {
                ChatTemplate::new(
                    s,
                    bos.as_ref().map(|b| b.0.clone()),
                    eos.as_ref().map(|e| e.0.clone()),
                )
            })
            .transpose()
            .map_err(|e| DataError::Tokenizer {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        Ok(Tokenizer { inner, path, bos, eos, pad, template })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|t| t.1)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|t| t.1)
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad.as_ref().map(|t| t.1)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encode_with_offsets(text, add_special_tokens)?.0)
    }

    /// Token ids with their byte offsets into `text`.
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| DataError::Tokenizer {
            path: self.path.clone(),
            message: format!("cannot encode text: {e}"),
        })?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| DataError::Tokenizer {
            path: self.path.clone(),
            message: format!("cannot decode: {e}"),
        })
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Renders `messages` with the model's chat template.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.template.as_ref().ok_or_else(|| DataError::Tokenizer {
            path: self.path.with_file_name("tokenizer_config.json"),
            message: "this model has no chat_template, so conversational rows cannot be rendered; use {\"prompt\",\"completion\"} rows".into(),
        })?;
        template.render(messages, add_generation_prompt)
    }
}
