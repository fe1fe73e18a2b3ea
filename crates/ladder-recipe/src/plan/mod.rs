//! Planning: a parsed recipe becomes, for every start, its stages in dependency order, each
//! with its resolved job (the same jobs `ladder sft`, `dpo`, `pairs`, `eval` and `merge` build,
//! through [`ladder_train::options`]), its output folder, a fingerprint of every input and
//! whether it is up to date. Everything checkable without training is checked first
//! ([`checks`]); the stage graph's order comes from [`graph`], each stage's job from
//! [`resolve`].

mod checks;
mod graph;
mod resolve;
#[cfg(test)]
mod tests;
mod work;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use checks::accepted_keys;
pub use work::Work;

use crate::error::{RecipeError, Result};
use crate::fingerprint;
use crate::manifest::{Manifest, Status};
use crate::schema::{Launch, RecipeSource, SlurmConfig, StageKind};
use checks::Checker;
use resolve::Produces;

/// Whether a stage must run.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// A completed output with the same fingerprint exists.
    UpToDate,
    /// An interrupted run with the same fingerprint left this checkpoint.
    Resume(PathBuf),
    /// Must run, for this reason.
    Run(&'static str),
}

#[derive(Clone, Debug)]
pub struct PlannedStage {
    pub name: String,
    /// How its processes are launched (one, unless the stage asks for more).
    pub launch: Launch,
    /// Parent stage name, or `start`.
    pub from: String,
    pub level: Option<u32>,
    /// Stages whose outputs this one reads (`from`, and a DPO stage's `pairs` stage).
    pub parents: Vec<String>,
    pub dir: PathBuf,
    pub work: Work,
    pub inputs: Vec<Value>,
    pub fingerprint: String,
    pub state: State,
}

impl PlannedStage {
    /// The kind, from the work itself (the two cannot disagree).
    pub fn kind(&self) -> StageKind {
        self.work.kind()
    }
}

#[derive(Clone, Debug)]
pub struct StartPlan {
    pub name: String,
    pub model: String,
    pub level: Option<u32>,
    /// In dependency order.
    pub stages: Vec<PlannedStage>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub file: PathBuf,
    pub name: String,
    /// `<output>/<name>`.
    pub run_dir: PathBuf,
    /// The output root the plan was made for (the recipe's, or `--output`).
    pub output: PathBuf,
    pub starts: Vec<StartPlan>,
    pub slurm: SlurmConfig,
}

impl Plan {
    /// The plan as text: the DAG per start, and what would run.
    pub fn describe(&self) -> String {
        let mut s = format!("recipe {} → {}\n", self.name, self.run_dir.display());
        for start in &self.starts {
            s.push_str(&format!("start {} ({})\n", start.name, start.model));
            for st in &start.stages {
                let depth = self.depth(start, &st.name);
                let level = st.level.map(|l| format!(" [level {l}]")).unwrap_or_default();
                let level = if st.launch.ranks() > 1 { format!("{level} ×{} processes", st.launch.ranks()) } else { level };
                let what = match &st.state {
                    State::UpToDate => "up to date".to_string(),
                    State::Resume(ck) => format!("would resume from {}", ck.display()),
                    State::Run(why) => format!("would run ({why})"),
                };
                s.push_str(&format!(
                    "  {}└─ {} ({}){level} ← {}: {what}  [{}]\n",
                    "   ".repeat(depth),
                    st.name,
                    st.kind().as_str(),
                    st.parents.join(", ").if_empty("start"),
                    &st.fingerprint[..12]
                ));
            }
        }
        s
    }

    fn depth(&self, start: &StartPlan, stage: &str) -> usize {
        let mut d = 0;
        let mut cur = stage;
        while let Some(st) = start.stages.iter().find(|s| s.name == cur) {
            if st.from == "start" {
                break;
            }
            d += 1;
            cur = &st.from;
        }
        d
    }
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() { other.to_string() } else { self }
    }
}

/// `p` made absolute (job scripts and manifests name files from anywhere).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The run folder, `<output>/<name>`; `output` overrides the recipe's output root.
pub fn run_dir(src: &RecipeSource, output: Option<&Path>) -> PathBuf {
    output.unwrap_or(&src.recipe.output).join(&src.recipe.name)
}

/// Checks the recipe and plans it; `output` overrides the recipe's output root.
pub fn plan(src: &RecipeSource, output: Option<&Path>) -> Result<Plan> {
    plan_in(src, output, run_dir(src, output))
}

/// [`plan`] into another run folder (one seed's folder, [`crate::seeds`]).
pub fn plan_in(src: &RecipeSource, output: Option<&Path>, run_dir: PathBuf) -> Result<Plan> {
    let r = &src.recipe;
    let mut c = Checker { src, problems: Vec::new() };
    let output = output.map(Path::to_path_buf).unwrap_or_else(|| r.output.clone());
    let index = checks::check_structure(&mut c);
    if !c.problems.is_empty() {
        return Err(RecipeError::Invalid(c.problems));
    }
    let order = match graph::topo_order(&r.stage) {
        Ok(o) => o,
        Err(cycle) => {
            let first = index[cycle[0].as_str()];
            c.at("stage", first, "from", format!("stages form a cycle: {}", cycle.join(" → ")));
            return Err(RecipeError::Invalid(c.problems));
        }
    };
    let merged = checks::merged_keys(&mut c);
    if !c.problems.is_empty() {
        return Err(RecipeError::Invalid(c.problems));
    }
    checks::check_inputs(&mut c, &merged);
    // Per start: resolve every stage against what its parent produces.
    let mut hashes = fingerprint::Cache::default();
    let mut starts = Vec::new();
    for s in &r.start {
        let mut produced: HashMap<String, (Produces, String)> = HashMap::new();
        let mut stages = Vec::new();
        let start_fp = hashes.model(&s.model);
        for &i in &order {
            let st = &r.stage[i];
            let dir = run_dir.join(&s.name).join(&st.name);
            let (parent, parent_input) = if st.from == "start" {
                (Produces::Full { model: s.model.clone() }, json!({"start": s.name, "model": s.model, "fingerprint": start_fp}))
            } else {
                match produced.get(&st.from) {
                    Some((p, fp)) => (p.clone(), json!({"stage": st.from, "fingerprint": fp})),
                    None => continue, // the parent failed to resolve: already reported
                }
            };
            let mut inputs = vec![json!({"code": crate::CODE_VERSION}), parent_input];
            // More processes make a larger global batch: another result, for training stages.
            if st.ranks() > 1 && matches!(st.kind, StageKind::Sft | StageKind::Dpo) {
                inputs.push(json!({"processes": st.ranks()}));
            }
            let mut parents = vec![];
            if st.from != "start" {
                parents.push(st.from.clone());
            }
            let ctx = resolve::Context { parent: &parent, dir: &dir, run_dir: &run_dir, produced: &produced };
            let Some((work, produces)) = resolve::resolve(&mut c, i, st, &merged[i], &ctx, &mut inputs, &mut parents) else { continue };
            for file in work.data_files() {
                // Files another stage writes are covered by that stage's fingerprint.
                if file.is_file() && !file.starts_with(&run_dir) {
                    inputs.push(json!({"data": file, "sha256": hashes.file(&file)}));
                }
            }
            let config = work.config();
            let fp = fingerprint::of(work.kind().as_str(), &config, &inputs);
            let state = state_of(&dir, &fp);
            produced.insert(st.name.clone(), (produces, fp.clone()));
            stages.push(PlannedStage {
                name: st.name.clone(),
                launch: st.launch(),
                from: st.from.clone(),
                level: st.level,
                parents,
                dir,
                work,
                inputs,
                fingerprint: fp,
                state,
            });
        }
        starts.push(StartPlan { name: s.name.clone(), model: s.model.clone(), level: s.level, stages });
    }
    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        c.problems.dedup();
        return Err(RecipeError::Invalid(c.problems));
    }
    // A child of a stage that must run must run too, even if an old output matches.
    for start in &mut starts {
        let mut rerun: Vec<String> = Vec::new();
        for st in &mut start.stages {
            if st.state == State::UpToDate && st.parents.iter().any(|p| rerun.contains(p)) {
                st.state = State::Run("a parent re-runs");
            }
            if st.state != State::UpToDate {
                rerun.push(st.name.clone());
            }
        }
    }
    Ok(Plan {
        file: src.file.clone(),
        name: r.name.clone(),
        run_dir,
        output,
        starts,
        slurm: r.slurm.clone().unwrap_or_default(),
    })
}

/// Up to date, resumable or to run, from the stage folder's manifest.
fn state_of(dir: &Path, fp: &str) -> State {
    let Some(m) = Manifest::read(dir).ok().flatten() else {
        return State::Run("new");
    };
    if m.fingerprint != fp {
        return State::Run("inputs changed");
    }
    match m.status {
        Status::Completed => State::UpToDate,
        _ => match ladder_train::checkpoint::find(dir) {
            Ok(ck) => State::Resume(ck),
            Err(_) => State::Run("interrupted before its first checkpoint"),
        },
    }
}

/// Stage levels by name, for reports.
pub fn levels(plan: &StartPlan) -> BTreeMap<String, Option<u32>> {
    plan.stages.iter().map(|s| (s.name.clone(), s.level)).collect()
}

