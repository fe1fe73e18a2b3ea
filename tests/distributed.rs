//! Data parallelism across processes (feature `mpi`): the real binary under OpenMPI's `mpirun`
//! on loopback, against the same binary as one process. Every launch has a timeout, so a hang
//! fails its test instead of stalling the suite. Each process uses one thread, as ranks that
//! share a machine would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// Long enough for any of these runs on a loaded 2-core machine; a hang ends here.
const TIMEOUT: Duration = Duration::from_secs(600);

/// `ladder --threads 1 ARGS`: one process, or `np` ranks under `mpirun` on loopback (`None`
/// runs the binary directly: a world of one). `envs` are set and exported to every rank.
fn command(np: Option<usize>, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let bin = env!("CARGO_BIN_EXE_ladder");
    let mut cmd = match np {
        None => Command::new(bin),
        Some(n) => {
            let mut c = Command::new("mpirun");
            let n = n.to_string();
            // As root, in a container: see ../shared/distributed-notes.md.
            c.args(["--allow-run-as-root", "--oversubscribe", "-np", &n, "--bind-to", "none"])
                .args(["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]);
            for (k, _) in envs {
                c.args(["-x", k]);
            }
            c.arg(bin);
            c
        }
    };
    cmd.args(["--threads", "1"]).args(args).env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Starts `cmd` with stdout and stderr in `log.{stdout,stderr}`.
fn spawn(mut cmd: Command, log: &Path) -> Child {
    cmd.stdout(std::fs::File::create(log.with_extension("stdout")).unwrap())
        .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn (is OpenMPI's mpirun installed?)")
}

/// Waits for `child`, killing it (TERM, then KILL) and failing the test after [`TIMEOUT`].
fn wait(mut child: Child, log: &Path) -> (ExitStatus, String) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("hung: no exit after {TIMEOUT:?}\n{}", std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(log.with_extension("stderr")).unwrap())
}

/// Runs to the end and returns the exit status and stderr.
fn run(np: Option<usize>, args: &[&str], envs: &[(&str, &str)], log: &Path) -> (ExitStatus, String) {
    wait(spawn(command(np, args, envs), log), log)
}

/// Runs and expects success; returns stdout.
fn ok(np: Option<usize>, args: &[&str], envs: &[(&str, &str)], log: &Path) -> String {
    let (status, stderr) = run(np, args, envs, log);
    assert!(status.success(), "{np:?} ranks, ladder {args:?}: {status}\n{stderr}");
    std::fs::read_to_string(log.with_extension("stdout")).unwrap()
}

static MODEL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| fixture("qwen2-tiny"));

/// `sft` on the tiny model (a LoRA adapter unless `extra` says `--full`).
fn sft_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sft", "--model", MODEL.as_str(), "--data", data, "--out", out, "--seed", "9"];
    if !extra.contains(&"--full") {
        args.extend(["--lr", "5e-3", "--lora-r", "4"]);
    }
    args.extend(extra);
    args
}

/// Largest relative difference of `key` over the steps of two `metrics.jsonl`.
fn worst(a: &[Value], b: &[Value], key: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "step counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x["step"], y["step"]);
            let (x, y) = (x[key].as_f64().unwrap_or_else(|| panic!("no {key} in {x}")), y[key].as_f64().unwrap());
            (x - y).abs() / x.abs().max(1.0)
        })
        .fold(0.0, f64::max)
}

/// Every tensor of two safetensors files within `tol`; returns whether they are bit for bit equal.
fn same_weights(a: &Path, b: &Path, tol: f32) -> bool {
    let (fa, fb) = (ladder_model::TensorFile::open(a).unwrap(), ladder_model::TensorFile::open(b).unwrap());
    let mut bitwise = true;
    for key in fa.keys() {
        let (x, y) = (fa.get(key, None).unwrap().data, fb.get(key, None).unwrap().data);
        let diff = max_abs_diff(&x, &y);
        assert!(diff <= tol, "{key}: {diff} apart (tolerance {tol})");
        bitwise &= x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits());
    }
    bitwise
}

/// One process at `one` and two ranks at `two` train the same steps: per-step losses and
/// gradient norms, and the final weights (`weights`), within `tol`. Returns whether bit for bit.
fn compare_sft(data: &str, weights: &str, one: &[&str], two: &[&str], tol: f64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("one"), dir.path().join("two"));
    let (sa, sb) = (a.to_string_lossy().into_owned(), b.to_string_lossy().into_owned());
    ok(None, &sft_args(data, &sa, one), &[], &dir.path().join("one-log"));
    ok(Some(2), &sft_args(data, &sb, two), &[], &dir.path().join("two-log"));
    let (ma, mb) = (read_jsonl(a.join("metrics.jsonl")), read_jsonl(b.join("metrics.jsonl")));
    for key in ["loss", "grad_norm", "tokens"] {
        let w = worst(&ma, &mb, key);
        assert!(w <= tol, "{key} differs by {w} (tolerance {tol})");
    }
    assert!(mb[0]["allreduce_bytes"].as_u64().is_some_and(|n| n > 0), "{}", mb[0]);
    let bitwise = same_weights(&a.join(weights), &b.join(weights), tol as f32);
    let losses_bitwise = ma.iter().zip(&mb).all(|(x, y)| x["loss"] == y["loss"] && x["grad_norm"] == y["grad_norm"]);
    bitwise && losses_bitwise
}

const ADAPTER: &str = "adapter_model.safetensors";

/// Test 1: shuffling, LoRA dropout and clipping on; 8 rows, 3 epochs of 2 steps. The trainer
/// itself checks that both ranks end with the same weights (it fails the run otherwise).
#[test]
fn two_ranks_equal_one_rank_with_twice_the_accumulation() {
    let data = fixture("data/sft.jsonl");
    let common = ["--batch-size", "2", "--max-steps", "6", "--lora-dropout", "0.1", "--max-grad-norm", "0.05"];
    let bitwise = compare_sft(&data, ADAPTER, &[&common[..], &["--grad-accum", "2"]].concat(), &common, 1e-6);
    eprintln!("2 ranks × grad-accum 1 vs 1 rank × grad-accum 2: bit for bit: {bitwise}");
}

/// Test 1 for full fine-tuning (every weight summed across ranks, tied embeddings included).
#[test]
fn full_fine_tuning_on_two_ranks_equals_one_rank() {
    let data = fixture("data/sft.jsonl");
    let common = ["--full", "--lr", "1e-3", "--weight-decay", "0.01", "--batch-size", "2", "--max-steps", "3"];
    let bitwise = compare_sft(&data, "model.safetensors", &[&common[..], &["--grad-accum", "2"]].concat(), &common, 1e-6);
    eprintln!("full fine-tuning, 2 ranks vs 1 rank × grad-accum 2: bit for bit: {bitwise}");
}

/// Test 2: one batch of 4 against two of 2 (no dropout: one mask draw per micro-batch).
#[test]
fn two_ranks_equal_one_rank_with_twice_the_batch() {
    let data = fixture("data/sft.jsonl");
    let common = ["--max-steps", "4", "--max-grad-norm", "0.05"];
    compare_sft(&data, ADAPTER, &[&common[..], &["--batch-size", "4"]].concat(), &[&common[..], &["--batch-size", "2"]].concat(), 1e-5);
}

/// Test 3: 5 rows at batch 2 on 2 ranks: the last step of each epoch has one micro-batch,
/// rank 1 none; nothing hangs and the result is one rank's.
#[test]
fn an_uneven_last_step_gives_the_one_rank_result() {
    let dir = tempfile::tempdir().unwrap();
    let five = dir.path().join("five.jsonl");
    let text = std::fs::read_to_string(fixture("data/sft.jsonl")).unwrap();
    std::fs::write(&five, text.lines().take(5).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let data = five.to_string_lossy().into_owned();
    let common = ["--batch-size", "2", "--epochs", "2", "--lora-dropout", "0.1"];
    compare_sft(&data, ADAPTER, &[&common[..], &["--grad-accum", "2"]].concat(), &common, 1e-6);
}

/// Test 4a: a NaN loss on rank 1 alone at step 2. With `skip`, every rank drops step 2 and
/// the run equals one process whose step 2 failed; with `stop`, every rank stops, nothing hangs.
#[test]
fn a_nan_on_one_rank_skips_or_stops_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("data/sft.jsonl");
    let (a, b) = (dir.path().join("one"), dir.path().join("two"));
    let (sa, sb) = (a.to_string_lossy().into_owned(), b.to_string_lossy().into_owned());
    let common = ["--batch-size", "2", "--max-steps", "4", "--on-nonfinite", "skip", "--max-skipped-steps", "1"];
    ok(None, &sft_args(&data, &sa, &[&common[..], &["--grad-accum", "2"]].concat()), &[("LADDER_FAULT_NAN", "0:2")], &dir.path().join("one"));
    ok(Some(2), &sft_args(&data, &sb, &common), &[("LADDER_FAULT_NAN", "1:2")], &dir.path().join("two"));
    let (ma, mb) = (read_jsonl(a.join("metrics.jsonl")), read_jsonl(b.join("metrics.jsonl")));
    assert_eq!(mb[1]["skipped"], "non-finite loss", "{:?}", mb[1]);
    assert_eq!(ma[1]["skipped"], mb[1]["skipped"]);
    assert!(worst(&[ma[0].clone(), ma[2].clone(), ma[3].clone()], &[mb[0].clone(), mb[2].clone(), mb[3].clone()], "loss") <= 1e-6);
    same_weights(&a.join("adapter_model.safetensors"), &b.join("adapter_model.safetensors"), 1e-6);
    // `stop`: both ranks stop at step 2 with the error; the job ends (no rank left waiting).
    let c = dir.path().join("stop").to_string_lossy().into_owned();
    let (status, stderr) = run(Some(2), &sft_args(&data, &c, &["--batch-size", "2", "--max-steps", "4"]), &[("LADDER_FAULT_NAN", "1:2")], &dir.path().join("stop"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("non-finite loss (NaN) at step 2"), "{stderr}");
    assert_eq!(read_jsonl(dir.path().join("stop/metrics.jsonl")).len(), 1, "step 1 logged, step 2 not");
}

/// The pid of rank `rank` of the job whose ranks carry `LADDER_TEST_JOB=tag`.
fn rank_pid(tag: &str, rank: usize) -> Option<u32> {
    let want = [format!("LADDER_TEST_JOB={tag}"), format!("OMPI_COMM_WORLD_RANK={rank}")];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "ladder" && want.iter().all(|w| vars.contains(&w.as_bytes()))).then_some(pid)
    })
}

/// Test 4b: SIGTERM reaches rank 1 only. Both ranks checkpoint at the same step and exit 75;
/// the run resumed on 2 ranks ends as the uninterrupted 2-rank run, bit for bit.
#[test]
fn sigterm_to_one_rank_stops_every_rank_at_one_checkpoint_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("data/sft.jsonl");
    let (out, whole) = (dir.path().join("run"), dir.path().join("whole"));
    let (so, sw) = (out.to_string_lossy().into_owned(), whole.to_string_lossy().into_owned());
    let common = ["--batch-size", "2", "--max-steps", "400", "--lora-dropout", "0.1"];
    let tag = dir.path().file_name().unwrap().to_string_lossy().into_owned();
    let log = dir.path().join("interrupted");
    let child = spawn(command(Some(2), &sft_args(&data, &so, &common), &[("LADDER_TEST_JOB", &tag)]), &log);
    let t0 = Instant::now();
    while std::fs::read_to_string(out.join("metrics.jsonl")).map_or(true, |t| t.lines().next().is_none()) {
        assert!(t0.elapsed() < TIMEOUT, "no first step");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rank_pid(&tag, 1).expect("rank 1 is running");
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let (status, stderr) = wait(child, &log);
    assert_eq!(status.code(), Some(75), "{stderr}");
    let k = read_jsonl(out.join("metrics.jsonl")).len();
    assert!(k < 400, "the run ended before the signal arrived");
    assert!(out.join(format!("checkpoints/step-{k}/checksums.json")).exists(), "{stderr}");
    assert_eq!(stderr.matches("interrupted after step").count(), 1, "rank 0 alone reports:\n{stderr}");
    assert!(stderr.contains(&format!("interrupted after step {k}")), "{stderr}");
    ok(Some(2), &sft_args(&data, &so, &[&common[..], &["--resume", &so]].concat()), &[], &dir.path().join("resumed"));
    ok(Some(2), &sft_args(&data, &sw, &common), &[], &dir.path().join("whole"));
    let (a, b) = (read_jsonl(out.join("metrics.jsonl")), read_jsonl(whole.join("metrics.jsonl")));
    let losses = |v: &[Value]| v.iter().map(|m| (m["step"].clone(), m["loss"].clone())).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    assert_same_tensors(&out.join("adapter_model.safetensors"), &whole.join("adapter_model.safetensors"));
}

/// A 2-rank checkpoint resumed by one process with the same global batch (grad-accum 2)
/// continues exactly as the 2-rank run did.
#[test]
fn a_two_rank_checkpoint_resumes_on_one_rank_with_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("data/sft.jsonl");
    let (two, one) = (dir.path().join("two"), dir.path().join("one"));
    let (st, so) = (two.to_string_lossy().into_owned(), one.to_string_lossy().into_owned());
    let common = ["--batch-size", "2", "--max-steps", "4", "--save-every", "2", "--lora-dropout", "0.1"];
    ok(Some(2), &sft_args(&data, &st, &common), &[], &dir.path().join("two"));
    let ckpt = two.join("checkpoints/step-2").to_string_lossy().into_owned();
    ok(None, &sft_args(&data, &so, &[&common[..], &["--grad-accum", "2", "--resume", &ckpt]].concat()), &[], &dir.path().join("one"));
    let (a, b) = (read_jsonl(two.join("metrics.jsonl")), read_jsonl(one.join("metrics.jsonl")));
    assert_eq!(b.len(), 2, "the resumed run logs steps 3 and 4");
    assert!(worst(&a[2..], &b, "loss") <= 1e-6 && worst(&a[2..], &b, "grad_norm") <= 1e-6);
    same_weights(&two.join(ADAPTER), &one.join(ADAPTER), 1e-6);
}

/// Test 5a: DPO with the precomputed reference on 2 ranks: the reference is scored in shards
/// and gathered into the same cache file, byte for byte, and training matches one process.
#[test]
fn dpo_precomputed_reference_on_two_ranks_equals_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (fixture("qwen2-tiny"), fixture("data/dpo.jsonl"));
    let mut caches = Vec::new();
    for (name, np, accum) in [("one", None, "2"), ("two", Some(2), "1")] {
        let (out, cache) = (dir.path().join(name), dir.path().join(format!("{name}-cache")));
        let (o, c) = (out.to_string_lossy().into_owned(), cache.to_string_lossy().into_owned());
        let args = ["dpo", "--model", &m, "--data", &d, "--out", &o, "--lora-r", "4", "--lr", "1e-3", "--seed", "9"];
        let extra = ["--reference", "precomputed", "--reference-cache", &c, "--batch-size", "2", "--grad-accum", accum, "--max-steps", "3"];
        let report: Value = serde_json::from_str(&ok(np, &[&args[..], &extra].concat(), &[], &dir.path().join(format!("{name}-log")))).unwrap();
        assert_eq!(report["reference_cache"], "miss");
        caches.push(PathBuf::from(report["reference_cache_file"].as_str().unwrap()));
    }
    assert_eq!(caches[0].file_name(), caches[1].file_name(), "same inputs, same cache key");
    assert_eq!(std::fs::read(&caches[0]).unwrap(), std::fs::read(&caches[1]).unwrap(), "gathered reference log-probs differ");
    let (a, b) = (read_jsonl(dir.path().join("one/metrics.jsonl")), read_jsonl(dir.path().join("two/metrics.jsonl")));
    for key in ["loss", "grad_norm", "rewards/margins", "rewards/accuracies", "logps/chosen"] {
        let w = worst(&a, &b, key);
        assert!(w <= 1e-6, "{key} differs by {w}");
    }
    same_weights(&dir.path().join("one/adapter_model.safetensors"), &dir.path().join("two/adapter_model.safetensors"), 1e-6);
}

/// Test 5b: `ladder pairs`, `ladder generate` and `ladder eval --model` split their rows (in
/// the batches one process makes) across 2 ranks; rank 0 writes the same bytes.
#[test]
fn pairs_generate_and_eval_on_two_ranks_write_what_one_rank_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (m, sft, prompts) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), fixture("data/prompts.jsonl"));
    let sampling = ["--max-new-tokens", "24", "--temperature", "1.0", "--seed", "7", "--batch-size", "2"];
    for (name, np) in [("one", None), ("two", Some(2))] {
        let at = |f: &str| dir.path().join(name).join(f).to_string_lossy().into_owned();
        let pairs = ["pairs", "--model", &m, "--data", &sft, "--out", &at("pairs.jsonl"), "--samples", "3", "--min-score", "1", "--max-pairs-per-prompt", "0"];
        ok(np, &[&pairs[..], &sampling].concat(), &[], &dir.path().join(format!("{name}-pairs")));
        ok(np, &[&["generate", "--model", &m, "--data", &prompts, "--out", &at("generated.jsonl")][..], &sampling].concat(), &[], &dir.path().join(format!("{name}-gen")));
        ok(np, &[&["eval", "--model", &m, "--data", &sft, "--out", &at("eval.json")][..], &sampling].concat(), &[], &dir.path().join(format!("{name}-eval")));
    }
    for file in ["pairs.jsonl", "generated.jsonl", "predictions.jsonl"] {
        let (a, b) = (std::fs::read(dir.path().join("one").join(file)).unwrap(), std::fs::read(dir.path().join("two").join(file)).unwrap());
        assert!(!a.is_empty());
        assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{file} differs");
    }
    let summary = |n: &str| {
        let mut s = read_json(dir.path().join(n).join("pairs.summary.json"));
        s.as_object_mut().unwrap().retain(|k, _| !matches!(k.as_str(), "seconds" | "out"));
        s
    };
    assert_eq!(summary("one"), summary("two"));
    // The scores (not the throughput, which is timed).
    let rows = |n: &str| read_json(dir.path().join(n).join("eval.json"))["rows"].clone();
    assert_eq!(rows("one"), rows("two"));
}

/// A one-stage LoRA SFT recipe (batch 2, 2 steps, dropout on) with `keys` added, written as
/// `DIR/NAME.toml`; returns its path.
fn sft_recipe(dir: &Path, name: &str, keys: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nseed = 3\n[[start]]\nname = \"a\"\nmodel = \"{}\"\n\n[[stage]]\nname = \"sft\"\nkind = \"sft\"\nfrom = \"start\"\n\
         data = \"{}\"\nlora_r = 4\nlora_dropout = 0.1\nbatch_size = 2\nmax_steps = 2\n{keys}\n",
        fixture("qwen2-tiny"),
        fixture("data/sft.jsonl")
    );
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A recipe stage with `processes = 2` runs through `mpirun` from `ladder run` (the local
/// executor), and trains what one process trains with the same global batch.
#[test]
fn a_recipe_stage_runs_on_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = |name: &str, keys: &str| sft_recipe(dir.path(), name, keys);
    let (two, one) = (recipe("two", "processes = 2"), recipe("one", "grad_accum = 2"));
    let out = dir.path().join("runs").to_string_lossy().into_owned();
    let loopback = [("LADDER_MPIRUN_ARGS", "--oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo")];
    let stdout = ok(None, &["run", &two, "--output", &out], &loopback, &dir.path().join("two"));
    assert!(stdout.contains("a/sft: ran"), "{stdout}");
    ok(None, &["run", &one, "--output", &out], &[], &dir.path().join("one"));
    let adapter = |name: &str| dir.path().join("runs").join(name).join("a/sft/adapter_model.safetensors");
    assert_same_tensors(&adapter("two"), &adapter("one"));
    let manifest = read_json(dir.path().join("runs/two/a/sft/manifest.json"));
    assert_eq!(manifest["status"], "completed");
    // Up to date now: a second run skips it without launching anything.
    let again = ok(None, &["run", &two, "--output", &out], &loopback, &dir.path().join("again"));
    assert!(again.contains("a/sft: skipped"), "{again}");
}

/// On the single-node test Slurm (`scripts/slurm-test-cluster.sh`, started by `.ci/run`), a
/// stage with `tasks_per_node = 2` runs as a job of two tasks through `srun --mpi=pmix`, and
/// trains what one process trains with the same global batch. Skipped without a Slurm.
#[test]
fn a_slurm_stage_runs_two_tasks_through_srun() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = |name: &str, keys: &str| sft_recipe(dir.path(), name, keys);
    let (two, one) = (recipe("two", "nodes = 1\ntasks_per_node = 2"), recipe("one", "grad_accum = 2"));
    let out = dir.path().join("runs").to_string_lossy().into_owned();
    // The job inherits this environment (sbatch exports it): TCP on loopback, as the other tests.
    let loopback = [("OMPI_MCA_btl", "tcp,self"), ("OMPI_MCA_btl_tcp_if_include", "lo")];
    let submitted = ok(None, &["run", &two, "--output", &out, "--executor", "slurm"], &loopback, &dir.path().join("two"));
    assert!(submitted.contains("submitted"), "{submitted}");
    ok(None, &["run", &one, "--output", &out], &[], &dir.path().join("one"));
    let manifest = dir.path().join("runs/two/a/sft/manifest.json");
    let t0 = Instant::now();
    while !(manifest.exists() && read_json(&manifest)["status"] != "running") {
        if t0.elapsed() > Duration::from_secs(300) {
            let logs: Vec<String> = std::fs::read_dir(dir.path().join("runs/two/slurm"))
                .map(|d| d.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok()).collect())
                .unwrap_or_default();
            panic!("the Slurm job did not finish in 5 minutes; logs:\n{}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("runs/two/slurm")).unwrap().filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok()).collect();
    assert_eq!(read_json(&manifest)["status"], "completed", "{}", logs.join("\n---\n"));
    let script = std::fs::read_dir(dir.path().join("runs/two/slurm")).unwrap().filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok()).find(|t| t.starts_with("#!/bin/bash"));
    if let Some(script) = script {
        assert!(script.contains("#SBATCH --ntasks-per-node=2") && script.contains("srun --mpi=pmix "), "{script}");
    }
    let adapter = |name: &str| dir.path().join("runs").join(name).join("a/sft/adapter_model.safetensors");
    assert_same_tensors(&adapter("two"), &adapter("one"));
}
