//! `ladder run`: executes a plan. The `local` executor runs one stage at a time in this process
//! (each with its own progress bar); the `slurm` executor submits one `sbatch` job per stage
//! that runs `ladder run RECIPE --only START/STAGE --executor local`, chained with
//! `--dependency=afterok`. Either way a stage writes `manifest.json` when it starts and when it
//! ends, so an interrupted stage continues from its latest checkpoint on the next run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use crate::error::{io, RecipeError, Result};
use crate::manifest::{now, Manifest, Status};
use crate::plan::{self, Plan, PlannedStage, StartPlan, State, Work};
use crate::select::{check_selectors, selection, Executor, Outcome, RunOptions};
use crate::schema::RecipeSource;

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
    for selectors in [&opts.force, &opts.from, &opts.only] {
        check_selectors(plan, selectors)?;
    }
    write_run_json(plan)?;
    match opts.executor {
        Executor::Local => run_local(plan, opts),
        Executor::Slurm => crate::slurm::submit(plan, src, opts),
    }
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
            // A stage on several processes: this process launches them (`mpirun`) and waits;
            // inside, every rank runs the stage (see `execute`).
            let result = if st.launch.ranks() > 1 && ladder_train::dist::world().size() == 1 {
                launch_local(plan, start, st, force, opts.seeds.as_deref())
            } else {
                execute(plan, start, st, resume.clone())
            };
            match result {
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

/// Runs stage `st` on `processes` ranks: `mpirun -np N --bind-to none` starts this binary on
/// that one stage (`run RECIPE --only START/STAGE`) and waits. `LADDER_MPIRUN_ARGS` adds
/// arguments (e.g. `--mca btl tcp,self` on a machine without shared memory); as root,
/// `--allow-run-as-root` is added. Exit 75 is the stage's resumable interruption.
fn launch_local(plan: &Plan, start: &StartPlan, st: &PlannedStage, force: bool, seeds: Option<&[u64]>) -> Result<Value> {
    use std::os::unix::fs::MetadataExt;
    let failed = |message: String| RecipeError::Train {
        start: start.name.clone(),
        stage: st.name.clone(),
        source: Box::new(ladder_train::TrainError::Invalid(message)),
    };
    if !crate::slurm::on_path("mpirun") {
        return Err(failed(format!("processes = {} needs OpenMPI's mpirun on PATH", st.launch.ranks())));
    }
    let exe = std::env::current_exe().map_err(|e| failed(format!("cannot find this ladder binary to launch: {e}")))?;
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["-np", &st.launch.ranks().to_string(), "--bind-to", "none"]);
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        cmd.arg("--allow-run-as-root");
    }
    if let Ok(extra) = std::env::var("LADDER_MPIRUN_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let selector = format!("{}/{}", start.name, st.name);
    cmd.arg(&exe).arg("run").arg(plan::absolute(&plan.file)).arg("--output").arg(plan::absolute(&plan.output));
    cmd.args(["--only", &selector, "--executor", "local"]);
    if force {
        cmd.args(["--force", &selector]);
    }
    // One seed's run of a seeded recipe: that seed's folder.
    if let Some([seed]) = seeds {
        cmd.args(["--seeds", &seed.to_string()]);
    }
    eprintln!("[{selector}] {} on {} processes (mpirun)", st.kind().as_str(), st.launch.ranks());
    let status = cmd.status().map_err(|e| failed(format!("mpirun: {e}")))?;
    let manifest = Manifest::read(&st.dir)?;
    match manifest {
        Some(m) if status.success() && m.status == Status::Completed && m.fingerprint == st.fingerprint => Ok(m.metrics.unwrap_or(Value::Null)),
        Some(m) if m.error.is_some() => Err(failed(m.error.unwrap_or_default())),
        _ => Err(failed(format!("mpirun exited with {status}"))),
    }
}

/// Runs one stage: a fresh folder (or the interrupted one when resuming), manifest `running`,
/// the work, manifest `completed` or `failed`. With several processes every rank does the work
/// and rank 0 alone touches the folder and the manifest.
pub fn execute(plan: &Plan, start: &StartPlan, st: &PlannedStage, resume: Option<PathBuf>) -> Result<Value> {
    let root = ladder_train::dist::world().is_root();
    if !root {
        return st.work.execute(&start.name, &st.name, resume);
    }
    if resume.is_none() && st.dir.exists() {
        std::fs::remove_dir_all(&st.dir).map_err(io(&st.dir))?;
    }
    std::fs::create_dir_all(&st.dir).map_err(io(&st.dir))?;
    let mut manifest = Manifest {
        recipe: plan.name.clone(),
        start: start.name.clone(),
        stage: st.name.clone(),
        kind: st.kind(),
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
    eprintln!("[{}/{}] {} {what}", start.name, st.name, st.kind().as_str());
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
                ladder_train::merge::run(&job.model, &job.adapter, &job.out, job.overwrite).map_err(train)?;
                Ok(json!({"out": job.out, "merged_adapter": job.adapter}))
            }
            Work::Pairs(job) => {
                let summary = ladder_train::pairs::run(job).map_err(train)?;
                Ok(serde_json::to_value(summary).expect("serialisable"))
            }
            Work::Eval(job) => {
                let report = ladder_train::evaluate::run(job).map_err(train)?;
                Ok(json!({"eval": job.out, "aggregate": report.aggregate}))
            }
        }
    }
}

/// `run.json`: the run's stages in order, for `ladder status` and `ladder compare`.
fn write_run_json(plan: &Plan) -> Result<()> {
    if !ladder_train::dist::world().is_root() {
        return Ok(());
    }
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
                    "name": st.name, "kind": st.kind().as_str(), "from": st.from, "level": st.level, "parents": st.parents,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = json!({"recipe": plan.name, "file": plan.file, "starts": starts});
    let path = plan.run_dir.join("run.json");
    ladder_model::write_atomic(&path, &serde_json::to_vec_pretty(&v).expect("serialisable"))
        .map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
}
