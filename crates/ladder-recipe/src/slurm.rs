//! The Slurm executor: one `sbatch` job per stage that must run, each invoking this `ladder`
//! binary on that one stage (`ladder run RECIPE --only START/STAGE --executor local`), chained
//! along the DAG with `--dependency=afterok:<ids>`; each start is an independent chain.
//!
//! Near the time limit Slurm signals the batch shell (`--signal=B:USR1@120`: the `B:` sends it
//! to the script itself, which has no job steps to forward it to); the script requeues the job
//! (`--requeue`), and the next attempt resumes from the stage's latest checkpoint.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::error::{io, RecipeError, Result};
use crate::plan::{Plan, PlannedStage, State};
use crate::plan::absolute;
use crate::select::{selection, Outcome, RunOptions};
use crate::schema::RecipeSource;

/// Whether a program is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The batch script of one stage; `seed` is the seed's run it belongs to ([`crate::seeds`]).
pub fn script(plan: &Plan, recipe: &Path, start: &str, st: &PlannedStage, seed: Option<u64>) -> String {
    let exe = std::env::current_exe().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "ladder".into());
    let cwd = std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| ".".into());
    let logs = absolute(&plan.run_dir.join("slurm"));
    let s = &plan.slurm;
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=ladder-{}-{}{}-{}", plan.name, seed.map(|s| format!("seed-{s}-")).unwrap_or_default(), start, st.name),
        format!("#SBATCH --output={}/{}.{}-%j.out", logs.display(), start, st.name),
        "#SBATCH --open-mode=append".into(),
        "#SBATCH --signal=B:USR1@120".into(),
        "#SBATCH --requeue".into(),
    ];
    if let Some(p) = &s.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if let Some(g) = s.gpus {
        lines.push(format!("#SBATCH --gpus={g}"));
    }
    if let Some(c) = s.cpus {
        lines.push(format!("#SBATCH --cpus-per-task={c}"));
    }
    if let Some(m) = &s.mem {
        lines.push(format!("#SBATCH --mem={m}"));
    }
    if let Some(t) = &s.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    // A data-parallel stage: its ranks are the job's tasks, started by `srun --mpi=pmix`.
    let l = &st.launch;
    let parallel = l.ranks() > 1;
    match (l.processes, l.nodes, l.tasks_per_node) {
        (Some(n), _, _) if n > 1 => lines.push(format!("#SBATCH --ntasks={n}")),
        (_, nodes, tasks) if parallel || nodes.is_some() => {
            lines.push(format!("#SBATCH --nodes={}", nodes.unwrap_or(1)));
            lines.push(format!("#SBATCH --ntasks-per-node={}", tasks.unwrap_or(1)));
        }
        _ => {}
    }
    if let Some(g) = l.gpus_per_node {
        lines.push(format!("#SBATCH --gpus-per-node={g}"));
    }
    lines.extend(s.extra.iter().cloned());
    lines.push(format!("cd {}", sh(&cwd)));
    lines.push(
        "trap 'echo \"ladder: time limit near, requeueing $SLURM_JOB_ID\"; scontrol requeue \"$SLURM_JOB_ID\"; kill -TERM \"$child\" 2>/dev/null' USR1"
            .into(),
    );
    lines.push(format!(
        "{}{} run {} --output {} --only {}{} --executor local &",
        if parallel { "srun --mpi=pmix " } else { "" },
        sh(&exe),
        sh(&absolute(recipe).to_string_lossy()),
        sh(&absolute(&plan.output).to_string_lossy()),
        sh(&format!("{start}/{}", st.name)),
        seed.map(|s| format!(" --seeds {s}")).unwrap_or_default(),
    ));
    lines.push("child=$!".into());
    lines.push("wait \"$child\"".into());
    lines.join("\n") + "\n"
}

fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Submits every stage that must run; prints and returns the job ids.
pub fn submit(plan: &Plan, src: &RecipeSource, opts: &RunOptions) -> Result<Vec<Outcome>> {
    if !on_path("sbatch") {
        return Err(RecipeError::Slurm("sbatch is not on PATH".into()));
    }
    let dir = plan.run_dir.join("slurm");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // A seed's run (crate::seeds) is planned with that one seed; its jobs run that seed only.
    let seed = match opts.seeds.as_deref() {
        Some([one]) => Some(*one),
        _ => None,
    };
    let mut outcomes = Vec::new();
    let mut jobs = Vec::new();
    for start in &plan.starts {
        let (selected, forced) = selection(start, opts);
        let mut ids: HashMap<&str, String> = HashMap::new();
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
            if st.state == State::UpToDate && !forced.contains(&st.name) {
                outcomes.push(outcome("skipped", None));
                continue;
            }
            if forced.contains(&st.name) && st.dir.exists() {
                // The job itself cannot tell a forced re-run from a finished stage.
                std::fs::remove_dir_all(&st.dir).map_err(io(&st.dir))?;
            }
            let path = dir.join(format!("{}.{}.sh", start.name, st.name));
            std::fs::write(&path, script(plan, &src.file, &start.name, st, seed)).map_err(io(&path))?;
            let deps: Vec<&str> = st.parents.iter().filter_map(|p| ids.get(p.as_str()).map(String::as_str)).collect();
            let mut cmd = Command::new("sbatch");
            cmd.arg("--parsable");
            if !deps.is_empty() {
                cmd.arg(format!("--dependency=afterok:{}", deps.join(":")));
            }
            cmd.arg(&path);
            let out = cmd.output().map_err(|e| RecipeError::Slurm(format!("running sbatch: {e}")))?;
            if !out.status.success() {
                return Err(RecipeError::Slurm(format!(
                    "sbatch {} failed: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
            println!("{}/{}: submitted job {id}", start.name, st.name);
            jobs.push(json!({"start": start.name, "stage": st.name, "job_id": id, "script": path}));
            ids.insert(&st.name, id.clone());
            outcomes.push(outcome("submitted", Some(id)));
        }
    }
    let path = dir.join("jobs.json");
    let mut all: Vec<serde_json::Value> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    all.extend(jobs);
    std::fs::write(&path, serde_json::to_vec_pretty(&all).expect("serialisable")).map_err(io(&path))?;
    Ok(outcomes)
}

/// Job states by id from `squeue`, then `sacct` for jobs no longer queued (when available).
pub fn job_states(ids: &[String]) -> HashMap<String, String> {
    let mut states = HashMap::new();
    if ids.is_empty() {
        return states;
    }
    let list = ids.join(",");
    if on_path("squeue") {
        if let Ok(out) = Command::new("squeue").args(["-h", "-o", "%i %T", "-j", &list]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((id, st)) = line.trim().split_once(' ') {
                    states.insert(id.to_string(), st.to_string());
                }
            }
        }
    }
    if on_path("sacct") {
        if let Ok(out) = Command::new("sacct").args(["-n", "-P", "-X", "-o", "JobID,State", "-j", &list]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((id, st)) = line.trim().split_once('|') {
                    states.entry(id.to_string()).or_insert_with(|| st.to_string());
                }
            }
        }
    }
    states
}
