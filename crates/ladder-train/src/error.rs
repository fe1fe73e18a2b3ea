//! Errors of training jobs: each says which file, option or row is at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ladder_model::ModelError),
    #[error(transparent)]
    Data(#[from] ladder_data::DataError),
    #[error(transparent)]
    Eval(#[from] ladder_eval::EvalError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// An option out of range or inconsistent, naming its key.
    #[error(transparent)]
    Option(#[from] crate::option_error::OptionError),
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
    #[error("non-finite {what} ({value}) at step {step}, in the batch of rows {rows}; lower --lr, check those rows, or pass --on-nonfinite skip")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        step: usize,
        value: f64,
        rows: String,
    },
    /// The weights after an optimizer step hold NaN or infinity (the loss before it was
    /// finite: `--adam-eps 0`, `--adam-beta2 1`, a too-high `--lr`): nothing was saved.
    #[error(
        "the weights after step {step} are not finite (tensor `{key}` holds NaN or infinite values), so they were not saved{}; lower --lr, or check --adam-eps (> 0) and --adam-beta2 (< 1)",
        last_good.as_ref().map(|p| format!("; the last good checkpoint is {}", p.display())).unwrap_or_default()
    )]
    NonFiniteWeights {
        step: usize,
        key: String,
        last_good: Option<PathBuf>,
    },
    #[error("{skipped} steps skipped for a non-finite loss or gradient, more than --max-skipped-steps {max}; the run is diverging: lower --lr")]
    TooManySkipped { skipped: usize, max: usize },
    #[error("{out} is in use by another ladder run (pid {pid} on {host}, lock file {lock}); wait for it, choose another --out, or delete the lock file if that run is gone")]
    Locked {
        out: PathBuf,
        lock: PathBuf,
        pid: u32,
        host: String,
    },
    /// Stopped by a signal at a step boundary, with a checkpoint to resume from.
    #[error("interrupted after step {step}: checkpoint saved in {checkpoint}; resume with --resume {out}")]
    Interrupted {
        step: usize,
        checkpoint: PathBuf,
        out: PathBuf,
    },
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TrainError {
    /// A save refused for non-finite weights ([`ladder_model::ModelError::NonFiniteSave`]),
    /// told as the training step that produced them, with the checkpoint still good in `out`;
    /// other errors unchanged.
    pub(crate) fn at_step(self, step: usize, out: &std::path::Path) -> TrainError {
        match self {
            TrainError::Model(ladder_model::ModelError::NonFiniteSave { key, .. }) => {
                TrainError::NonFiniteWeights { step, key, last_good: crate::checkpoint::find(out).ok() }
            }
            other => other,
        }
    }
}
