//! Recipes for `ladder`: a TOML file chains stages (`sft`, `dpo`, `pairs`, `eval`, `merge`) from
//! one or more starting checkpoints, as torchtune's recipe configs do, but checked before
//! anything runs ([`plan::plan`], `ladder validate`), fingerprinted so that a re-run only runs
//! what changed ([`run::run`]), run in-process or on Slurm ([`slurm`]), and compared across
//! starts ([`report::compare`]).
//!
//! A stage's keys are the options of the command of its kind (`ladder sft`, `dpo`, `pairs`,
//! `eval`, `merge`), deserialised into the same structs and resolved by the same code
//! ([`ladder_train::options`]), so a key means what the flag means, with the same default.

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
pub mod select;
pub mod seeds;
pub mod slurm;
pub mod stats;

pub use error::{Problem, RecipeError, Result};
pub use plan::{plan, Plan, State};
pub use run::run;
pub use select::{Executor, Outcome, RunOptions};
pub use schema::{load, parse, RecipeSource};

/// The code version recorded in every fingerprint.
pub const CODE_VERSION: &str = concat!("ladder ", env!("CARGO_PKG_VERSION"));
