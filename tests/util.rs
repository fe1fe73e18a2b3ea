//! Shared helpers: fixture paths, running the binary, reading expected numbers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(rel: &str) -> String {
    fixtures().join(rel).to_string_lossy().into_owned()
}

/// Runs `ladder` with `args`; panics with its output if the exit status is not `success`.
pub fn ladder(args: &[&str]) -> Output {
    ladder_in(Path::new("."), args)
}

/// [`ladder`] in the working directory `cwd` (for relative paths as a user types them).
pub fn ladder_in(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ladder"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn ladder");
    assert!(
        out.status.success(),
        "ladder {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `ladder` expecting failure; returns stderr.
pub fn ladder_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ladder"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("spawn ladder");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ladder {args:?} should have failed");
    assert!(!stderr.contains("panicked"), "a user error must not panic:\n{stderr}");
    stderr
}

pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let text = std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()));
    serde_json::from_str(&text).unwrap()
}

pub fn read_jsonl(path: impl AsRef<Path>) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path.as_ref())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn expected(name: &str) -> serde_json::Value {
    read_json(fixtures().join("expected").join(name))
}

/// Copies a fixture folder into `dst` (for tests that corrupt it).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Every tensor of two safetensors files equal bit for bit, with the same keys.
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let (fa, fb) = (ladder_model::TensorFile::open(a).unwrap(), ladder_model::TensorFile::open(b).unwrap());
    let mut keys: Vec<&str> = fa.keys().collect();
    let mut keys_b: Vec<&str> = fb.keys().collect();
    keys.sort();
    keys_b.sort();
    assert_eq!(keys, keys_b, "{} and {} hold different tensors", a.display(), b.display());
    for key in keys {
        let (x, y) = (fa.get(key, None).unwrap().data, fb.get(key, None).unwrap().data);
        let same = x.len() == y.len() && x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{key} differs between {} and {} (max diff {})", a.display(), b.display(), max_abs_diff(&x, &y));
    }
}

/// Whether a Slurm is usable: `sinfo` reaches a controller with a node up. When not, prints why
/// the calling test skips (`.ci/run` starts one with scripts/slurm-test-cluster.sh).
pub fn slurm_up() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && ["idle", "mixed", "alloc"].iter().any(|s| String::from_utf8_lossy(&o.stdout).contains(s)));
    if !up {
        println!("no running Slurm (sinfo finds no node up): skipping (scripts/slurm-test-cluster.sh start provides one)");
    }
    up
}
