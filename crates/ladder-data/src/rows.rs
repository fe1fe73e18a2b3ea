//! Dataset rows in the formats TRL documents — `{"text"}`, `{"prompt","completion"}`,
//! `{"messages"}`, `{"prompt","chosen","rejected"}` (standard or conversational) — read from
//! JSON Lines or Parquet. Parquet rows are converted to JSON and go through the same parser,
//! so both formats accept and reject exactly the same rows.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::chat_template::Message;
use crate::error::{DataError, Result};

/// A prompt: plain text, or a conversation rendered with the chat template.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    Text { text: String },
    Completion { prompt: Prompt, completion: String },
    Messages { messages: Vec<Message> },
    Preference { prompt: Prompt, chosen: String, rejected: String },
}

/// Where a row came from: the file and its 1-based line (JSONL) or row (Parquet).
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Count and skip malformed rows instead of failing on the first.
    pub skip_bad_rows: bool,
}

#[derive(Debug)]
pub struct Dataset {
    pub rows: Vec<Located<Row>>,
    pub skipped: usize,
}

const SHAPES: &str = "{\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"} or {\"prompt\",\"chosen\",\"rejected\"}";

/// Reads every row of a `.jsonl`/`.json` or `.parquet` file.
pub fn read_rows(path: &Path, opts: &ReadOptions) -> Result<Dataset> {
    if !path.exists() {
        return Err(DataError::MissingFile { path: path.to_path_buf() });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let raw: Vec<(usize, std::result::Result<Value, String>)> = match ext.as_str() {
        "jsonl" | "json" => read_jsonl(path)?,
        "parquet" => read_parquet(path)?,
        _ => return Err(DataError::UnknownFormat { path: path.to_path_buf() }),
    };
    let mut rows = Vec::with_capacity(raw.len());
    let mut skipped = 0;
    for (line, value) in raw {
        let parsed = value.and_then(|v| parse_row(&v));
        match parsed {
            Ok(row) => rows.push(Located { value: row, origin: Origin { file: path.to_path_buf(), line } }),
            Err(message) if opts.skip_bad_rows => {
                if skipped < 3 {
                    tracing::warn!("{}:{line}: {message} (skipped)", path.display());
                }
                skipped += 1;
            }
            Err(message) => return Err(DataError::Row { path: path.to_path_buf(), line, message }),
        }
    }
    if rows.is_empty() && skipped > 0 {
        return Err(DataError::AllRowsBad { path: path.to_path_buf(), skipped });
    }
    if rows.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    Ok(Dataset { rows, skipped })
}

/// The longest JSONL line read as a row. Far beyond any training example, it keeps a stray
/// binary or single-line dump from being tokenised for minutes (BPE on one huge word is slow).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Lines of a JSONL file, parsed; blank lines are ignored.
fn read_jsonl(path: &Path) -> Result<Vec<(usize, std::result::Result<Value, String>)>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.len() > MAX_LINE_BYTES {
            let message = format!(
                "line is {} bytes, over the {} MiB limit for one row (is this file really JSONL?)",
                line.len(),
                MAX_LINE_BYTES >> 20
            );
            out.push((i + 1, Err(message)));
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Err(e) => Err(format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to())),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => serde_json::from_str::<Value>(text).map_err(|e| format!("malformed JSON at column {}: {e}", e.column())),
        };
        out.push((i + 1, parsed));
    }
    Ok(out)
}

/// Rows of a Parquet file as JSON objects (list<struct> columns become arrays of objects).
fn read_parquet(path: &Path) -> Result<Vec<(usize, std::result::Result<Value, String>)>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let err = |e: parquet::errors::ParquetError| DataError::Parquet { path: path.to_path_buf(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let reader = SerializedFileReader::new(file).map_err(err)?;
    let mut out = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(err)?.enumerate() {
        out.push((i + 1, row.map(|r| r.to_json_value()).map_err(|e| e.to_string())));
    }
    Ok(out)
}

fn string_field(obj: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("\"{key}\" must be a string, found {}", kind(other))),
        None => Err(format!("missing \"{key}\"")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn messages(v: &Value, key: &str) -> std::result::Result<Vec<Message>, String> {
    let list = v.as_array().ok_or_else(|| format!("\"{key}\" must be a list of {{\"role\",\"content\"}} messages, found {}", kind(v)))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let obj = m.as_object().ok_or_else(|| format!("\"{key}\"[{i}] must be an object, found {}", kind(m)))?;
            let role = string_field(obj, "role").map_err(|e| format!("\"{key}\"[{i}]: {e}"))?;
            let content = string_field(obj, "content").map_err(|e| format!("\"{key}\"[{i}]: {e}"))?;
            Ok(Message { role, content })
        })
        .collect()
}

fn prompt(v: &Value) -> std::result::Result<Prompt, String> {
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(_) => Ok(Prompt::Messages(messages(v, "prompt")?)),
        other => Err(format!("\"prompt\" must be a string or a list of messages, found {}", kind(other))),
    }
}

/// A completion: a string, or (conversational) a list holding one assistant message.
fn completion(v: &Value, key: &str) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => {
            let msgs = messages(v, key)?;
            match msgs.as_slice() {
                [m] if m.role == "assistant" => Ok(m.content.clone()),
                _ => Err(format!("\"{key}\" as a list must hold exactly one assistant message")),
            }
        }
        other => Err(format!("\"{key}\" must be a string or an assistant message list, found {}", kind(other))),
    }
}

/// Recognises a row's shape; extra keys are ignored.
pub fn parse_row(v: &Value) -> std::result::Result<Row, String> {
    let obj = v.as_object().ok_or_else(|| format!("expected a JSON object ({SHAPES}), found {}", kind(v)))?;
    let has = |k: &str| obj.contains_key(k);
    if has("chosen") || has("rejected") {
        let p = obj.get("prompt").ok_or("a preference row needs \"prompt\" as well as \"chosen\" and \"rejected\"")?;
        let chosen = completion(obj.get("chosen").ok_or("missing \"chosen\"")?, "chosen")?;
        let rejected = completion(obj.get("rejected").ok_or("missing \"rejected\"")?, "rejected")?;
        return Ok(Row::Preference { prompt: prompt(p)?, chosen, rejected });
    }
    if let Some(m) = obj.get("messages") {
        let messages = messages(m, "messages")?;
        if messages.is_empty() {
            return Err("\"messages\" is empty".into());
        }
        return Ok(Row::Messages { messages });
    }
    if has("prompt") || has("completion") {
        let p = obj.get("prompt").ok_or("missing \"prompt\" (a completion row needs both)")?;
        // Evaluation sets often call the completion the "reference".
        let c = obj
            .get("completion")
            .or_else(|| obj.get("reference"))
            .ok_or("missing \"completion\" (a prompt row needs both)")?;
        return Ok(Row::Completion { prompt: prompt(p)?, completion: completion(c, "completion")? });
    }
    if has("text") {
        return Ok(Row::Text { text: string_field(obj, "text")? });
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    Err(format!("unrecognised row with keys {keys:?}; expected {SHAPES}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_every_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(
            dir.path(),
            "d.jsonl",
            br#"{"text": "t"}
{"prompt": "p", "completion": "c", "extra": 1}

{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}
{"prompt": [{"role": "user", "content": "u"}], "completion": [{"role": "assistant", "content": "a"}]}
{"prompt": "p", "chosen": "c", "rejected": "r"}
"#,
        );
        let d = read_rows(&p, &ReadOptions::default()).unwrap();
        assert_eq!(d.rows.len(), 5);
        assert_eq!(d.rows[1].value, Row::Completion { prompt: Prompt::Text("p".into()), completion: "c".into() });
        assert_eq!(d.rows[2].origin.line, 4, "blank lines still count for line numbers");
        assert!(matches!(&d.rows[3].value, Row::Completion { prompt: Prompt::Messages(m), completion } if m.len() == 1 && completion == "a"));
        assert!(matches!(d.rows[4].value, Row::Preference { .. }));
    }

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 6] = [
            (b"{\"text\": \"ok\"}\n{\"text\": ", "d.jsonl:2: malformed JSON"),
            (b"{\"prompt\": \"p\"}\n", "d.jsonl:1: missing \"completion\""),
            (b"{\"foo\": 1}\n", "unrecognised row with keys [\"foo\"]"),
            (b"{\"text\": 3}\n", "\"text\" must be a string, found a number"),
            (b"{\"text\": \"a\xff\"}\n", "d.jsonl:1: not valid UTF-8"),
            (b"\n\n", "d.jsonl: no usable rows"),
        ];
        for (text, expected) in cases {
            let p = file(dir.path(), "d.jsonl", text);
            let err = read_rows(&p, &ReadOptions::default()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        }
        let err = read_rows(&dir.path().join("nope.jsonl"), &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("nope.jsonl: file not found"));
        let p = file(dir.path(), "d.csv", b"a,b");
        assert!(read_rows(&p, &ReadOptions::default()).unwrap_err().to_string().contains("expected .jsonl"));
    }

    #[test]
    fn skip_bad_rows_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "d.jsonl", b"{\"text\": \"a\"}\nnot json\n{\"x\": 1}\n{\"text\": \"b\"}\n");
        let d = read_rows(&p, &ReadOptions { skip_bad_rows: true }).unwrap();
        assert_eq!((d.rows.len(), d.skipped), (2, 2));
    }
}
