//! Reliability: exact resume (losses and weights bit for bit) for LoRA, full, gradient
//! accumulation and DPO; checkpoint checksums and rotation; signals; non-finite steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// `ladder <cmd>` on the tiny model with the data `data`, into `out`.
fn run_stage(cmd: &str, data: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture(data), out.to_string_lossy().into_owned());
    let mut args = vec![cmd, "--model", &m, "--data", &d, "--out", &o, "--batch-size", "2", "--seed", "9"];
    args.extend(extra);
    ladder(&args)
}

/// An uninterrupted 4-step run with a checkpoint at step 2, and a run resumed from that
/// checkpoint: both log the same steps 3-4 and end with the same weights, bit for bit.
fn resumes_exactly(cmd: &str, data: &str, weights: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (whole, resumed) = (dir.path().join("whole"), dir.path().join("resumed"));
    let args = [&["--max-steps", "4", "--save-every", "2"][..], extra].concat();
    run_stage(cmd, data, &whole, &args);
    let ckpt = whole.join("checkpoints/step-2").to_string_lossy().into_owned();
    run_stage(cmd, data, &resumed, &[&args[..], &["--resume", &ckpt]].concat());
    let (w, r) = (read_jsonl(whole.join("metrics.jsonl")), read_jsonl(resumed.join("metrics.jsonl")));
    assert_eq!(r.len(), 2, "a resumed run logs only the steps it ran");
    for (r, w) in r.iter().zip(&w[2..]) {
        for key in ["step", "loss", "grad_norm", "lr"] {
            assert_eq!(r[key], w[key], "{cmd} {extra:?}: step {} {key}", w["step"]);
        }
    }
    assert_same_tensors(&whole.join(weights), &resumed.join(weights));
}

#[test]
fn resume_is_exact_with_lora_dropout_and_grad_accum() {
    resumes_exactly("sft", "data/sft.jsonl", "adapter_model.safetensors", &["--lora-r", "4", "--lora-dropout", "0.1", "--lr", "5e-3"]);
    resumes_exactly("sft", "data/sft.jsonl", "adapter_model.safetensors", &["--lora-r", "4", "--grad-accum", "2", "--lr", "5e-3"]);
}

#[test]
fn resume_is_exact_for_full_fine_tuning() {
    resumes_exactly("sft", "data/sft.jsonl", "model.safetensors", &["--full", "--lr", "1e-3", "--weight-decay", "0.01"]);
}

/// `--optimizer adamw-8bit`: the checkpoint holds the 8-bit moments (codes, one byte each, and
/// block scales), and a run resumed from it continues exactly.
#[test]
fn resume_is_exact_with_8bit_moments() {
    let args = ["--full", "--lr", "1e-3", "--optimizer", "adamw-8bit"];
    resumes_exactly("sft", "data/sft.jsonl", "model.safetensors", &args);
    let dir = tempfile::tempdir().unwrap();
    run_stage("sft", "data/sft.jsonl", dir.path(), &[&args[..], &["--max-steps", "2", "--save-every", "1"]].concat());
    let state = ladder_model::TensorFile::open(&dir.path().join("checkpoints/step-1/optimizer.safetensors")).unwrap();
    let keys: Vec<&str> = state.keys().collect();
    assert!(keys.iter().any(|k| k == &"embed_tokens.m.codes") && keys.iter().any(|k| k.ends_with(".v.scales")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("norm.weight.m")), "small parameters keep f32 moments: {keys:?}");
    // One byte a code on disk, not an f32 value.
    let codes = state.codes("embed_tokens.m.codes").unwrap().expect("the codes are stored as U8");
    let scales = state.get("embed_tokens.m.scales", None).unwrap().data;
    assert_eq!(codes.len(), 256 * scales.len(), "one code per element, one scale per block of 256");
    assert!(state.codes("embed_tokens.m.scales").unwrap().is_none());
}

#[test]
fn resume_is_exact_for_dpo() {
    resumes_exactly("dpo", "data/dpo.jsonl", "adapter_model.safetensors", &["--lora-r", "4", "--lr", "5e-3"]);
    resumes_exactly("dpo", "data/dpo.jsonl", "model.safetensors", &["--full", "--reference", "frozen", "--lr", "1e-3", "--grad-accum", "2"]);
}

fn checkpoints(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn corrupt_checkpoints_are_reported_and_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    run_stage("sft", "data/sft.jsonl", &run, &["--lora-r", "2", "--max-steps", "4", "--save-every", "1", "--keep-last", "2"]);
    assert_eq!(checkpoints(&run), ["step-2", "step-3"], "--keep-last 2 keeps the newest two");
    let manifest = read_json(run.join("checkpoints/step-3/checksums.json"));
    assert!(manifest["files"]["optimizer.safetensors"].as_str().is_some_and(|h| h.len() == 64), "{manifest}");
    // Flip one byte of the newest checkpoint's optimizer state.
    let victim = run.join("checkpoints/step-3/optimizer.safetensors");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    // From the run folder: a warning naming step-3, then step-2 is used.
    let out = dir.path().join("resumed");
    let r = run.to_string_lossy().into_owned();
    let output = run_stage("sft", "data/sft.jsonl", &out, &["--lora-r", "2", "--max-steps", "4", "--resume", &r]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("step-3") && stderr.contains("optimizer.safetensors fails its sha256"), "{stderr}");
    let steps: Vec<u64> = read_jsonl(out.join("metrics.jsonl")).iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [3, 4], "resumed from step 2");
    // Naming the corrupt checkpoint itself is an error.
    let (m, d) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"));
    let o = dir.path().join("explicit").to_string_lossy().into_owned();
    let ck = run.join("checkpoints/step-3").to_string_lossy().into_owned();
    let err = ladder_fails(&["sft", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "2", "--max-steps", "4", "--resume", &ck]);
    assert!(err.contains("step-3") && err.contains("corrupt"), "{err}");
}

/// Starts `ladder sft` in the background, logging stderr to `out/../stderr-<name>`.
fn spawn_sft(out: &Path, extra: &[&str], envs: &[(&str, String)]) -> (std::process::Child, PathBuf) {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let log = out.with_extension("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ladder"));
    cmd.args(["sft", "--model", &m, "--data", &d, "--out", &o, "--batch-size", "2", "--lora-r", "2", "--seed", "4"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    (cmd.spawn().expect("spawn ladder"), log)
}

/// Waits until `metrics.jsonl` has a line (the run is training).
fn wait_for_first_step(out: &Path, child: &mut std::process::Child) {
    let t0 = Instant::now();
    while std::fs::read_to_string(out.join("metrics.jsonl")).map_or(true, |t| t.lines().next().is_none()) {
        assert!(child.try_wait().unwrap().is_none(), "ladder exited before its first step");
        assert!(t0.elapsed() < Duration::from_secs(300), "no metrics after 5 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(signal: &str, child: &std::process::Child) {
    let ok = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {signal} failed");
}

/// Long enough (about 4 ms a step here) that a signal sent after the first step arrives mid-run.
const LONG: [&str; 2] = ["--max-steps", "1000"];

#[test]
fn sigterm_saves_a_checkpoint_and_the_resumed_run_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut child, log) = spawn_sft(&out, &LONG, &[]);
    wait_for_first_step(&out, &mut child);
    kill("-TERM", &child);
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(75), "exit code of a signal stop:\n{stderr}");
    let k = read_jsonl(out.join("metrics.jsonl")).len();
    assert!(k < 1000, "the run finished before the signal arrived");
    assert!(out.join(format!("checkpoints/step-{k}/checksums.json")).exists(), "{stderr}");
    assert!(stderr.contains(&format!("interrupted after step {k}")) && stderr.contains("--resume"), "{stderr}");
    assert!(!out.join(".ladder.lock").exists(), "the lock is released");
    // Resume into the same folder, and compare with an uninterrupted run.
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
    let common = ["sft", "--model", &m, "--data", &d, "--batch-size", "2", "--lora-r", "2", "--seed", "4", LONG[0], LONG[1]];
    ladder(&[&common[..], &["--out", &o, "--resume", &o]].concat());
    let whole = dir.path().join("whole").to_string_lossy().into_owned();
    ladder(&[&common[..], &["--out", &whole]].concat());
    let (a, b) = (read_jsonl(out.join("metrics.jsonl")), read_jsonl(Path::new(&whole).join("metrics.jsonl")));
    let losses = |v: &[Value]| v.iter().map(|m| m["loss"].clone()).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    let name = "adapter_model.safetensors";
    assert_same_tensors(&out.join(name), &Path::new(&whole).join(name));
}

#[test]
fn sigusr1_under_slurm_checkpoints_and_requeues() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = dir.path().join("scontrol-args");
    let script = format!("#!/bin/sh\necho \"$@\" > {}\n", record.display());
    std::fs::write(bin.join("scontrol"), script).unwrap();
    Command::new("chmod").args(["+x", &bin.join("scontrol").to_string_lossy()]).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = dir.path().join("run");
    let (mut child, log) = spawn_sft(&out, &LONG, &[("PATH", path), ("SLURM_JOB_ID", "4242".into())]);
    wait_for_first_step(&out, &mut child);
    kill("-USR1", &child);
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(75), "{stderr}");
    assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), "requeue 4242", "{stderr}");
}

#[test]
fn second_sigint_exits_at_once_without_a_partial_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut child, log) = spawn_sft(&out, &LONG, &[]);
    wait_for_first_step(&out, &mut child);
    let pid = child.id().to_string();
    Command::new("sh").args(["-c", &format!("kill -INT {pid}; kill -INT {pid}")]).status().unwrap();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    // 130 almost always; 75 if a step boundary fell between the two signals.
    assert!(matches!(status.code(), Some(130) | Some(75)), "{status:?}\n{stderr}");
    // Whatever was interrupted, every checkpoint folder is complete.
    if out.join("checkpoints").exists() {
        for name in checkpoints(&out).iter().filter(|n| n.starts_with("step-")) {
            assert!(out.join("checkpoints").join(name).join("checksums.json").exists(), "{name} is incomplete");
        }
    }
}

/// `--lr 1e30` blows the weights up at step 1, so later losses are NaN (see tests/dpo.rs).
fn diverging_dpo(out: &Path, extra: &[&str]) -> Vec<String> {
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/dpo.jsonl"), out.to_string_lossy().into_owned());
    let mut args = vec![
        "dpo", "--model", &m, "--data", &d, "--out", &o, "--full", "--reference", "frozen", "--lr", "1e30",
        "--max-grad-norm", "0", "--batch-size", "2", "--no-shuffle", "--lr-scheduler", "constant", "--max-steps", "3",
    ];
    args.extend(extra);
    args.into_iter().map(String::from).collect()
}

#[test]
fn nonfinite_steps_are_skipped_up_to_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("skip");
    let args = diverging_dpo(&out, &["--on-nonfinite", "skip", "--max-skipped-steps", "5"]);
    let output = ladder(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let metrics = read_jsonl(out.join("metrics.jsonl"));
    let skipped: Vec<&Value> = metrics.iter().filter(|m| m.get("skipped").is_some()).collect();
    assert!(!skipped.is_empty() && skipped[0]["step"] == 2, "{metrics:?}");
    assert!(skipped[0]["rows"].as_str().unwrap().contains("dpo.jsonl:3"), "{metrics:?}");
    assert!(stderr.contains("step skipped"), "{stderr}");
    // No NaN reached the weights.
    let file = ladder_model::TensorFile::open(&out.join("model.safetensors")).unwrap();
    for key in file.keys() {
        assert!(file.get(key, None).unwrap().data.iter().all(|x| x.is_finite()), "{key} is not finite");
    }
    // One fewer allowed skip than needed: a clear error.
    let max = (skipped.len() - 1).to_string();
    let out2 = dir.path().join("too-many");
    let args = diverging_dpo(&out2, &["--on-nonfinite", "skip", "--max-skipped-steps", &max]);
    let err = ladder_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains(&format!("more than --max-skipped-steps {max}")), "{err}");
}

/// A run killed while it takes the output folder's lock (injected: after the lock's text is
/// written, before it is published) leaves no lock and nothing that counts as output: the next
/// run, told nothing, takes the folder, and its lock and temporary files are gone when it ends.
/// (A lock created and then written left an empty `.ladder.lock` that refused every later run.)
#[test]
fn a_run_killed_while_taking_the_lock_leaves_the_folder_usable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let steps = ["--max-steps", "2"];
    let (mut child, log) = spawn_sft(&out, &steps, &[("LADDER_FAULT_LOCK", "abort".into())]);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the injected fault did not stop the run: {}", std::fs::read_to_string(&log).unwrap());
    let names = || -> Vec<String> { std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect() };
    let left = names();
    assert!(!left.contains(&".ladder.lock".to_string()), "a lock was published: {left:?}");
    assert!(left.iter().any(|n| n.starts_with("..ladder.lock.tmp-")), "the fault did not land between writing and publishing: {left:?}");
    let (mut child, log) = spawn_sft(&out, &steps, &[]);
    assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(out.join("adapter_model.safetensors").exists());
    let left = names();
    assert!(!left.iter().any(|n| n.contains("ladder.lock")), "lock files left: {left:?}");
}

/// SIGKILL at pseudo-random moments (mid-step, mid-checkpoint-write), over and over, each
/// attempt resuming from the run folder: the run that finally completes has the losses and the
/// weights of an uninterrupted run, bit for bit, and no attempt ever sees a broken checkpoint.
#[test]
fn sigkill_at_random_moments_then_resume_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let steps = ["--max-steps", "60", "--save-every", "1", "--keep-last", "3"];
    let whole = dir.path().join("whole");
    let (mut child, _) = spawn_sft(&whole, &steps, &[]);
    assert!(child.wait().unwrap().success());
    let out = dir.path().join("killed");
    let o = out.to_string_lossy().into_owned();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    for attempt in 0..40 {
        // Resume once a checkpoint is complete (a kill can land while `checkpoints/` holds only
        // the temporary folder of the first one); before that, a killed attempt has left a
        // started run with nothing to resume, which a new attempt must be told to replace (on
        // a loaded machine the first kills often land there).
        let complete = std::fs::read_dir(out.join("checkpoints"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false);
        let started = std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false);
        let resume: Vec<&str> = match (complete, started) {
            (true, _) => vec!["--resume", &o],
            (false, true) => vec!["--overwrite"],
            (false, false) => vec![],
        };
        let (mut child, log) = spawn_sft(&out, &[&steps[..], &resume].concat(), &[]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(40 + rng % 160));
        if child.try_wait().unwrap().is_some() {
            let status = child.wait().unwrap();
            assert!(status.success(), "attempt {attempt}: {}", std::fs::read_to_string(&log).unwrap());
            break;
        }
        kill("-KILL", &child);
        child.wait().unwrap();
        kills += 1;
    }
    if !out.join("adapter_model.safetensors").exists() {
        let (mut child, log) = spawn_sft(&out, &[&steps[..], &["--resume", &o]].concat(), &[]);
        assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    }
    assert!(kills > 0, "no attempt was killed: the run is too short for this test");
    let (a, b) = (read_jsonl(out.join("metrics.jsonl")), read_jsonl(whole.join("metrics.jsonl")));
    let losses = |v: &[Value]| v.iter().map(|m| (m["step"].clone(), m["loss"].clone())).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b), "after {kills} kills");
    let name = "adapter_model.safetensors";
    assert_same_tensors(&out.join(name), &whole.join(name));
}
