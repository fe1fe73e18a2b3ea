//! Errors of recipes: each names the recipe file with the line and column of the key at fault,
//! or the run folder / stage involved.

use std::path::PathBuf;

/// One problem found in a recipe, at a place in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{file}:{line}:{column}: {message}")]
    Parse { file: PathBuf, line: usize, column: usize, message: String },
    /// Everything `ladder validate` found wrong, one problem per line.
    #[error("{} problem(s) in the recipe:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stage `{start}/{stage}`: {source}")]
    Train {
        start: String,
        stage: String,
        /// Boxed: training errors are large, and every recipe `Result` would carry their size.
        #[source]
        source: Box<ladder_train::TrainError>,
    },
    #[error("stage `{start}/{stage}`: {source}")]
    Eval {
        start: String,
        stage: String,
        #[source]
        source: Box<ladder_eval::EvalError>,
    },
    #[error("stage `{start}/{stage}` needs stage `{parent}` to be complete first (run it, or drop --only)")]
    ParentIncomplete { start: String, stage: String, parent: String },
    #[error("no stage matches `{selector}` (stages: {known})")]
    UnknownSelector { selector: String, known: String },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("slurm: {0}")]
    Slurm(String),
    #[error("{} stage(s) failed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Failed(Vec<String>),
}

pub type Result<T> = std::result::Result<T, RecipeError>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io { path: path.to_path_buf(), source }
}
