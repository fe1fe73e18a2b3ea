//! What a run is asked to do and what became of each stage, for the local and Slurm executors
//! alike: the executor, the `--force`, `--from` and `--only` selectors (`STAGE` for every
//! start, or `START/STAGE`), and each stage's [`Outcome`].

use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::{RecipeError, Result};
use crate::plan::{Plan, StartPlan};

/// Where stages run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// In this process, one stage at a time.
    #[default]
    Local,
    /// One sbatch job per stage, chained by dependencies; `ladder run` exits once they are
    /// submitted.
    Slurm,
}

/// Which stages a run covers. Selectors are `STAGE` (every start) or `START/STAGE`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub executor: Executor,
    /// Re-run these stages (and their descendants) even when up to date.
    pub force: Vec<String>,
    /// Run only these stages and their descendants.
    pub from: Vec<String>,
    /// Run only these stages (their parents must be complete).
    pub only: Vec<String>,
    /// Output root instead of the recipe's `output`.
    pub output: Option<PathBuf>,
    /// Run once per seed (`--seeds`), instead of the recipe's `seeds`.
    pub seeds: Option<Vec<u64>>,
}

/// What happened to each stage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// The seed's run, when the run covers several ([`crate::seeds`]).
    pub seed: Option<u64>,
    pub start: String,
    pub stage: String,
    /// ran, resumed, skipped (up to date), not-selected, submitted (slurm job id), failed.
    pub action: String,
    pub detail: Option<String>,
}

fn matches(sel: &str, start: &str, stage: &str) -> bool {
    match sel.split_once('/') {
        Some((a, b)) => a == start && b == stage,
        None => sel == stage,
    }
}

pub(crate) fn check_selectors(plan: &Plan, sels: &[String]) -> Result<()> {
    for sel in sels {
        let found = plan.starts.iter().any(|s| s.stages.iter().any(|st| matches(sel, &s.name, &st.name)));
        if !found {
            let known: Vec<String> = plan.starts.first().map(|s| s.stages.iter().map(|st| st.name.clone()).collect()).unwrap_or_default();
            return Err(RecipeError::UnknownSelector { selector: sel.clone(), known: known.join(", ") });
        }
    }
    Ok(())
}

/// `sels`' stages of `start` and every stage below them.
fn with_descendants(start: &StartPlan, sels: &[String]) -> HashSet<String> {
    let mut set: HashSet<String> = HashSet::new();
    for st in &start.stages {
        if sels.iter().any(|s| matches(s, &start.name, &st.name)) || st.parents.iter().any(|p| set.contains(p)) {
            set.insert(st.name.clone());
        }
    }
    set
}

/// What a run covers for one start: (selected, forced).
pub(crate) fn selection(start: &StartPlan, opts: &RunOptions) -> (HashSet<String>, HashSet<String>) {
    let all: HashSet<String> = start.stages.iter().map(|s| s.name.clone()).collect();
    let mut selected = all.clone();
    if !opts.from.is_empty() {
        selected = with_descendants(start, &opts.from);
    }
    if !opts.only.is_empty() {
        selected.retain(|n| opts.only.iter().any(|s| matches(s, &start.name, n)));
    }
    let forced = with_descendants(start, &opts.force);
    (selected, forced)
}

