//! Prompts with images, tokenised as transformers' `Qwen2_5_VLProcessor` does: each image
//! appears in the text as `<|vision_start|><|image_pad|><|vision_end|>` (what Qwen2-VL's chat
//! template writes for an `{"type": "image"}` part), and the processor expands the single
//! `<|image_pad|>` to one token per merged patch of that image before tokenising.
//!
//! Rows that name images without placing them get one block per image at the start of the
//! first user turn (the text of a plain prompt), as TRL's `prepare_multimodal_messages` and
//! Qwen2.5-VL's template put an image part that precedes the text.

use crate::error::{DataError, Result};
use crate::image::{preprocess, ImageConfig, Preprocessed};
use crate::placeholders::{expand_placeholders, place_in_messages, IMAGE_PAD};
use crate::rows::{place_images, Located, Prompt, Row};
use crate::sft::{self, SftOptions, Tokenized};
use crate::tokenizer::Tokenizer;

/// The `<|image_pad|>` id; a tokenizer without it belongs to no Qwen2-VL model.
fn pad_id(tok: &Tokenizer) -> Result<u32> {
    tok.token_id(IMAGE_PAD)
        .ok_or_else(|| DataError::Invalid(format!("the tokenizer has no {IMAGE_PAD} token, so it cannot take images (is this a Qwen2-VL / Qwen2.5-VL model?)")))
}

/// Checks that each placeholder became one token, as the model's image features need.
fn check_pad_count(ids: &[u32], pad: u32, tokens: &[usize]) -> Result<()> {
    let (found, want) = (ids.iter().filter(|t| **t == pad).count(), tokens.iter().sum::<usize>());
    if found != want {
        return Err(DataError::Invalid(format!("the prompt encodes to {found} {IMAGE_PAD} tokens where its images need {want}")));
    }
    Ok(())
}

/// Prompt ids with images: `tokens[k]` is the token count of image k ([`Preprocessed::num_tokens`]).
pub fn prompt_ids_with_images(tok: &Tokenizer, prompt: &Prompt, tokens: &[usize]) -> Result<Vec<u32>> {
    Ok(split_with_images(tok, prompt, &[], tokens)?.0)
}

/// [`sft::split_rendered`] for a prompt with images: placed ([`place_images`]) and each
/// `<|image_pad|>` expanded to its image's token count before encoding.
fn split_with_images(tok: &Tokenizer, prompt: &Prompt, completions: &[&str], tokens: &[usize]) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let placed = place_images(prompt, tokens.len()).map_err(DataError::Invalid)?;
    let (ids, tails) = sft::split_rendered(tok, &placed, completions, &|text| expand_placeholders(&text, tokens))?;
    check_pad_count(&ids, pad_id(tok)?, tokens)?;
    Ok((ids, tails))
}

/// [`sft::preference_ids`] for a prompt with images.
pub fn preference_ids_with_images(tok: &Tokenizer, prompt: &Prompt, chosen: &str, rejected: &str, tokens: &[usize]) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    let (ids, mut tails) = split_with_images(tok, prompt, &[chosen, rejected], tokens)?;
    let rejected_ids = tails.pop().expect("two completions");
    Ok((ids, tails.pop().expect("two completions"), rejected_ids))
}

/// [`sft::tokenize_sft`] for a row with images, `tokens[k]` being image k's token count.
pub fn tokenize_sft_with_images(tok: &Tokenizer, row: &Row, tokens: &[usize], opts: &SftOptions) -> Result<Tokenized> {
    let pad = pad_id(tok)?;
    if row.images().len() != tokens.len() {
        return Err(DataError::Invalid(format!("the row has {} image(s) but {} token counts were given", row.images().len(), tokens.len())));
    }
    let placed = match row {
        Row::Completion { prompt, completion, images } => {
            Row::Completion { prompt: place_images(prompt, tokens.len()).map_err(DataError::Invalid)?, completion: completion.clone(), images: images.clone() }
        }
        Row::Messages { messages, images } => {
            Row::Messages { messages: place_in_messages(messages, tokens.len()).map_err(DataError::Invalid)?, images: images.clone() }
        }
        other => other.clone(),
    };
    let out = sft::tokenize_rendered(tok, &placed, &|text| expand_placeholders(&text, tokens), opts)?;
    if !out.truncated {
        check_pad_count(&out.example.input_ids, pad, tokens)?;
    }
    Ok(out)
}

/// Decodes and preprocesses a row's images; errors name the row's `file:line` and the image.
pub fn load_images(row: &Located<Row>, cfg: &ImageConfig) -> Result<Vec<Preprocessed>> {
    row.value
        .images()
        .iter()
        .enumerate()
        .map(|(k, source)| {
            let at = |message: String| DataError::Row {
                path: row.origin.file.clone(),
                line: row.origin.line,
                message: format!("image {} ({}): {message}", k + 1, source.describe()),
            };
            let img = source.load().map_err(at)?;
            let out = preprocess(&img, cfg).map_err(at)?;
            tracing::debug!("{}:{}: image {} {:?} {:?} -> {:?}", row.origin.file.display(), row.origin.line, k + 1, out.fit, out.original, out.resized);
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::Message;
    use crate::placeholders::IMAGE_BLOCK;

    #[test]
    fn images_go_first_in_the_user_turn_unless_placed() {
        let p = place_images(&Prompt::Text("Read this.".into()), 2).unwrap();
        assert_eq!(p, Prompt::Text(format!("{IMAGE_BLOCK}{IMAGE_BLOCK}Read this.")));
        let msgs = vec![Message::new("system", "s"), Message::new("user", "Read.")];
        let Prompt::Messages(m) = place_images(&Prompt::Messages(msgs), 1).unwrap() else { panic!() };
        assert_eq!(m[1].content, format!("{IMAGE_BLOCK}Read."));
        let placed = Prompt::Text(format!("A {IMAGE_BLOCK} B"));
        assert_eq!(place_images(&placed, 1).unwrap(), placed);
    }

    #[test]
    fn placement_mismatches_are_errors() {
        let two = Prompt::Text(format!("{IMAGE_BLOCK}{IMAGE_BLOCK}"));
        assert!(place_images(&two, 1).unwrap_err().contains("2 image placeholders but the row has only 1"));
        assert!(place_images(&two, 0).unwrap_err().contains("no \"image\""));
        assert!(place_images(&Prompt::Text(IMAGE_BLOCK.into()), 3).unwrap_err().contains("places only 1"));
        let no_user = Prompt::Messages(vec![Message::new("system", "s")]);
        assert!(place_images(&no_user, 1).unwrap_err().contains("no user message"));
    }

    #[test]
    fn expansion_follows_image_order() {
        let text = format!("a{IMAGE_PAD}b{IMAGE_PAD}c");
        assert_eq!(expand_placeholders(&text, &[1, 3]).unwrap(), format!("a{IMAGE_PAD}b{}c", IMAGE_PAD.repeat(3)));
        assert_eq!(expand_placeholders(&format!("x{IMAGE_PAD}"), &[2, 5]).unwrap(), format!("x{}", IMAGE_PAD.repeat(2)));
        assert!(expand_placeholders(&text, &[1]).is_err());
    }
}
