//! Image placeholders in text: what Qwen2-VL's chat template writes for an image, where a
//! row's images go, and their expansion to one token per merged patch. A leaf module (text
//! and messages only), so that rows and the image tokenisation can both use it.

use crate::chat_template::Message;
use crate::error::{DataError, Result};

/// The placeholder the processor expands, one per image.
pub const IMAGE_PAD: &str = "<|image_pad|>";
/// An image in a rendered prompt.
pub const IMAGE_BLOCK: &str = "<|vision_start|><|image_pad|><|vision_end|>";

/// Number of image placeholders in `text`.
pub fn count_placeholders(text: &str) -> usize {
    text.matches(IMAGE_PAD).count()
}

/// Checks that `found` placeholders can take `images` images: exactly one each, or none (then
/// they are placed at the start of the user turn). The message is for a row error.
pub fn check_placement(found: usize, images: usize) -> std::result::Result<(), String> {
    match (found, images) {
        (0, _) => Ok(()),
        (f, 0) => Err(format!("the prompt has {f} image placeholder(s) ({IMAGE_PAD}) but the row has no \"image\"/\"images\"")),
        (f, n) if f == n => Ok(()),
        (f, n) if f > n => Err(format!("the prompt has {f} image placeholders but the row has only {n} image(s)")),
        (f, n) => Err(format!(
            "the row has {n} images but its prompt places only {f}; put one {IMAGE_BLOCK} (or {{\"type\": \"image\"}} part) per image, or none to have them all at the start of the user turn"
        )),
    }
}

/// Conversation with one [`IMAGE_BLOCK`] per image at the start of the first user message,
/// unless it already places them.
pub fn place_in_messages(messages: &[Message], images: usize) -> std::result::Result<Vec<Message>, String> {
    let found: usize = messages.iter().map(|m| count_placeholders(&m.content)).sum();
    check_placement(found, images)?;
    let mut out = messages.to_vec();
    if found == 0 && images > 0 {
        let user = out.iter_mut().find(|m| m.role == "user").ok_or("the row has images but no user message to put them in")?;
        user.content = IMAGE_BLOCK.repeat(images) + &user.content;
    }
    Ok(out)
}

/// Replaces the k-th `<|image_pad|>` by `tokens[k]` of them. `text` may hold fewer
/// placeholders than `tokens` (a prefix of a conversation), never more.
pub fn expand_placeholders(text: &str, tokens: &[usize]) -> Result<String> {
    let mut out = String::with_capacity(text.len() + tokens.iter().sum::<usize>() * IMAGE_PAD.len());
    let mut pieces = text.split(IMAGE_PAD);
    out.push_str(pieces.next().unwrap_or_default());
    for (k, piece) in pieces.enumerate() {
        let n = tokens.get(k).ok_or_else(|| DataError::Invalid(format!("the text has more {IMAGE_PAD} placeholders than the {} image(s) given", tokens.len())))?;
        for _ in 0..*n {
            out.push_str(IMAGE_PAD);
        }
        out.push_str(piece);
    }
    Ok(out)
}

