//! Recipes for `ladder`: a TOML file chains stages (`sft`, `dpo`, `pairs`, `eval`, `merge`) from
//! one or more starting checkpoints, as torchtune's recipe configs do, but checked before
//! anything runs ([`plan::plan`], `ladder validate`), fingerprinted so that a re-run only runs
//! what changed ([`run::run`]), run in-process or on Slurm ([`slurm`]), and compared across
//! starts ([`report::compare`]).
//!
//! Stage keys are the `--config` keys of `ladder sft` / `ladder dpo`, resolved by the same code
//! ([`ladder_train::options`]).

pub mod chart;
pub mod error;
pub mod findings;
pub mod html;
pub mod fingerprint;
pub mod manifest;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod seeds;
pub mod slurm;
pub mod stats;

pub use error::{Problem, RecipeError, Result};
pub use plan::{plan, Plan, State};
pub use run::{run, Executor, RunOptions};
pub use schema::{load, parse, RecipeSource};

/// The code version recorded in every fingerprint.
pub const CODE_VERSION: &str = concat!("ladder ", env!("CARGO_PKG_VERSION"));
