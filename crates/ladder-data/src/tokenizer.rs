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

/// Token ids, and each token's byte range `(start, end)` in the encoded text.
pub type IdsWithOffsets = (Vec<u32>, Vec<(usize, usize)>);

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
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> Result<IdsWithOffsets> {
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

/// The special tokens and chat template of a tokenizer made by [`train_bpe`]: ChatML, as
/// Qwen2 uses it, so conversational rows work out of the box.
pub const CHATML_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Qwen2.5's chat template without the tool-calling parts.
pub const CHATML_TEMPLATE: &str = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if not (message.role == 'system' and loop.first) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

/// Trains a byte-level BPE tokenizer (GPT-2/Qwen2 style: any UTF-8 text encodes, nothing is
/// unknown) on `texts` and writes `tokenizer.json` and `tokenizer_config.json` into `dir`, with
/// [`CHATML_SPECIALS`] (EOS `<|im_end|>`, pad `<|endoftext|>`, no BOS) and [`CHATML_TEMPLATE`].
/// Deterministic for the same texts and size.
pub fn train_bpe(texts: &[String], vocab_size: usize, dir: &Path) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};
    let err = |message: String| DataError::Tokenizer { path: dir.join("tokenizer.json"), message };
    let specials: Vec<AddedToken> = CHATML_SPECIALS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::default()))
        .with_post_processor(Some(ByteLevel::new(false, false, true)))
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .build()
        .map_err(|e| err(e.to_string()))?;
    tok.train(&mut trainer, texts.iter()).map_err(|e| err(format!("training failed: {e}")))?;
    let tok: tokenizers::Tokenizer = tok.into();
    std::fs::create_dir_all(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
    let path = dir.join("tokenizer.json");
    tok.save(&path, false).map_err(|e| err(format!("cannot save: {e}")))?;
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
        "model_max_length": 32768,
    });
    let config_path = dir.join("tokenizer_config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("json"))
        .map_err(|source| DataError::Io { path: config_path, source })?;
    Tokenizer::from_dir(dir)
}

/// Qwen2-VL's image and video tokens, appended after the text vocabulary as Qwen's tokenizers
/// have them (after `<|im_end|>`), in Qwen's order.
pub const VISION_SPECIALS: [&str; 4] = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"];

/// Qwen2-VL's chat template (without tools): [`CHATML_TEMPLATE`] for string contents, and for a
/// list of parts one `<|vision_start|><|image_pad|><|vision_end|>` per `{"type": "image"}`
/// part, so transformers' processor places images where the row puts them.
pub const QWEN2_VL_TEMPLATE: &str = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Makes the tokenizer folder `dir` one a Qwen2.5-VL model can use: appends the
/// [`VISION_SPECIALS`] it lacks (as special tokens, never split or normalised) and, unless its
/// chat template already writes `<|vision_start|>`, sets [`QWEN2_VL_TEMPLATE`] (in
/// `chat_template.jinja` when the folder keeps its template there).
pub fn add_vision_tokens(dir: &Path) -> Result<Tokenizer> {
    use tokenizers::AddedToken;
    let path = dir.join("tokenizer.json");
    let err = |message: String| DataError::Tokenizer { path: path.clone(), message };
    let mut inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| err(format!("cannot load tokenizer: {e}")))?;
    let missing: Vec<AddedToken> = VISION_SPECIALS
        .iter()
        .filter(|t| inner.token_to_id(t).is_none())
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    if !missing.is_empty() {
        inner.add_special_tokens(&missing);
        inner.save(&path, false).map_err(|e| err(format!("cannot save: {e}")))?;
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    let jinja = dir.join("chat_template.jinja");
    let config_path = dir.join("tokenizer_config.json");
    let mut config: Value = match std::fs::read_to_string(&config_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| DataError::Tokenizer { path: config_path.clone(), message: format!("malformed JSON: {e}") })?,
        Err(_) => serde_json::json!({}),
    };
    if config.get("chat_template").is_none() && jinja.exists() {
        let template = std::fs::read_to_string(&jinja).map_err(io(&jinja))?;
        if !template.contains("<|vision_start|>") {
            std::fs::write(&jinja, QWEN2_VL_TEMPLATE).map_err(io(&jinja))?;
        }
    } else if !config.get("chat_template").and_then(Value::as_str).is_some_and(|t| t.contains("<|vision_start|>")) {
        config["chat_template"] = Value::String(QWEN2_VL_TEMPLATE.into());
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("json")).map_err(io(&config_path))?;
    }
    Tokenizer::from_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_bpe_round_trips_any_text_and_has_chatml() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = (0..50).map(|i| format!("Certidão nº {i}: the quick brown fox, procuração {i}.")).collect();
        let tok = train_bpe(&texts, 400, dir.path()).unwrap();
        assert!(tok.vocab_size() <= 400 && tok.vocab_size() > 256 + 3);
        let text = "Olá, 日本 — never seen before!";
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(tok.eos_id(), tok.token_id("<|im_end|>"));
        let rendered = tok.apply_chat_template(&[crate::Message::new("user", "oi")], true).unwrap();
        assert!(rendered.ends_with("<|im_start|>assistant\n"));
        // Deterministic: the same texts give the same file.
        let again = tempfile::tempdir().unwrap();
        train_bpe(&texts, 400, again.path()).unwrap();
        let read = |d: &Path| std::fs::read(d.join("tokenizer.json")).unwrap();
        assert_eq!(read(dir.path()), read(again.path()));
    }

    #[test]
    fn vision_tokens_are_appended_once_and_the_template_places_images() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = (0..50).map(|i| format!("Página {i} de um documento.")).collect();
        let text = train_bpe(&texts, 400, dir.path()).unwrap();
        let n = text.vocab_size();
        let tok = add_vision_tokens(dir.path()).unwrap();
        let ids: Vec<u32> = VISION_SPECIALS.iter().map(|t| tok.token_id(t).unwrap()).collect();
        assert_eq!(ids, (n as u32..n as u32 + 4).collect::<Vec<_>>());
        // Never split: a block of three is three ids.
        assert_eq!(tok.encode(crate::IMAGE_BLOCK, false).unwrap(), [ids[0], ids[2], ids[1]]);
        let rendered = tok.apply_chat_template(&[crate::Message::new("user", "oi")], true).unwrap();
        assert_eq!(rendered, text.apply_chat_template(&[crate::Message::new("user", "oi")], true).unwrap());
        // Idempotent.
        assert_eq!(add_vision_tokens(dir.path()).unwrap().vocab_size(), n + 4);
    }
}
