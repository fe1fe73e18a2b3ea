//! Tokenisation for supervised fine-tuning with TRL's conventions: the prompt is encoded with
//! special tokens, the completion without, then EOS is appended; only completion (or assistant)
//! tokens are loss targets.
//!
//! For conversations the assistant tokens are found by rendering prefixes: the text of
//! assistant turn i runs from the end of `render(messages[..i], add_generation_prompt)` to the
//! end of `render(messages[..=i])` without trailing whitespace, so its end-of-turn token is a
//! target and the newline after it is not. Tokens whose first byte falls in such a span are
//! targets. This needs no `{% generation %}` markers in the template, only a template that
//! renders a conversation's prefix as a prefix of the whole, which the check below enforces.

use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::image::Preprocessed;
use crate::rows::{Prompt, Row};
use crate::tokenizer::Tokenizer;

/// A tokenised example; `targets[t]` marks token t as a loss target (predicted from t − 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    pub targets: Vec<bool>,
    /// The images whose `<|image_pad|>` tokens `input_ids` holds, in order (none for text).
    pub images: Vec<Arc<Preprocessed>>,
}

#[derive(Clone, Debug, Default)]
pub struct SftOptions {
    /// Every token but the first is a target.
    pub train_on_prompt: bool,
    /// Keep only the first `max_seq_len` tokens.
    pub max_seq_len: Option<usize>,
}

pub struct Tokenized {
    pub example: Example,
    pub truncated: bool,
}

fn eos(tok: &Tokenizer) -> Result<u32> {
    tok.eos_id().ok_or_else(|| DataError::Invalid("the tokenizer has no eos_token (tokenizer_config.json), so completions cannot be terminated".into()))
}

/// Prompt ids as TRL encodes them: text with special tokens, a conversation rendered with
/// the generation prompt and encoded without (the template writes any BOS itself).
pub fn prompt_ids(tok: &Tokenizer, prompt: &Prompt) -> Result<Vec<u32>> {
    prompt_ids_rendered(tok, prompt, &|text| Ok(text))
}

/// Rewrites rendered text before it is encoded: the identity for text, the expansion of
/// image placeholders for prompts with images (see `vision.rs`).
pub(crate) type Expand<'a> = &'a dyn Fn(String) -> Result<String>;

fn prompt_ids_rendered(tok: &Tokenizer, prompt: &Prompt, expand: Expand) -> Result<Vec<u32>> {
    match prompt {
        Prompt::Text(text) => tok.encode(&expand(text.clone())?, true),
        Prompt::Messages(messages) => tok.encode(&expand(tok.apply_chat_template(messages, true)?)?, false),
    }
}

/// Completion ids as TRL encodes them: without special tokens, then EOS.
pub fn completion_tail(tok: &Tokenizer, completion: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(completion, false)?;
    ids.push(eos(tok)?);
    Ok(ids)
}

/// Prompt ids ([`prompt_ids`]) and completion ids ending with EOS.
pub fn completion_ids(tok: &Tokenizer, prompt: &Prompt, completion: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    Ok((prompt_ids(tok, prompt)?, completion_tail(tok, completion)?))
}

/// Tokenises one row for SFT. Rows with images need a vision model: see
/// `vision::tokenize_sft_with_images`.
pub fn tokenize_sft(tok: &Tokenizer, row: &Row, opts: &SftOptions) -> Result<Tokenized> {
    if !row.images().is_empty() {
        return Err(DataError::Invalid(format!(
            "this row has {} image(s), which a text-only model cannot see; train a vision-language model on it, or drop \"image\"/\"images\"",
            row.images().len()
        )));
    }
    tokenize_rendered(tok, row, &|text| Ok(text), opts)
}

/// [`tokenize_sft`] with every rendered text passed through `expand` before encoding.
pub(crate) fn tokenize_rendered(tok: &Tokenizer, row: &Row, expand: Expand, opts: &SftOptions) -> Result<Tokenized> {
    let (input_ids, mut targets) = match row {
        Row::Text { text } => {
            let mut ids = tok.encode(text, true)?;
            ids.push(eos(tok)?);
            let targets = vec![true; ids.len()];
            (ids, targets)
        }
        Row::Completion { prompt, completion, .. } => {
            let (p, c) = (prompt_ids_rendered(tok, prompt, expand)?, completion_tail(tok, completion)?);
            let targets = p.iter().map(|_| false).chain(c.iter().map(|_| true)).collect();
            (p.into_iter().chain(c).collect(), targets)
        }
        Row::Messages { messages, .. } => {
            if !opts.train_on_prompt && !messages.iter().any(|m| m.role == "assistant") {
                let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
                return Err(DataError::Invalid(format!(
                    "\"messages\" has no assistant turn (roles: {}), so nothing to train on; add one, or pass --train-on-prompt",
                    roles.join(", ")
                )));
            }
            let text = expand(tok.apply_chat_template(messages, false)?)?;
            let (ids, offsets) = tok.encode_with_offsets(&text, false)?;
            let mut spans = Vec::new();
            for (i, m) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
                let prefix = expand(tok.apply_chat_template(&messages[..i], true)?)?;
                let full = expand(tok.apply_chat_template(&messages[..=i], false)?)?;
                if !full.starts_with(&prefix) || !text.starts_with(full.trim_end()) {
                    return Err(DataError::Template(format!(
                        "the chat template is not prefix-stable at message {i} ({}), so assistant tokens cannot be located",
                        m.role
                    )));
                }
                spans.push(prefix.len()..full.trim_end().len());
            }
            let targets = offsets.iter().map(|(start, _)| spans.iter().any(|s| s.contains(start))).collect();
            (ids, targets)
        }
        Row::Preference { .. } => {
            return Err(DataError::Invalid("this is a preference row {\"prompt\",\"chosen\",\"rejected\"}; use `ladder dpo` for preference data".into()))
        }
    };
    if opts.train_on_prompt {
        targets.iter_mut().for_each(|t| *t = true);
    }
    let mut example = Example { input_ids, targets, images: Vec::new() };
    example.targets[0] = false;
    let truncated = opts.max_seq_len.is_some_and(|n| example.input_ids.len() > n);
    if let Some(n) = opts.max_seq_len.filter(|_| truncated) {
        example.input_ids.truncate(n);
        example.targets.truncate(n);
    }
    Ok(Tokenized { example, truncated })
}
