//! `ladder run`: executes a plan. The `local` executor runs one stage at a time in this process
//! (each with its own progress bar); the `slurm` executor submits one `sbatch` job per stage
//! that runs `ladder run RECIPE --only START/STAGE --executor local`, chained with
//! `--dependency=afterok`. Either way a stage writes `manifest.json` when it starts and when it
//! ends, so an interrupted stage continues from its latest checkpoint on the next run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::error::{io, RecipeError, Result};
use crate::manifest::{now, Manifest, Status};
use crate::plan::{self, Plan, PlannedStage, StartPlan, State, Work};
use crate::schema::RecipeSource;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Executor {
    #[default]
    Local,
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

fn check_selectors(plan: &Plan, sels: &[String]) -> Result<()> {
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

/// Plans and runs (or submits) a recipe, once per seed when it has `seeds`.
pub fn run(src: &RecipeSource, opts: &RunOptions) -> Result<Vec<Outcome>> {
    if let Some(seeds) = crate::seeds::requested(src, opts.seeds.as_deref())? {
        return crate::seeds::run(src, opts, &seeds);
    }
    let plan = plan::plan(src, opts.output.as_deref())?;
    run_plan(&plan, src, opts)
}

/// Runs (or submits) one planned run folder.
pub(crate) fn run_plan(plan: &Plan, src: &RecipeSource, opts: &RunOptions) -> Result<Vec<Outcome>> {
    check_selectors(plan, &opts.force)?;
    check_selectors(plan, &opts.from)?;
    check_selectors(plan, &opts.only)?;
    write_run_json(plan)?;
    match opts.executor {
        Executor::Local => run_local(plan, opts),
        Executor::Slurm => crate::slurm::submit(plan, src, opts),
    }
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

fn run_local(plan: &Plan, opts: &RunOptions) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for start in &plan.starts {
        let (selected, forced) = selection(start, opts);
        let mut failed: HashSet<String> = HashSet::new();
        for st in &start.stages {
            let outcome = |action: &str, detail: Option<String>| Outcome {
                seed: None,
                start: start.name.clone(),
                stage: st.name.clone(),
                action: action.into(),
                detail,
            };
            if !selected.contains(&st.name) {
                outcomes.push(outcome("not-selected", None));
                continue;
            }
            if st.parents.iter().any(|p| failed.contains(p)) {
                failed.insert(st.name.clone());
                outcomes.push(outcome("not-run", Some("a parent failed".into())));
                continue;
            }
            let force = forced.contains(&st.name);
            if st.state == State::UpToDate && !force {
                eprintln!("[{}/{}] up to date, skipped", start.name, st.name);
                outcomes.push(outcome("skipped", None));
                continue;
            }
            for p in &st.parents {
                let parent = start.stages.iter().find(|s| &s.name == p).expect("planned parent");
                let done = Manifest::read(&parent.dir)?
                    .is_some_and(|m| m.status == Status::Completed && m.fingerprint == parent.fingerprint);
                if !done {
                    return Err(RecipeError::ParentIncomplete { start: start.name.clone(), stage: st.name.clone(), parent: p.clone() });
                }
            }
            let resume = match (&st.state, force) {
                (State::Resume(ck), false) => Some(ck.clone()),
                _ => None,
            };
            match execute(plan, start, st, resume.clone()) {
                Ok(_) => outcomes.push(outcome(if resume.is_some() { "resumed" } else { "ran" }, None)),
                Err(e) => {
                    eprintln!("[{}/{}] failed: {e}", start.name, st.name);
                    failed.insert(st.name.clone());
                    failures.push(e.to_string());
                    outcomes.push(outcome("failed", Some(e.to_string())));
                }
            }
        }
    }
    if failures.is_empty() { Ok(outcomes) } else { Err(RecipeError::Failed(failures)) }
}

/// Runs one stage: a fresh folder (or the interrupted one when resuming), manifest `running`,
/// the work, manifest `completed` or `failed`.
pub fn execute(plan: &Plan, start: &StartPlan, st: &PlannedStage, resume: Option<PathBuf>) -> Result<Value> {
    if resume.is_none() && st.dir.exists() {
        std::fs::remove_dir_all(&st.dir).map_err(io(&st.dir))?;
    }
    std::fs::create_dir_all(&st.dir).map_err(io(&st.dir))?;
    let mut manifest = Manifest {
        recipe: plan.name.clone(),
        start: start.name.clone(),
        stage: st.name.clone(),
        kind: st.kind,
        from: st.from.clone(),
        level: st.level,
        status: Status::Running,
        fingerprint: st.fingerprint.clone(),
        inputs: st.inputs.clone(),
        config: st.work.config(),
        metrics: None,
        executor: if std::env::var_os("SLURM_JOB_ID").is_some() { "slurm".into() } else { "local".into() },
        started_at: now(),
        finished_at: None,
        duration_s: None,
        resumed_from: resume.clone(),
        error: None,
        slurm_job_id: std::env::var("SLURM_JOB_ID").ok(),
    };
    manifest.write(&st.dir)?;
    let what = match &resume {
        Some(ck) => format!("resuming from {}", ck.display()),
        None => "running".into(),
    };
    eprintln!("[{}/{}] {} {what}", start.name, st.name, st.kind.as_str());
    let t0 = Instant::now();
    let result = st.work.execute(&start.name, &st.name, resume);
    manifest.finished_at = Some(now());
    manifest.duration_s = Some(t0.elapsed().as_secs_f64());
    match result {
        Ok(metrics) => {
            manifest.status = Status::Completed;
            manifest.metrics = Some(metrics.clone());
            manifest.write(&st.dir)?;
            Ok(metrics)
        }
        Err(e) => {
            manifest.status = Status::Failed;
            manifest.error = Some(e.to_string());
            manifest.write(&st.dir)?;
            Err(e)
        }
    }
}

impl Work {
    /// Does the stage's work and returns its metrics.
    pub fn execute(&self, start: &str, stage: &str, resume: Option<PathBuf>) -> Result<Value> {
        let train = |source| RecipeError::Train { start: start.into(), stage: stage.into(), source: Box::new(source) };
        match self {
            Work::Sft(job) => {
                let mut job = job.clone();
                job.stage.resume = resume;
                let report = ladder_train::sft::run(&job).map_err(train)?;
                Ok(serde_json::to_value(report).expect("serialisable"))
            }
            Work::Dpo(job) => {
                let mut job = job.clone();
                job.stage.resume = resume;
                let report = ladder_train::dpo::run(&job).map_err(train)?;
                Ok(serde_json::to_value(report).expect("serialisable"))
            }
            Work::Merge(job) => {
                ladder_train::setup::merge(&job.model, &job.adapter, &job.out).map_err(train)?;
                Ok(json!({"out": job.out, "merged_adapter": job.adapter}))
            }
            Work::Pairs(job) => {
                let data = single(&job.data, start, stage)?;
                let generate = ladder_model::GenerateConfig {
                    max_new_tokens: job.max_new_tokens,
                    temperature: job.temperature,
                    seed: job.seed,
                    ..Default::default()
                };
                let summary = ladder_train::pairs::run(&ladder_train::pairs::PairsJob {
                    model: job.model.clone(),
                    adapter: job.adapter.clone(),
                    data,
                    out: job.out.join("pairs.jsonl"),
                    device: "cpu".into(),
                    samples: job.samples,
                    generate,
                    batch_size: 8,
                    detector: Default::default(),
                    min_score: None,
                    synthetic_fallback: true,
                    max_pairs_per_prompt: 1,
                })
                .map_err(train)?;
                Ok(serde_json::to_value(summary).expect("serialisable"))
            }
            Work::Eval(job) => {
                let path = job.out.join("eval.json");
                let report = match &job.predictions {
                    Some(pred) => {
                        let opts = ladder_eval::EvalOptions {
                            throughput: job.pages_per_s.map(|pages_per_s| ladder_eval::Throughput { pages_per_s, output_tokens_per_s: None }),
                            price_per_hour: job.price_per_hour.filter(|_| job.pages_per_s.is_some()),
                            ..Default::default()
                        };
                        let report = ladder_eval::score_predictions(pred, &opts)
                            .map_err(|source| RecipeError::Eval { start: start.into(), stage: stage.into(), source: Box::new(source) })?;
                        ladder_model::write_atomic(&path, &serde_json::to_vec_pretty(&report).expect("serialisable"))
                            .map_err(|e| RecipeError::Manifest { path: path.clone(), message: e.to_string() })?;
                        report
                    }
                    None => ladder_train::evaluate::run(&ladder_train::evaluate::EvalJob {
                        model: job.model.clone(),
                        adapter: job.adapter.clone(),
                        data: single(&job.data, start, stage)?,
                        out: path.clone(),
                        device: "cpu".into(),
                        generate: ladder_model::GenerateConfig { max_new_tokens: job.max_new_tokens, ..Default::default() },
                        batch_size: 8,
                        price_per_hour: job.price_per_hour,
                        detector: Default::default(),
                    })
                    .map_err(train)?,
                };
                Ok(json!({"eval": path, "aggregate": report.aggregate}))
            }
        }
    }
}

/// The one data file of a `pairs` or generating `eval` stage.
fn single(data: &[PathBuf], start: &str, stage: &str) -> Result<PathBuf> {
    match data {
        [one] => Ok(one.clone()),
        _ => Err(RecipeError::Train {
            start: start.into(),
            stage: stage.into(),
            source: Box::new(ladder_train::TrainError::Invalid(format!(
                "this stage takes one `data` file, got {}; concatenate them first",
                data.len()
            ))),
        }),
    }
}

/// `run.json`: the run's stages in order, for `ladder status` and `ladder compare`.
fn write_run_json(plan: &Plan) -> Result<()> {
    std::fs::create_dir_all(&plan.run_dir).map_err(io(&plan.run_dir))?;
    let starts: Vec<Value> = plan
        .starts
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "model": s.model,
                "level": s.level,
                "stages": s.stages.iter().map(|st| json!({
                    "name": st.name, "kind": st.kind.as_str(), "from": st.from, "level": st.level, "parents": st.parents,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = json!({"recipe": plan.name, "file": plan.file, "starts": starts});
    let path = plan.run_dir.join("run.json");
    ladder_model::write_atomic(&path, &serde_json::to_vec_pretty(&v).expect("serialisable"))
        .map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
