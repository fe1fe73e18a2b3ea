//! Errors for scoring predictions: each names the predictions file and, where it applies, the
//! 1-based line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not valid UTF-8 (byte {byte} of the line)")]
    NotUtf8 { path: PathBuf, line: usize, byte: usize },
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: usize, message: String },
    #[error("{path}: unsupported format {extension:?}: predictions are read from JSON Lines (.jsonl) of {{\"prediction\", \"reference\"}} rows")]
    UnsupportedFormat { path: PathBuf, extension: String },
    #[error("{path}: no prediction rows (expected JSON Lines of {{\"prediction\", \"reference\"}})")]
    Empty { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;
