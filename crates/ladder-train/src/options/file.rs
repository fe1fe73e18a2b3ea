//! `--config FILE`: a TOML file of option keys under the command-line flags, and the helpers
//! every TOML reader of ours shares (recipes too): where a key or an error sits, and which
//! valid key an unknown one probably meant.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::OptionError;
use crate::error::{Result, TrainError};

/// The `--config` file an option set came from, to report a bad value at its line.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
    /// Keys whose value the file gave (a flag overrides the file's value).
    pub keys: Vec<String>,
}

impl ConfigFile {
    /// An option error as `FILE:LINE: `key`: …` when the file set that key, else as the flag.
    pub fn locate(config: Option<&ConfigFile>, e: OptionError) -> TrainError {
        match config.filter(|c| c.keys.contains(&e.key)) {
            Some(c) => {
                let line = line_of_key(&c.text, &e.key).map(|l| format!(":{l}")).unwrap_or_default();
                TrainError::Invalid(format!("{}{line}: {}", c.path.display(), e.as_keys()))
            }
            None => TrainError::Option(e),
        }
    }
}

/// Reads `--config` (if any) and overlays the command-line flags on it. `elsewhere` lists the
/// keys of other commands, so a key of theirs is named as such rather than "unknown".
pub fn merge_config<A: Serialize + DeserializeOwned + Default>(
    cli: A,
    config: Option<&Path>,
    elsewhere: &[(&str, Vec<String>)],
) -> Result<(A, Option<ConfigFile>)> {
    let Some(path) = config else {
        return Ok((cli, None));
    };
    let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
    let at = |why: String| TrainError::Invalid(format!("{}:{why}", path.display()));
    let table: toml::Table = toml::from_str(&text).map_err(|e| at(explain_toml(&e, &text)))?;
    let valid = valid_keys::<A>();
    for key in table.keys() {
        if !valid.contains(key) {
            let line = line_of_key(&text, key).map(|l| format!("{l}:")).unwrap_or_default();
            return Err(at(format!("{line} {}", unknown_key(key, &valid, elsewhere))));
        }
    }
    let file: A = toml::from_str(&text).map_err(|e| at(wrong_key::<A>(&table, &text).unwrap_or_else(|| explain_toml(&e, &text))))?;
    let mut merged = serde_json::to_value(&file).expect("serialisable");
    let flags = serde_json::to_value(&cli).expect("serialisable");
    let mut keys: Vec<String> = table.keys().cloned().collect();
    for (key, value) in flags.as_object().expect("struct").iter() {
        if !value.is_null() {
            merged[key] = value.clone();
            keys.retain(|k| k != key);
        }
    }
    let merged = serde_json::from_value(merged).map_err(|e| at(format!(" {e}")))?;
    Ok((merged, Some(ConfigFile { path: path.to_path_buf(), text, keys })))
}

/// `unknown key `x``, with the closest valid key, or the command that does take it.
pub fn unknown_key<S: AsRef<str>>(key: &str, valid: &[String], elsewhere: &[(S, Vec<String>)]) -> String {
    if let Some((owner, _)) = elsewhere.iter().find(|(_, keys)| keys.iter().any(|k| k == key)) {
        return format!("unknown key `{key}`: it is an option of {}, not of this one", owner.as_ref());
    }
    match closest(key, valid) {
        Some(best) => format!("unknown key `{key}` (did you mean `{best}`?)"),
        None => format!("unknown key `{key}`"),
    }
}

/// The key whose value has the wrong type, as `LINE: key `k`: why`. Serde loses the key of a
/// type error inside flattened structs, so each key is checked on its own.
fn wrong_key<A: DeserializeOwned>(table: &toml::Table, text: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let one = toml::Table::from_iter([(key.clone(), value.clone())]);
        let err = toml::Value::Table(one).try_into::<A>().err()?;
        let line = line_of_key(text, key).map(|l| format!("{l}:")).unwrap_or_default();
        Some(format!("{line} key `{key}`: {}", err.message().trim()))
    })
}

/// The 1-based line where `key` is assigned at the start of a line.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))).map(|i| i + 1)
}

/// 1-based line and column (in characters, as editors count) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A TOML error as `LINE:COLUMN: message`.
fn explain_toml(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            format!("{line}:{column}: {msg}")
        }
        None => format!(" {msg}"),
    }
}

/// The keys of an options struct (its serialised field names).
pub fn valid_keys<A: Serialize + Default>() -> Vec<String> {
    let v = serde_json::to_value(A::default()).expect("struct");
    v.as_object().expect("struct").keys().cloned().collect()
}

/// The valid key nearest to `word` by edit distance, if it is close enough to be a typo (at
/// most a third of the longer name, so `beta` does not suggest `data`).
pub fn closest(word: &str, candidates: &[String]) -> Option<String> {
    let chars: Vec<char> = word.chars().collect();
    candidates
        .iter()
        .map(|c| (ladder_eval::edit::edit_distance(&chars, &c.chars().collect::<Vec<_>>()), c))
        .filter(|(d, c)| *d > 0 && *d <= chars.len().max(c.chars().count()) / 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{DpoArgs, SftArgs};

    #[test]
    fn suggests_the_closest_key() {
        let keys = valid_keys::<SftArgs>();
        assert_eq!(closest("lora_rank", &keys).as_deref(), Some("lora_r"));
        assert_eq!(closest("leraning_rate", &keys), None);
        assert_eq!(closest("max_seq_length", &keys).as_deref(), Some("max_seq_len"));
        assert_eq!(closest("beta", &keys), None, "beta is no typo of data");
        assert!(keys.contains(&"packing".to_string()) && keys.contains(&"lora_r".to_string()));
        assert!(valid_keys::<DpoArgs>().contains(&"beta".to_string()));
        assert!(!keys.contains(&"config".to_string()));
        let dpo = [("`ladder dpo`", valid_keys::<DpoArgs>())];
        assert_eq!(unknown_key("beta", &keys, &dpo), "unknown key `beta`: it is an option of `ladder dpo`, not of this one");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\nçd", 5), (2, 2));
        assert_eq!(line_col("ab\nçd", 4), (2, 1), "inside a character: its start");
    }
}
