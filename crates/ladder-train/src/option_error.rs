//! The one error an option can have: which key, and what was expected.

use std::fmt;

/// An option that cannot be resolved. `key` is the snake_case name used in recipes and
/// `--config` files; the binary shows it as the flag (`lr` → `--lr`), a recipe at the key's
/// line and column. Option names quoted inside `message` in backticks (`` `lora_r` ``) are
/// rendered the same way, so one message reads right in both places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    pub key: String,
    pub message: String,
}

impl OptionError {
    pub fn new(key: &str, message: impl Into<String>) -> OptionError {
        OptionError { key: key.to_string(), message: message.into() }
    }

    /// `--lr: must be …`, with other options named as flags.
    pub fn as_flags(&self) -> String {
        format!("{}: {}", flag(&self.key), render(&self.message, flag))
    }

    /// `` `lr`: must be … ``, with other options named as keys (recipes, `--config` files).
    pub fn as_keys(&self) -> String {
        format!("`{}`: {}", self.key, render(&self.message, |k| format!("`{k}`")))
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_flags())
    }
}

impl std::error::Error for OptionError {}

/// `lora_r` → `--lora-r`.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Rewrites every `` `name` `` whose name is an option key (lowercase, digits, `_`, a trailing
/// `*` for a family such as `lora_*`) with `name_of`.
fn render(message: &str, name_of: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else { break };
        let name = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..open]);
        let is_key = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '*');
        if is_key {
            out.push_str(&name_of(name));
        } else {
            out.push_str(&rest[open..open + len + 2]);
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_as_flags_or_keys() {
        let e = OptionError::new("full", "trains every weight: drop `lora_r` and the other `lora_*` keys, or run `ladder merge` first");
        assert_eq!(e.as_flags(), "--full: trains every weight: drop --lora-r and the other --lora-* keys, or run `ladder merge` first");
        assert_eq!(e.as_keys(), "`full`: trains every weight: drop `lora_r` and the other `lora_*` keys, or run `ladder merge` first");
    }
}
