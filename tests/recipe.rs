//! `ladder validate / plan / run / status / compare` end to end on the tiny fixtures: shipped
//! recipes validate, a three-stage recipe (sft → dpo → merge) runs, re-runs skip, an edit
//! re-runs only what it touches, a killed run continues, and Slurm matches the local executor.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `ladder ARGS` run from the repository root (where recipes' relative paths point).
fn ladder_at_root(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ladder"))
        .args(args)
        .current_dir(root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn ladder");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn shipped_recipes_validate_and_plan() {
    for name in ["two-level", "three-level"] {
        let path = format!("recipes/{name}.toml");
        let (ok, stdout, stderr) = ladder_at_root(&["validate", &path]);
        assert!(ok, "{path}: {stderr}");
        assert!(stdout.contains("ok"), "{stdout}");
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        assert!(text.starts_with('#') && text.contains(&format!("ladder run {path}")), "{path} must open with its command");
        let dir = tempfile::tempdir().unwrap();
        let (ok, plan, stderr) = ladder_at_root(&["plan", &path, "--output", dir.path().to_str().unwrap()]);
        assert!(ok, "{stderr}");
        assert!(plan.contains("would run (new)"), "{plan}");
    }
}

/// A recipe with `seeds` plans one run folder per seed; a repeated seed is refused with its
/// line, by `validate` as by `run`.
#[test]
fn seeded_recipe_plans_each_seed_and_refuses_a_repeated_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, plan, stderr) = ladder_at_root(&["plan", "recipes/demo.toml", "--output", dir.path().to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for seed in 1..=3 {
        assert!(plan.contains(&format!("seed {seed}: recipe demo → {}", dir.path().join(format!("demo/seed-{seed}")).display())), "{plan}");
    }
    let text = std::fs::read_to_string(root().join("recipes/demo.toml")).unwrap().replace("seeds = [1, 2, 3]", "seeds = [1, 2, 2]");
    let recipe = dir.path().join("demo.toml");
    std::fs::write(&recipe, text).unwrap();
    for cmd in ["validate", "run"] {
        let (ok, _, stderr) = ladder_at_root(&[cmd, recipe.to_str().unwrap(), "--output", dir.path().to_str().unwrap()][..if cmd == "run" { 4 } else { 2 }]);
        assert!(!ok && stderr.contains(&format!("{}:16:1: seeds lists seed 2 twice", recipe.display())), "{cmd}: {stderr}");
    }
    assert!(!dir.path().join("demo").exists(), "nothing runs");
}

/// sft → dpo → merge on qwen2-tiny, a few steps each.
fn three_stage(dpo_lr: &str, save_every: usize, sft_steps: usize) -> String {
    format!(
        r#"# sft → dpo → merge on the tiny fixture. Run: ladder run recipe.toml
name = "tiny"
seed = 3

[[start]]
name = "qwen"
model = "{model}"

[defaults]
lora_r = 4
batch_size = 2
lr_scheduler = "constant"
save_every = {save_every}

[[stage]]
name = "sft"
kind = "sft"
from = "start"
level = 2
data = "{sft}"
lr = 1e-2
max_steps = {sft_steps}

[[stage]]
name = "dpo"
kind = "dpo"
from = "sft"
level = 2
pairs = "{dpo}"
reference = "precomputed"
lr = {dpo_lr}
max_steps = 2

[[stage]]
name = "merged"
kind = "merge"
from = "dpo"
"#,
        model = fixture("qwen2-tiny"),
        sft = fixture("data/sft.jsonl"),
        dpo = fixture("data/dpo.jsonl"),
    )
}

fn run_recipe(recipe: &Path, out: &Path, extra: &[&str]) -> String {
    let (r, o) = (recipe.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["run", r, "--output", o];
    args.extend(extra);
    String::from_utf8_lossy(&ladder(&args).stdout).into_owned()
}

fn manifest(out: &Path, stage: &str) -> Value {
    read_json(out.join("tiny").join("qwen").join(stage).join("manifest.json"))
}

#[test]
fn three_stage_recipe_runs_skips_and_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = (dir.path().join("recipe.toml"), dir.path().join("runs"));
    std::fs::write(&recipe, three_stage("1e-3", 100, 4)).unwrap();
    let first = run_recipe(&recipe, &out, &[]);
    for stage in ["sft", "dpo", "merged"] {
        assert!(first.contains(&format!("qwen/{stage}: ran")), "{first}");
        let m = manifest(&out, stage);
        assert_eq!(m["status"], "completed", "{stage}: {m}");
        assert_eq!(m["fingerprint"].as_str().unwrap().len(), 64);
        assert!(m["duration_s"].as_f64().unwrap() > 0.0);
    }
    let run = out.join("tiny/qwen");
    assert!(run.join("sft/adapter_model.safetensors").exists());
    assert!(run.join("dpo/adapter_model.safetensors").exists());
    assert!(run.join("merged/model.safetensors").exists());
    assert_eq!(manifest(&out, "sft")["metrics"]["summary"]["steps"], 4);
    // DPO continued the SFT adapter, against the SFT model as the reference.
    let dpo = manifest(&out, "dpo");
    assert_eq!(dpo["config"]["adapter"].as_str().unwrap(), run.join("sft").to_str().unwrap());
    assert_eq!(dpo["config"]["reference"], "precomputed");

    let second = run_recipe(&recipe, &out, &[]);
    for stage in ["sft", "dpo", "merged"] {
        assert!(second.contains(&format!("qwen/{stage}: skipped")), "{second}");
    }
    let sft_fp = manifest(&out, "sft")["fingerprint"].clone();
    let dpo_fp = manifest(&out, "dpo")["fingerprint"].clone();

    std::fs::write(&recipe, three_stage("2e-3", 100, 4)).unwrap();
    let third = run_recipe(&recipe, &out, &[]);
    assert!(third.contains("qwen/sft: skipped"), "{third}");
    assert!(third.contains("qwen/dpo: ran") && third.contains("qwen/merged: ran"), "{third}");
    assert_eq!(manifest(&out, "sft")["fingerprint"], sft_fp);
    assert_ne!(manifest(&out, "dpo")["fingerprint"], dpo_fp);
    assert_eq!(manifest(&out, "dpo")["config"]["train"]["lr"], 2e-3);

    let forced = run_recipe(&recipe, &out, &["--force", "merged"]);
    assert!(forced.contains("qwen/dpo: skipped") && forced.contains("qwen/merged: ran"), "{forced}");

    let status = String::from_utf8_lossy(&ladder(&["status", out.join("tiny").to_str().unwrap()]).stdout).into_owned();
    assert_eq!(status.matches("completed").count(), 3, "{status}");
    let compare = String::from_utf8_lossy(&ladder(&["compare", out.join("tiny").to_str().unwrap()]).stdout).into_owned();
    assert!(compare.contains("| qwen | 2 | dpo |"), "{compare}");
    for f in ["report.html", "report.md", "report.json", "chart.svg"] {
        assert!(out.join("tiny").join(f).exists(), "{f}");
    }
}

#[test]
fn killed_run_continues_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, out) = (dir.path().join("recipe.toml"), dir.path().join("runs"));
    std::fs::write(&recipe, three_stage("1e-3", 1, 40)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ladder"))
        .args(["run", recipe.to_str().unwrap(), "--output", out.to_str().unwrap(), "--only", "sft"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first_ckpt = out.join("tiny/qwen/sft/checkpoints/step-1/trainer_state.json");
    let t0 = Instant::now();
    while !first_ckpt.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(manifest(&out, "sft")["status"], "running");
    let plan = String::from_utf8_lossy(
        &ladder(&["plan", recipe.to_str().unwrap(), "--output", out.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(plan.contains("would resume from"), "{plan}");
    let again = run_recipe(&recipe, &out, &["--only", "sft"]);
    assert!(again.contains("qwen/sft: resumed"), "{again}");
    let m = manifest(&out, "sft");
    assert_eq!(m["status"], "completed");
    assert!(m["resumed_from"].as_str().unwrap().contains("step-"), "{m}");
    assert_eq!(m["metrics"]["summary"]["steps"], 40);
    let steps: Vec<u64> = read_jsonl(out.join("tiny/qwen/sft/metrics.jsonl")).iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>());
}

/// The whole method in one recipe: SFT, pairs from the SFT model's own degenerate outputs,
/// DPO on them, and an eval stage that generates and scores.
#[test]
fn pairs_dpo_and_eval_stages_run_the_method() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("recipe.toml");
    let refs = fixture("data/references.jsonl");
    let text = three_stage("1e-3", 100, 1)
        .replace(
            "[[stage]]\nname = \"dpo\"",
            &format!("[[stage]]\nname = \"gen\"\nkind = \"pairs\"\nfrom = \"sft\"\ndata = \"{refs}\"\nsamples = 2\nmax_new_tokens = 60\nsynthetic_fallback = true\n\n[[stage]]\nname = \"dpo\""),
        )
        .replace(&format!("pairs = \"{}\"", fixture("data/dpo.jsonl")), "pairs = \"gen\"")
        + &format!("\n[[stage]]\nname = \"test\"\nkind = \"eval\"\nfrom = \"dpo\"\ndata = \"{refs}\"\nmax_new_tokens = 40\nprice_per_hour = 2.0\n");
    std::fs::write(&recipe, text).unwrap();
    let out = dir.path().join("runs");
    let log = run_recipe(&recipe, &out, &[]);
    for stage in ["sft", "gen", "dpo", "merged", "test"] {
        assert!(log.contains(&format!("qwen/{stage}: ran")), "{log}");
        assert_eq!(manifest(&out, stage)["status"], "completed", "{stage}");
    }
    let pairs = read_jsonl(out.join("tiny/qwen/gen/pairs.jsonl"));
    assert_eq!(pairs.len(), 3, "one pair per prompt (sampled, or synthetic when no sample looped)");
    let eval = read_json(out.join("tiny/qwen/test/eval.json"));
    assert_eq!(eval["aggregate"]["count"], 3);
    assert!(eval["aggregate"]["cost_per_million_pages"].as_f64().unwrap() > 0.0);
    let compare = String::from_utf8_lossy(&ladder(&["compare", out.join("tiny").to_str().unwrap()]).stdout).into_owned();
    assert!(compare.contains("qwen"), "{compare}");
}

/// Comparable content of a manifest: no timings, job ids, executor, or output locations.
fn normalised(m: &Value, root: &Path) -> Value {
    let text = m.to_string().replace(root.to_str().unwrap(), "ROOT");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for k in ["started_at", "finished_at", "duration_s", "slurm_job_id", "executor"] {
        v.as_object_mut().unwrap().remove(k);
    }
    if let Some(summary) = v["metrics"].get_mut("summary").and_then(|s| s.as_object_mut()) {
        summary.remove("seconds");
        summary.remove("tokens_per_s");
    }
    v
}

#[test]
fn slurm_executor_matches_local() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, three_stage("1e-3", 100, 2)).unwrap();
    let (local, slurm) = (dir.path().join("local"), dir.path().join("slurm"));
    let submitted = run_recipe(&recipe, &slurm, &["--executor", "slurm"]);
    assert_eq!(submitted.matches("submitted job").count(), 3, "{submitted}");
    run_recipe(&recipe, &local, &[]);
    let t0 = Instant::now();
    loop {
        let done: Vec<bool> = ["sft", "dpo", "merged"]
            .iter()
            .map(|s| {
                let p = slurm.join("tiny/qwen").join(s).join("manifest.json");
                p.exists() && read_json(&p)["status"] != "running"
            })
            .collect();
        if done.iter().all(|d| *d) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            let logs: Vec<String> = std::fs::read_dir(slurm.join("tiny/slurm"))
                .unwrap()
                .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
                .collect();
            panic!("Slurm jobs did not finish in 5 minutes; logs:\n{}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for stage in ["sft", "dpo", "merged"] {
        let a = normalised(&manifest(&local, stage), &local);
        let b = normalised(&manifest(&slurm, stage), &slurm);
        assert_eq!(a, b, "{stage}: local and Slurm manifests differ");
        assert_eq!(manifest(&slurm, stage)["executor"], "slurm");
    }
    let status = String::from_utf8_lossy(&ladder(&["status", slurm.join("tiny").to_str().unwrap()]).stdout).into_owned();
    assert_eq!(status.matches("completed").count(), 3, "{status}");
}

/// A committed demo recipe (`recipes/<name>.toml`) with every step count and generation length
/// cut short (and two seeds where it has `seeds`), run from the repository root as a user would
/// (relative model and data paths) into `out`; checks that every stage of both starts ran on
/// every seed and that `ladder compare` shows each start untuned (where the recipe evaluates
/// it), after SFT and after DPO. Returns the run folder.
fn run_demo_shortened(name: &str, out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    for line in std::fs::read_to_string(root.join(format!("recipes/{name}.toml"))).unwrap().lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        text.push_str(match key {
            "max_steps" => "max_steps = 2",
            "max_new_tokens" => "max_new_tokens = 24",
            "seeds" => "seeds = [1, 2]",
            _ => line,
        });
        text.push('\n');
    }
    std::fs::create_dir_all(out).unwrap();
    let recipe = out.join(format!("{name}.toml"));
    std::fs::write(&recipe, &text).unwrap();
    let runs = out.join("runs");
    let log = String::from_utf8_lossy(&ladder_in(root, &["run", recipe.to_str().unwrap(), "--output", runs.to_str().unwrap()]).stdout).into_owned();
    let seeds: &[&str] = if text.contains("\nseeds = ") { &["seed-1/", "seed-2/"] } else { &[""] };
    let untuned = text.contains("name = \"eval-untuned\"");
    for seed in seeds {
        for start in ["generalist", "ocr-specialist"] {
            for stage in ["eval-untuned", "sft", "eval-sft", "pairs", "dpo", "eval-dpo"].into_iter().filter(|s| untuned || *s != "eval-untuned") {
                assert!(log.contains(&format!("{seed}{start}/{stage}: ran")), "{seed}{start}/{stage}:\n{log}");
            }
        }
    }
    // A local run ends with the comparison and where its report is.
    let run = runs.join(name);
    assert!(log.contains(&format!("report: {}", run.join("report.html").display())), "{log}");
    let compare = String::from_utf8_lossy(&ladder(&["compare", run.to_str().unwrap()]).stdout).into_owned();
    // Each start untuned, after SFT and after DPO, with the number of seeds.
    let n = seeds.len();
    for (start, level) in [("generalist", 1), ("ocr-specialist", 2)] {
        let mut rows = vec![format!("| {start} | 3 | sft | eval-sft | {n} |"), format!("| {start} | 3 | dpo | eval-dpo | {n} |")];
        if untuned {
            rows.insert(0, format!("| {start} | {level} | untuned | eval-untuned | {n} |"));
        }
        let at: Vec<usize> = rows.iter().map(|r| compare.find(r.as_str()).unwrap_or_else(|| panic!("no row {r}:\n{compare}"))).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{start}: rows out of ladder order:\n{compare}");
    }
    for f in ["report.html", "chart.svg", "report.md", "report.json"] {
        assert!(run.join(f).exists(), "{f}");
    }
    run
}

/// `recipes/demo.toml`, shortened, runs end to end from the committed demo models and datasets,
/// on two seeds; `ladder compare` then compares it with itself (two run folders) into `--out`.
#[test]
fn demo_recipe_runs_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo_shortened("demo", dir.path());
    assert!(run.join("seed-1/generalist/dpo/manifest.json").is_file() && run.join("seed-2/ocr-specialist/dpo/manifest.json").is_file());
    let status = String::from_utf8_lossy(&ladder(&["status", run.to_str().unwrap()]).stdout).into_owned();
    assert_eq!(status.matches("completed").count(), 2 * 2 * 6, "{status}");
    let out = dir.path().join("cmp");
    let run = run.to_str().unwrap();
    let compare = String::from_utf8_lossy(&ladder(&["compare", run, run, "--out", out.to_str().unwrap()]).stdout).into_owned();
    assert!(compare.contains("| run | start |") && compare.contains(&format!("| {run} | generalist | 3 | dpo |")), "{compare}");
    assert!(compare.contains(&format!("report: {}", out.join("report.html").display())), "{compare}");
    assert!(out.join("chart.svg").is_file());
}

/// `recipes/demo-vlm.toml`, shortened, runs end to end on the rendered pages from the committed
/// tiny Qwen2.5-VL starts: the adapters cover the vision blocks, the pairs carry their page
/// images (as absolute paths, so DPO finds them from the run folder), every page is scored.
#[test]
fn demo_vlm_recipe_runs_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo_shortened("demo-vlm", dir.path());
    for start in ["generalist", "ocr-specialist"] {
        let s = run.join(start);
        let adapter = ladder_model::TensorFile::open(&s.join("dpo/adapter_model.safetensors")).unwrap();
        assert!(adapter.keys().any(|k| k.contains("model.visual.blocks.0.attn.qkv.lora_A")), "{start}: no vision adapter");
        assert!(s.join("sft/preprocessor_config.json").exists());
        let pairs = read_jsonl(s.join("pairs/pairs.jsonl"));
        assert_eq!(pairs.len(), 16, "{start}: one pair per page");
        for p in &pairs {
            let image = Path::new(p["images"][0].as_str().unwrap());
            assert!(image.is_absolute() && image.is_file(), "{start}: pair image {image:?}");
        }
        for eval in ["eval-sft", "eval-dpo"] {
            let report = read_json(s.join(eval).join("eval.json"));
            assert_eq!(report["rows"].as_array().unwrap().len(), 16, "{start}/{eval}");
            let score = report["aggregate"]["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{start}/{eval}: score {score}");
        }
    }
}
