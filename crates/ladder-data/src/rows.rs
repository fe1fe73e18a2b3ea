//! Dataset rows in the formats TRL documents — `{"text"}`, `{"prompt","completion"}`,
//! `{"messages"}`, `{"prompt","chosen","rejected"}` (standard or conversational) — read from
//! JSON Lines or Parquet. Parquet rows are converted to JSON and go through the same parser,
//! so both formats accept and reject exactly the same rows.
//!
//! Rows may carry images as TRL's vision datasets do: `"image"` (one) or `"images"` (a list),
//! each a path (relative to the data file's folder) or Hugging Face `datasets`' image struct
//! `{"bytes", "path"}`; in conversations, `{"type": "image"}` content parts mark where they go.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::chat_template::Message;
use crate::error::{DataError, Result};
use crate::image::ImageSource;
use crate::placeholders::{check_placement, count_placeholders, place_in_messages, IMAGE_BLOCK, IMAGE_PAD};

/// A prompt: plain text, or a conversation rendered with the chat template.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Messages(Vec<Message>),
}

/// A row; `images` are in the order their placeholders appear in the prompt (empty for text).
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    Text { text: String },
    Completion { prompt: Prompt, completion: String, images: Vec<ImageSource> },
    Messages { messages: Vec<Message>, images: Vec<ImageSource> },
    Preference { prompt: Prompt, chosen: String, rejected: String, images: Vec<ImageSource> },
}

impl Row {
    pub fn images(&self) -> &[ImageSource] {
        match self {
            Row::Text { .. } => &[],
            Row::Completion { images, .. } | Row::Messages { images, .. } | Row::Preference { images, .. } => images,
        }
    }

    fn images_mut(&mut self) -> Option<&mut Vec<ImageSource>> {
        match self {
            Row::Text { .. } => None,
            Row::Completion { images, .. } | Row::Messages { images, .. } | Row::Preference { images, .. } => Some(images),
        }
    }
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
        "jsonl" | "json" => read_json_lines(path)?,
        "parquet" => read_parquet(path)?,
        _ => return Err(DataError::UnknownFormat { path: path.to_path_buf() }),
    };
    let mut rows = Vec::with_capacity(raw.len());
    let mut skipped = 0;
    let base = path.parent().unwrap_or(Path::new(""));
    for (line, value) in raw {
        let parsed = value.and_then(|v| parse_row(&v)).and_then(|row| resolve_images(row, base));
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

/// Resolves relative image paths against the data file's folder and checks the files exist,
/// so a missing image is a row error at load time rather than midway through training.
fn resolve_images(mut row: Row, base: &Path) -> std::result::Result<Row, String> {
    if let Some(images) = row.images_mut() {
        resolve_paths(images, base)?;
    }
    Ok(row)
}

fn resolve_paths(images: &mut [ImageSource], base: &Path) -> std::result::Result<(), String> {
    for (k, image) in images.iter_mut().enumerate() {
        if let ImageSource::Path(p) = image {
            if p.is_relative() {
                *p = base.join(&*p);
            }
            if !p.is_file() {
                return Err(format!("image {} not found: {}", k + 1, p.display()));
            }
        }
    }
    Ok(())
}

/// A prompt-only row (`ladder generate`): its prompt — `"prompt"` (text, or messages whose
/// content may hold `{"type": "image"}` parts), or `"messages"` without a final assistant
/// turn — and its `"image"` / `"images"`, relative paths resolved against `base` (the data
/// file's folder) and checked to exist. Other columns are the caller's.
pub fn parse_prompt_row(v: &Value, base: &Path) -> std::result::Result<(Prompt, Vec<ImageSource>), String> {
    const SHAPES: &str = "{\"prompt\": text or messages} or {\"messages\": [...]}";
    let obj = v.as_object().ok_or_else(|| format!("expected a JSON object {SHAPES}, found {}", kind(v)))?;
    let mut images = images(obj)?;
    let p = match (obj.get("prompt"), obj.get("messages")) {
        (Some(p), _) => prompt(p)?,
        (None, Some(m)) => {
            let mut list = messages(m, "messages")?;
            if list.last().is_some_and(|m| m.role == "assistant") {
                list.pop();
            }
            if list.is_empty() {
                return Err("\"messages\" holds no turn before the assistant's: nothing to prompt with".into());
            }
            Prompt::Messages(list)
        }
        (None, None) => {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort();
            return Err(format!("no prompt in a row with keys {keys:?}; expected {SHAPES}"));
        }
    };
    if let Prompt::Messages(list) = &p {
        if list.is_empty() {
            return Err("\"prompt\" is an empty list of messages".into());
        }
    }
    check_placement(prompt_placeholders(&p), images.len())?;
    resolve_paths(&mut images, base)?;
    Ok((p, images))
}

/// The longest JSONL line read as a row. Far beyond any training example, it keeps a stray
/// binary or single-line dump from being tokenised for minutes (BPE on one huge word is slow).
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Lines of a JSONL file, each parsed or the reason it is not (1-based line numbers); blank
/// lines are ignored. The one JSONL reader: rows, prompts and recipe checks all use it, so a
/// bad line reads the same wherever it is found.
pub fn read_json_lines(path: &Path) -> Result<Vec<(usize, std::result::Result<Value, String>)>> {
    head_json_lines(path, usize::MAX)
}

/// The first `rows` non-blank lines of a JSONL file, as [`read_json_lines`] gives them; the
/// rest is not parsed (a recipe check looks at the head of files that may hold millions).
pub fn head_json_lines(path: &Path, rows: usize) -> Result<Vec<(usize, std::result::Result<Value, String>)>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    // Editors on Windows start UTF-8 files with a byte-order mark; it is not part of row 1.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
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
        if out.len() == rows {
            break;
        }
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
        out.push((i + 1, row.map_err(|e| e.to_string()).and_then(|r| parquet_row_json(&r))));
    }
    Ok(out)
}

/// Text columns that a writer may have stored as plain binary instead of UTF-8 strings.
const TEXT_COLUMNS: [&str; 7] = ["text", "prompt", "completion", "reference", "chosen", "rejected", "prediction"];

/// A Parquet row as JSON. A binary text column is decoded as UTF-8 text, as the same strings
/// stored as UTF-8 would be (the generic conversion would give base64, another text).
fn parquet_row_json(row: &parquet::record::Row) -> std::result::Result<Value, String> {
    let mut value = row.to_json_value();
    for (name, field) in row.get_column_iter() {
        if let (parquet::record::Field::Bytes(bytes), true) = (field, TEXT_COLUMNS.contains(&name.as_str())) {
            let text = std::str::from_utf8(bytes.data())
                .map_err(|e| format!("column \"{name}\" is binary and not UTF-8 text (byte {})", e.valid_up_to()))?;
            value[name.as_str()] = Value::String(text.to_string());
        }
    }
    Ok(value)
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
            let content = match obj.get("content") {
                Some(Value::Array(parts)) => content_parts(parts).map_err(|e| format!("\"{key}\"[{i}].content{e}"))?,
                _ => string_field(obj, "content").map_err(|e| format!("\"{key}\"[{i}]: {e}"))?,
            };
            Ok(Message { role, content })
        })
        .collect()
}

/// Content as a list of typed parts (transformers' multimodal form): text parts are joined and
/// each image part becomes [`IMAGE_BLOCK`], which is what Qwen2-VL's chat template writes for
/// it, so the string renders the same through any template that prints string content.
fn content_parts(parts: &[Value]) -> std::result::Result<String, String> {
    let mut out = String::new();
    for (j, part) in parts.iter().enumerate() {
        let obj = part.as_object().ok_or_else(|| format!("[{j}] must be an object, found {}", kind(part)))?;
        match obj.get("type").and_then(Value::as_str) {
            Some("text") => out.push_str(&string_field(obj, "text").map_err(|e| format!("[{j}]: {e}"))?),
            // The image itself is in the row's "image"/"images"; a part may also name it.
            Some("image") => out.push_str(IMAGE_BLOCK),
            Some(other) => return Err(format!("[{j}]: unsupported content type {other:?}; expected \"text\" or \"image\"")),
            None => return Err(format!("[{j}]: a content part needs \"type\" (\"text\" or \"image\")")),
        }
    }
    Ok(out)
}

/// One image: a path, or `{"bytes", "path"}` with bytes as base64 (Parquet binary arrives so
/// through the JSON conversion) or a list of byte values; `null` bytes fall back to the path.
fn image_source(v: &Value, what: &str) -> std::result::Result<ImageSource, String> {
    use base64::Engine;
    match v {
        Value::String(s) if !s.is_empty() => Ok(ImageSource::Path(PathBuf::from(s))),
        Value::Object(obj) => {
            let name = obj.get("path").and_then(Value::as_str).filter(|p| !p.is_empty()).map(str::to_string);
            let bytes = match obj.get("bytes") {
                None | Some(Value::Null) => None,
                Some(Value::String(b64)) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| format!("{what}: \"bytes\" is not valid base64: {e}"))?,
                ),
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| format!("{what}: \"bytes\" as a list must hold values 0–255"))?,
                ),
                Some(other) => return Err(format!("{what}: \"bytes\" must be binary or base64, found {}", kind(other))),
            };
            match (bytes, name) {
                (Some(bytes), name) => Ok(ImageSource::Bytes { bytes, name }),
                (None, Some(path)) => Ok(ImageSource::Path(PathBuf::from(path))),
                (None, None) => Err(format!("{what} has neither \"bytes\" nor \"path\"")),
            }
        }
        other => Err(format!("{what} must be a path or a {{\"bytes\",\"path\"}} object, found {}", kind(other))),
    }
}

/// The row's images from `"image"` (one) or `"images"` (a list); `null` means none.
fn images(obj: &Map<String, Value>) -> std::result::Result<Vec<ImageSource>, String> {
    match (obj.get("image"), obj.get("images")) {
        (Some(a), Some(b)) if !a.is_null() && !b.is_null() => Err("a row has either \"image\" or \"images\", not both".into()),
        (Some(v), _) if !v.is_null() => Ok(vec![image_source(v, "\"image\"")?]),
        (_, Some(Value::Array(list))) => list.iter().enumerate().map(|(k, v)| image_source(v, &format!("\"images\"[{k}]"))).collect(),
        (_, Some(v)) if !v.is_null() => Err(format!("\"images\" must be a list, found {}", kind(v))),
        _ => Ok(Vec::new()),
    }
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
                [m] if m.role == "assistant" && count_placeholders(&m.content) > 0 => Err(format!("\"{key}\" holds an image; images go in the prompt")),
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
    let images = images(obj)?;
    if has("chosen") || has("rejected") {
        let p = obj.get("prompt").ok_or("a preference row needs \"prompt\" as well as \"chosen\" and \"rejected\"")?;
        let chosen = completion(obj.get("chosen").ok_or("missing \"chosen\"")?, "chosen")?;
        let rejected = completion(obj.get("rejected").ok_or("missing \"rejected\"")?, "rejected")?;
        let prompt = prompt(p)?;
        check_placement(prompt_placeholders(&prompt), images.len())?;
        return Ok(Row::Preference { prompt, chosen, rejected, images });
    }
    if let Some(m) = obj.get("messages") {
        let messages = messages(m, "messages")?;
        if messages.is_empty() {
            return Err("\"messages\" is empty".into());
        }
        if messages.iter().any(|m| m.role == "assistant" && count_placeholders(&m.content) > 0) {
            return Err("an assistant message holds an image; images go in user turns".into());
        }
        check_placement(messages.iter().map(|m| count_placeholders(&m.content)).sum(), images.len())?;
        return Ok(Row::Messages { messages, images });
    }
    if has("prompt") || has("completion") {
        let p = obj.get("prompt").ok_or("missing \"prompt\" (a completion row needs both)")?;
        // Evaluation sets often call the completion the "reference".
        let c = obj
            .get("completion")
            .or_else(|| obj.get("reference"))
            .ok_or("missing \"completion\" (a prompt row needs both)")?;
        let (prompt, completion) = (prompt(p)?, completion(c, "completion")?);
        check_placement(prompt_placeholders(&prompt), images.len())?;
        if count_placeholders(&completion) > 0 {
            return Err(format!("the completion holds an image placeholder ({IMAGE_PAD}); images go in the prompt"));
        }
        return Ok(Row::Completion { prompt, completion, images });
    }
    if !images.is_empty() {
        return Err("a {\"text\"} row cannot carry images; use {\"prompt\",\"completion\"} or {\"messages\"} with \"image\"/\"images\"".into());
    }
    if has("text") {
        return Ok(Row::Text { text: string_field(obj, "text")? });
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    Err(format!("unrecognised row with keys {keys:?}; expected {SHAPES}"))
}

/// Placeholders in a prompt, over all its messages.
pub fn prompt_placeholders(prompt: &Prompt) -> usize {
    match prompt {
        Prompt::Text(t) => count_placeholders(t),
        Prompt::Messages(m) => m.iter().map(|m| count_placeholders(&m.content)).sum(),
    }
}

/// A prompt with its images placed ([`place_in_messages`]; plain text gets them in front).
pub fn place_images(prompt: &Prompt, images: usize) -> std::result::Result<Prompt, String> {
    Ok(match prompt {
        Prompt::Text(t) => {
            check_placement(count_placeholders(t), images)?;
            if count_placeholders(t) == 0 {
                Prompt::Text(IMAGE_BLOCK.repeat(images) + t)
            } else {
                prompt.clone()
            }
        }
        Prompt::Messages(m) => Prompt::Messages(place_in_messages(m, images)?),
    })
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
        assert_eq!(d.rows[1].value, Row::Completion { prompt: Prompt::Text("p".into()), completion: "c".into(), images: vec![] });
        assert_eq!(d.rows[2].origin.line, 4, "blank lines still count for line numbers");
        assert!(matches!(&d.rows[3].value, Row::Completion { prompt: Prompt::Messages(m), completion, .. } if m.len() == 1 && completion == "a"));
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
    fn reads_image_rows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pages")).unwrap();
        std::fs::write(dir.path().join("pages/a.png"), b"png").unwrap();
        let p = file(
            dir.path(),
            "d.jsonl",
            br#"{"image": "pages/a.png", "prompt": "p", "completion": "c"}
{"images": [{"bytes": "aGk=", "path": "x.png"}], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "read"}]}], "completion": "c"}
{"images": [], "image": null, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
{"image": {"bytes": null, "path": "pages/a.png"}, "prompt": "p", "chosen": "c", "rejected": "r"}
"#,
        );
        let d = read_rows(&p, &ReadOptions::default()).unwrap();
        assert_eq!(d.rows[0].value.images(), [ImageSource::Path(dir.path().join("pages/a.png"))]);
        let Row::Completion { prompt: Prompt::Messages(m), images, .. } = &d.rows[1].value else { panic!("{:?}", d.rows[1].value) };
        assert_eq!(m[0].content, format!("{IMAGE_BLOCK}read"));
        assert_eq!(images, &[ImageSource::Bytes { bytes: b"hi".to_vec(), name: Some("x.png".into()) }]);
        assert_eq!(d.rows[2].value, Row::Messages { messages: vec![Message::new("user", "ab")], images: vec![] });
        assert_eq!(d.rows[3].value.images().len(), 1);
    }

    #[test]
    fn a_bom_is_not_part_of_row_1() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "d.jsonl", "\u{feff}{\"text\": \"a\"}\n".as_bytes());
        let d = read_rows(&p, &ReadOptions::default()).unwrap();
        assert_eq!(d.rows[0].value, Row::Text { text: "a".into() });
    }

    /// A Parquet file of one row whose columns are plain BYTE_ARRAY (binary, no UTF-8 mark).
    fn binary_parquet(path: &Path, prompt: &[u8], completion: &[u8]) {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::writer::SerializedFileWriter;
        let schema = parquet::schema::parser::parse_message_type("message rows { REQUIRED BYTE_ARRAY prompt; REQUIRED BYTE_ARRAY completion; }").unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, std::sync::Arc::new(schema), Default::default()).unwrap();
        let mut group = writer.next_row_group().unwrap();
        for value in [prompt, completion] {
            let mut column = group.next_column().unwrap().unwrap();
            column.typed::<ByteArrayType>().write_batch(&[ByteArray::from(value.to_vec())], None, None).unwrap();
            column.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn binary_parquet_text_columns_are_read_as_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.parquet");
        binary_parquet(&p, "Olá".as_bytes(), b" mundo");
        let d = read_rows(&p, &ReadOptions::default()).unwrap();
        assert_eq!(d.rows[0].value, Row::Completion { prompt: Prompt::Text("Olá".into()), completion: " mundo".into(), images: vec![] });
        binary_parquet(&p, b"ok", b"\xff\xfe");
        let err = read_rows(&p, &ReadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("b.parquet:1") && err.contains("\"completion\" is binary and not UTF-8"), "{err}");
    }

    #[test]
    fn skip_bad_rows_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "d.jsonl", b"{\"text\": \"a\"}\nnot json\n{\"x\": 1}\n{\"text\": \"b\"}\n");
        let d = read_rows(&p, &ReadOptions { skip_bad_rows: true }).unwrap();
        assert_eq!((d.rows.len(), d.skipped), (2, 2));
    }
}
