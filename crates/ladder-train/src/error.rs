//! Errors of training jobs: each says which file, option or row is at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ladder_model::ModelError),
    #[error(transparent)]
    Data(#[from] ladder_data::DataError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "tokenizer in {path} has {tokenizer} tokens but the model's vocab_size is {model}: they do not belong together"
    )]
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
    },
    #[error("{path}: cannot resume: {message}")]
    Resume { path: PathBuf, message: String },
    #[error("non-finite loss ({loss}) at step {step}, in the batch of rows {rows}; lower --lr, or check those rows")]
    NonFinite { step: usize, loss: f64, rows: String },
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
