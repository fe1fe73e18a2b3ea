//! Every stage's options, defined once. Each kind of stage has one struct of options (`SftArgs`,
//! `DpoArgs`, `PairsArgs`, `EvalArgs`, `GenerateArgs`, `LogprobsArgs`, `MergeArgs`) that is at
//! the same time:
//! - the command's clap `Args` (doc comments on the fields are the `--help` text),
//! - what a `--config` TOML file deserialises into (same keys, snake_case),
//! - what a recipe stage's table deserialises into (`ladder-recipe`).
//!
//! Every field is an `Option` so that flags, a config file and a recipe's `[defaults]` can be
//! layered; defaults and range checks are applied once, by the `resolve_*` function of the
//! kind, which returns the library job or an [`OptionError`] naming the key. So a stage key
//! means exactly what the flag means, with the same default, wherever it is written.

mod file;
mod generation;
mod train;

pub use crate::option_error::OptionError;
pub use file::{closest, line_col, line_of_key, merge_config, unknown_key, valid_keys, ConfigFile};
pub use generation::*;
pub use train::*;
