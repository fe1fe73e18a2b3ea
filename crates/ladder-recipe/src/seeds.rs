//! Seeds as an axis of a run. `seeds = [1, 2, 3]` in a recipe, or `ladder run --seeds 1,2,3`,
//! plans and runs the whole recipe once per seed, seed N into `<output>/<name>/seed-N/` with the
//! usual `<start>/<stage>` layout below it, each skipping what is up to date. Seed N is the
//! recipe's `seed` for that run, so every stage that draws (data order, initialisation,
//! dropout, sampling) draws differently per seed, while an eval that decodes greedily scores
//! the same model the same way. `<output>/<name>/run.json` lists the seeds, so that
//! `ladder status` and `ladder compare` find the seed folders; without seeds the layout is the
//! single run of [`crate::run`].

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{io, Problem, RecipeError, Result};
use crate::plan::{self, Plan};
use crate::run::run_plan;
use crate::select::{Outcome, RunOptions};
use crate::schema::RecipeSource;

/// The folder of seed `seed` in a run folder.
pub fn folder(seed: u64) -> String {
    format!("seed-{seed}")
}

/// The seeds a run covers (`--seeds` over the recipe's `seeds`), or `None` for one run in the
/// single-run layout. Refuses an empty or repeated list, and a `seed` that would pin what the
/// seeds vary: in `[defaults]`, in a stage, or at the top level beside `seeds`.
pub fn requested(src: &RecipeSource, cli: Option<&[u64]>) -> Result<Option<Vec<u64>>> {
    let r = &src.recipe;
    let (seeds, from_cli) = match (cli, &r.seeds) {
        (Some(s), _) => (s.to_vec(), true),
        (None, Some(s)) => (s.clone(), false),
        (None, None) => return Ok(None),
    };
    let mut problems = Vec::new();
    let mut problem = |(line, column): (usize, usize), message: String| {
        problems.push(Problem { file: src.file.clone(), line, column, message });
    };
    let seeds_at = src.locator.key("", 0, "seeds");
    let named = if from_cli { "--seeds" } else { "seeds" };
    if seeds.is_empty() {
        problem(seeds_at, format!("{named} is empty: give at least one seed, or drop it for a single run with `seed`"));
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        problem(seeds_at, format!("{named} lists seed {} twice", w[0]));
    }
    // The top-level `seed` has a default: only the text tells whether it was written.
    let seed_written = src.text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("seed"));
    if !from_cli && seed_written {
        problem(src.locator.key("", 0, "seed"), "give `seed` (one run) or `seeds` (one run per seed), not both".into());
    }
    if r.defaults.contains_key("seed") {
        problem(src.locator.key("defaults", 0, "seed"), format!("[defaults]: `seed` would give every seed's run the same seed; drop it, {named} sets each run's seed"));
    }
    for (i, st) in r.stage.iter().enumerate() {
        if st.options.contains_key("seed") {
            problem(src.locator.key("stage", i, "seed"), format!("stage `{}`: `seed` would give every seed's run the same seed; drop it, {named} sets each run's seed", st.name));
        }
    }
    if problems.is_empty() { Ok(Some(seeds)) } else { Err(RecipeError::Invalid(problems)) }
}

/// One plan per seed, each into its seed folder; every plan is checked before any stage runs.
pub fn plans(src: &RecipeSource, output: Option<&Path>, seeds: &[u64]) -> Result<Vec<(u64, Plan)>> {
    let root = plan::run_dir(src, output);
    seeds
        .iter()
        .map(|&seed| {
            let mut seeded = src.clone();
            seeded.recipe.seed = seed;
            Ok((seed, plan::plan_in(&seeded, output, root.join(folder(seed)))?))
        })
        .collect()
}

/// `ladder plan`'s text: the plan of each seed's run, or the single run's plan.
pub fn describe(src: &RecipeSource, output: Option<&Path>) -> Result<String> {
    match requested(src, None)? {
        None => Ok(plan::plan(src, output)?.describe()),
        Some(seeds) => Ok(plans(src, output, &seeds)?.iter().map(|(seed, p)| format!("seed {seed}: {}", p.describe())).collect()),
    }
}

/// Runs (or submits) every seed's plan in turn. A seed whose stages fail does not stop the
/// others; the failures are reported together at the end.
pub fn run(src: &RecipeSource, opts: &RunOptions, seeds: &[u64]) -> Result<Vec<Outcome>> {
    let plans = plans(src, opts.output.as_deref(), seeds)?;
    write_seeds_json(src, &plan::run_dir(src, opts.output.as_deref()), seeds)?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (seed, plan) in &plans {
        eprintln!("[{}] seed {seed} of {:?}", folder(*seed), seeds);
        let opts = RunOptions { seeds: Some(vec![*seed]), ..opts.clone() };
        match run_plan(plan, src, &opts) {
            Ok(o) => outcomes.extend(o.into_iter().map(|o| Outcome { seed: Some(*seed), ..o })),
            Err(RecipeError::Failed(f)) => failures.extend(f.into_iter().map(|e| format!("{}: {e}", folder(*seed)))),
            Err(e) => return Err(e),
        }
    }
    if failures.is_empty() { Ok(outcomes) } else { Err(RecipeError::Failed(failures)) }
}

/// `<run folder>/run.json` of a seeded run: the recipe and every seed run into this folder
/// (those of earlier runs too: a Slurm job runs one seed, and must not hide the others).
fn write_seeds_json(src: &RecipeSource, run_dir: &Path, seeds: &[u64]) -> Result<()> {
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let path = run_dir.join("run.json");
    let mut all: Vec<u64> = read_json(&path).ok().map(|v| seed_list(&v)).unwrap_or_default();
    all.extend_from_slice(seeds);
    all.sort_unstable();
    all.dedup();
    let v = json!({"recipe": src.recipe.name, "file": src.file, "seeds": all});
    ladder_model::write_atomic(&path, &serde_json::to_vec_pretty(&v).expect("serialisable"))
        .map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RecipeError::Manifest { path: path.to_path_buf(), message: e.to_string() })
}

fn seed_list(run_json: &Value) -> Vec<u64> {
    run_json["seeds"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// The runs in a run folder: `(Some(seed), seed folder)` for each seed of a seeded run, else
/// `(None, run_dir)`. A listed seed whose folder is missing is left out.
pub fn runs_in(run_dir: &Path) -> Result<Vec<(Option<u64>, PathBuf)>> {
    let path = run_dir.join("run.json");
    if !path.is_file() {
        return Err(RecipeError::Manifest {
            path,
            message: "no run.json: not a run folder (`ladder run RECIPE` makes <output>/<recipe name>/)".into(),
        });
    }
    let v = read_json(&path)?;
    if v.get("seeds").is_none() {
        return Ok(vec![(None, run_dir.to_path_buf())]);
    }
    Ok(seed_list(&v)
        .into_iter()
        .map(|s| (Some(s), run_dir.join(folder(s))))
        .filter(|(_, d)| d.join("run.json").is_file())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = "name = \"r\"\nseeds = [1, 2]\n[[start]]\nname = \"a\"\nmodel = \"m\"\n\n[[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\n";

    fn src(text: &str) -> RecipeSource {
        crate::schema::parse(Path::new("r.toml"), text).unwrap()
    }

    #[test]
    fn seeds_come_from_the_flag_before_the_recipe() {
        assert_eq!(requested(&src(RECIPE), None).unwrap(), Some(vec![1, 2]));
        assert_eq!(requested(&src(RECIPE), Some(&[7])).unwrap(), Some(vec![7]));
        assert_eq!(requested(&src(&RECIPE.replace("seeds = [1, 2]\n", "")), None).unwrap(), None);
    }

    #[test]
    fn pinned_or_repeated_seeds_are_refused_at_their_key() {
        let err = |text: &str, cli: Option<&[u64]>| requested(&src(text), cli).unwrap_err().to_string();
        let e = err(&RECIPE.replace("[1, 2]", "[3, 3]"), None);
        assert!(e.contains("r.toml:2:1: seeds lists seed 3 twice"), "{e}");
        let e = err(RECIPE, Some(&[]));
        assert!(e.contains("--seeds is empty"), "{e}");
        let e = err(&RECIPE.replace("from = \"start\"\n", "from = \"start\"\nseed = 5\n"), None);
        assert!(e.contains("r.toml:11:1: stage `sft`: `seed` would give every seed's run the same seed"), "{e}");
        let e = err(&RECIPE.replace("name = \"r\"\n", "name = \"r\"\nseed = 4\n"), None);
        assert!(e.contains("r.toml:2:1: give `seed` (one run) or `seeds`"), "{e}");
    }

    #[test]
    fn a_seeded_run_folder_lists_its_seed_folders() {
        let dir = tempfile::tempdir().unwrap();
        let s = src(RECIPE);
        write_seeds_json(&s, dir.path(), &[2, 1]).unwrap();
        write_seeds_json(&s, dir.path(), &[3]).unwrap();
        for seed in [1, 3] {
            std::fs::create_dir_all(dir.path().join(folder(seed))).unwrap();
            std::fs::write(dir.path().join(folder(seed)).join("run.json"), "{}").unwrap();
        }
        let runs = runs_in(dir.path()).unwrap();
        assert_eq!(runs, vec![(Some(1), dir.path().join("seed-1")), (Some(3), dir.path().join("seed-3"))], "seed 2 has no folder");
        let single = tempfile::tempdir().unwrap();
        std::fs::write(single.path().join("run.json"), "{\"starts\": []}").unwrap();
        assert_eq!(runs_in(single.path()).unwrap(), vec![(None, single.path().to_path_buf())]);
        assert!(runs_in(&single.path().join("nope")).unwrap_err().to_string().contains("not a run folder"));
    }
}
