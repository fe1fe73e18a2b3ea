//! Errors for datasets and tokenisation: each names the file and line (or row) or key.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: file not found")]
    MissingFile { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unsupported data file extension; expected .jsonl, .json or .parquet")]
    UnknownFormat { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Row {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no usable rows")]
    Empty { path: PathBuf },
    #[error("{path}: all {skipped} rows are malformed (skipped by --skip-bad-rows): nothing left to train on")]
    AllRowsBad { path: PathBuf, skipped: usize },
    #[error("{path}: invalid Parquet file: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DataError>;
