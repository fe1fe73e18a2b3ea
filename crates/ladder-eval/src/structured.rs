//! Structured OCR output: a JSON object with the fields `header`, `margin`, `footer` and `text`
//! (the DharmaOCR benchmark's schema). Ground truth for the text score is the reference's
//! `text` field normalised to plain text.

use serde_json::Value;

use ladder_data::degeneration::is_py_space;

/// The fields every structured page carries.
pub const FIELDS: [&str; 4] = ["header", "margin", "footer", "text"];

/// A page that parsed as structured output.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The `text` field, normalised with [`plain_text`].
    pub text: String,
    /// Whether all of [`FIELDS`] are present and `text` is a string (extra keys are allowed).
    pub complete: bool,
}

/// Parses `s` strictly as a JSON object (no Markdown code fences, no trailing text: a model that
/// wraps its JSON has not produced the format it was trained on). Returns `None` when `s` is
/// not an object or has no string `text` field.
pub fn parse_page(s: &str) -> Option<Page> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(s) else {
        return None;
    };
    let text = obj.get("text")?.as_str()?;
    let complete = FIELDS.iter().all(|k| obj.contains_key(*k));
    Some(Page { text: plain_text(text), complete })
}

/// `json_valid`: `s` parses as an object holding every one of [`FIELDS`], with `text` a string.
pub fn json_valid(s: &str) -> bool {
    parse_page(s).is_some_and(|p| p.complete)
}

/// Plain-text normalisation of a `text` field: JSON escapes are already decoded by parsing; this
/// unifies line endings (`\r\n`, `\r` → `\n`), drops whitespace at the end of each line and
/// around the whole text. Inner spacing, case, punctuation and Unicode forms are kept: they are
/// part of what a transcription gets right or wrong.
pub fn plain_text(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = unified.split('\n').map(|l| l.trim_end_matches(is_py_space)).collect();
    lines.join("\n").trim_matches(is_py_space).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_pages() {
        let s = r#"{"header": "OFÍCIO", "margin": null, "footer": "", "text": "Linha 1  \r\nLinha 2\n\n"}"#;
        let page = parse_page(s).unwrap();
        assert_eq!(page.text, "Linha 1\nLinha 2");
        assert!(page.complete && json_valid(s));
    }

    #[test]
    fn partial_and_invalid_pages() {
        let s = r#"{"text": "só o texto"}"#;
        assert_eq!(parse_page(s).map(|p| p.complete), Some(false));
        assert!(!json_valid(s));
        assert!(parse_page(r#"{"header": "h", "margin": "", "footer": "", "text": 3}"#).is_none());
        assert!(parse_page("```json\n{\"text\": \"x\"}\n```").is_none(), "fences are not stripped");
        assert!(parse_page("[\"text\"]").is_none());
        assert!(parse_page("{\"text\": \"x\"").is_none(), "truncated JSON, as a cut-off loop leaves it");
        assert!(parse_page("plain text").is_none());
    }
}
