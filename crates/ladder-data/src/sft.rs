//! Tokenisation for supervised fine-tuning, DPO and `ladder logprobs`, as TRL 1.16's
//! `SFTTrainer` and `DPOTrainer` tokenize rows (pinned by `tests/fixtures/expected/trl_chat.json`,
//! made by TRL's own code: `scripts/make_trl_fixtures.py`).
//!
//! - A text prompt is encoded with special tokens, the completion without, then EOS is
//!   appended.
//! - A conversational prompt is rendered with the generation prompt, prompt + completion (one
//!   assistant turn) is rendered whole, both are encoded without special tokens (the template
//!   writes any BOS), and the completion is every token after their common prefix: the
//!   assistant's text, its end-of-turn token and whatever the template writes after it
//!   (ChatML's `"\n"`). No EOS is appended; the template ends the turn. Where the prompt alone
//!   is not a prefix of prompt + completion (a template that renders the generation prompt
//!   differently, as Qwen3's empty think block, or tokens merging across the boundary), the
//!   prompt is cut to the common prefix, and for a preference pair to the shorter of the two.
//! - In a `{"messages"}` conversation each assistant turn i is a target, delimited the same
//!   way: from where the ids of `render(messages[..i], add_generation_prompt)` and the
//!   conversation's part, to the end of `render(messages[..=i])` (tokens starting before it),
//!   so its end-of-turn token and the newline after it are targets. This needs no
//!   `{% generation %}` markers in the template, only a template that renders a conversation's
//!   prefix as a prefix of the whole, which the check below enforces. (TRL trains every token
//!   of a `messages` row unless `assistant_only_loss`, which needs those markers; ladder's
//!   targets are the turns TRL would train were each one the completion of a
//!   prompt-completion row.)

use std::sync::Arc;

use crate::chat_template::Message;
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
/// the generation prompt and encoded without (the template writes any BOS itself). This is what
/// a model is given to generate from; a prompt paired with a completion may be cut shorter
/// ([`completion_ids`]).
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

/// Completion ids of a text prompt as TRL encodes them: without special tokens, then EOS.
pub fn completion_tail(tok: &Tokenizer, completion: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(completion, false)?;
    ids.push(eos(tok)?);
    Ok(ids)
}

/// Number of leading ids `a` and `b` share (TRL's `common_prefix_length`).
fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The prompt's ids and each completion's, as TRL 1.16 splits them (see the module doc): for a
/// text prompt, [`prompt_ids`] and [`completion_tail`]; for a conversation, prompt + completion
/// rendered whole and cut after the prefix all of them share with the prompt. With no
/// completions, the prompt's ids whole.
pub(crate) fn split_rendered(tok: &Tokenizer, prompt: &Prompt, completions: &[&str], expand: Expand) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let mut prompt_ids = prompt_ids_rendered(tok, prompt, expand)?;
    let Prompt::Messages(messages) = prompt else {
        let tails = completions.iter().map(|c| completion_tail(tok, c)).collect::<Result<_>>()?;
        return Ok((prompt_ids, tails));
    };
    let mut whole = Vec::with_capacity(completions.len());
    for completion in completions {
        let mut conversation = messages.clone();
        conversation.push(Message::new("assistant", completion));
        whole.push(tok.encode(&expand(tok.apply_chat_template(&conversation, false)?)?, false)?);
    }
    let n = whole.iter().map(|ids| common_prefix_len(&prompt_ids, ids)).min().unwrap_or(prompt_ids.len());
    prompt_ids.truncate(n);
    Ok((prompt_ids, whole.into_iter().map(|ids| ids[n..].to_vec()).collect()))
}

/// Prompt ids and completion ids of one `{"prompt","completion"}` row, as TRL 1.16 tokenizes
/// them: a text completion ends with EOS, a conversational one with what the chat template
/// writes to end the assistant turn (module doc).
pub fn completion_ids(tok: &Tokenizer, prompt: &Prompt, completion: &str) -> Result<(Vec<u32>, Vec<u32>)> {
    let (prompt_ids, mut tails) = split_rendered(tok, prompt, &[completion], &|text| Ok(text))?;
    Ok((prompt_ids, tails.remove(0)))
}

/// Prompt, chosen and rejected ids of a preference row, as TRL 1.16's `DPOTrainer` tokenizes
/// them: [`completion_ids`] for each side, the prompt shared (for a conversation, cut to the
/// shorter common prefix).
pub fn preference_ids(tok: &Tokenizer, prompt: &Prompt, chosen: &str, rejected: &str) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    let (prompt_ids, mut tails) = split_rendered(tok, prompt, &[chosen, rejected], &|text| Ok(text))?;
    let rejected_ids = tails.pop().expect("two completions");
    Ok((prompt_ids, tails.pop().expect("two completions"), rejected_ids))
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
            let (p, mut c) = split_rendered(tok, prompt, &[completion], expand)?;
            let c = c.remove(0);
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
            let mut targets = vec![false; ids.len()];
            for (i, m) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
                let turn = expand(tok.apply_chat_template(&messages[..=i], false)?)?;
                if !text.starts_with(&turn) {
                    return Err(DataError::Template(format!(
                        "the chat template is not prefix-stable at message {i} ({}), so assistant tokens cannot be located",
                        m.role
                    )));
                }
                // The turn as TRL cuts a completion: from where the generation prompt's ids and
                // the conversation's part, to the end of the turn as rendered.
                let prompt = tok.encode(&expand(tok.apply_chat_template(&messages[..i], true)?)?, false)?;
                let start = common_prefix_len(&prompt, &ids);
                let within = offsets[start..].iter().take_while(|(byte, _)| *byte < turn.len()).count();
                targets[start..start + within].iter_mut().for_each(|t| *t = true);
            }
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
