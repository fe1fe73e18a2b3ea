//! What every command promises about the paths it writes:
//! - an output never names an input ([`check_not_input`]: the same file or folder once symlinks
//!   and hard links are followed);
//! - a folder that already holds something is replaced only with `--overwrite`
//!   ([`check_out_dir`]), and then as a whole, never mixed with the new output
//!   ([`write_dir_atomically`], [`RunDir`]);
//! - a replaced run stays on disk (moved aside) until the new one has produced something good,
//!   and is put back when the new one fails first, even after a kill ([`recover_replaced`]).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{io, Result, TrainError};

/// Entries a folder may hold and still count as empty: a recipe's stage record, written by the
/// recipe runner before the stage's work starts, and a run's lock file.
const NOT_OUTPUTS: [&str; 2] = ["manifest.json", ".ladder.lock"];

/// What `dir` holds that an output written there would replace (sorted names); empty when the
/// folder does not exist.
pub fn contents(dir: &Path) -> Result<BTreeSet<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let name = entry.map_err(io(dir))?.file_name().to_string_lossy().into_owned();
        if !NOT_OUTPUTS.contains(&name.as_str()) {
            names.insert(name);
        }
    }
    Ok(names)
}

/// `--out` of a command that writes a folder: a file there, or a folder that already holds
/// anything, is refused unless `overwrite`. A replaced run an earlier killed `--overwrite`
/// left aside is put back first ([`recover_replaced`]).
pub fn check_out_dir(out: &Path, overwrite: bool) -> Result<()> {
    recover_replaced(out)?;
    crate::lock::remove_stale_temps(out);
    if out.exists() && !out.is_dir() {
        return Err(TrainError::Invalid(format!("--out {}: is a file; expected a folder (new or empty)", out.display())));
    }
    let held = contents(out)?;
    if held.is_empty() || overwrite {
        return Ok(());
    }
    let mut shown: Vec<&str> = held.iter().map(String::as_str).take(4).collect();
    if held.len() > shown.len() {
        shown.push("…");
    }
    let resume = if held.contains("checkpoints") { format!(", --resume {} to continue it", out.display()) } else { String::new() };
    Err(TrainError::Invalid(format!(
        "--out {} is not empty (it holds {}); pass --overwrite to replace it{resume}, or choose another --out",
        out.display(),
        shown.join(", ")
    )))
}

/// (device, inode) of what `path` names, symlinks followed; `None` when nothing is there.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses any of `outputs` that is one of `inputs` (each given with the flag that named it):
/// the same file or folder once symlinks and hard links are followed, or, for an output folder,
/// an input inside it. Writing (or replacing) it would destroy the input, whatever the spelling
/// of the two paths.
pub fn check_not_input(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (out_flag, out) in outputs {
        let Some(id) = identity(out) else { continue };
        if let Some((in_flag, input)) = inputs.iter().find(|(_, p)| identity(p) == Some(id)) {
            return Err(TrainError::Invalid(format!(
                "{out_flag} {} is the same file as {in_flag} {}: writing it would destroy the input; choose another {out_flag}",
                out.display(),
                input.display()
            )));
        }
        if let Some((in_flag, input)) = inputs.iter().find(|(_, p)| out.is_dir() && is_within(p, out)) {
            return Err(TrainError::Invalid(format!(
                "{in_flag} {} is inside {out_flag} {}, which this command writes: choose another {out_flag}",
                input.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// Whether `path` is `dir` or inside it, once both are canonical (symlinks followed).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    }
}

/// Whether `dir` holds a finished model or adapter, or a checkpoint that passes its checks:
/// something a run may be resumed or used from.
fn holds_good_output(dir: &Path) -> bool {
    let finished = ["adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json"];
    finished.iter().any(|f| dir.join(f).exists())
        || (dir.join("checkpoints").is_dir() && crate::checkpoint::find(dir).is_ok())
}

/// Where a replaced output waits while its replacement is written: `.NAME.replaced-PID`.
fn aside_path(out: &Path) -> PathBuf {
    ladder_model::temp_path(out, "replaced")
}

/// Settles what an earlier `--overwrite` of `out` left when its process was killed: the old
/// output it had moved aside is put back when `out` holds nothing good yet, and removed
/// otherwise (the new output was complete). Asides of live processes are left alone.
pub fn recover_replaced(out: &Path) -> Result<()> {
    let ours = aside_path(out);
    let (Some(dir), Some(name)) = (ours.parent(), ours.file_name().and_then(|n| n.to_str())) else { return Ok(()) };
    let prefix = name.rsplit_once('-').map_or(name, |(p, _)| p).to_string();
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = other.strip_prefix(&prefix).and_then(|r| r.strip_prefix('-')).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if ladder_model::process_alive(pid) {
            continue;
        }
        let aside = entry.path();
        if holds_good_output(out) {
            tracing::warn!(old = %aside.display(), "removing the output an interrupted --overwrite replaced (the new one is complete)");
            std::fs::remove_dir_all(&aside).map_err(io(&aside))?;
        } else {
            tracing::warn!(out = %out.display(), "an --overwrite was interrupted before the new output was complete: putting the old one back");
            if out.exists() {
                std::fs::remove_dir_all(out).map_err(io(out))?;
            }
            std::fs::rename(&aside, out).map_err(io(out))?;
        }
    }
    Ok(())
}

/// Runs `write` into a staging folder beside `out` (`.NAME.partial-PID`), then puts what it
/// wrote in place: the folder in one rename when `out` is new or empty, else (with `overwrite`)
/// by moving the old `out` aside as a whole, renaming the new one in and removing the old. A
/// failed job leaves `out` untouched and no staging folder; one killed mid-way leaves a staging
/// folder that the next run removes.
pub fn write_dir_atomically(out: &Path, overwrite: bool, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_out_dir(out, overwrite)?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = ladder_model::temp_path(out, "partial");
    ladder_model::remove_stale(&staging);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let moved = write(&staging).and_then(|()| put_in_place(&staging, out));
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

fn put_in_place(staging: &Path, out: &Path) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(staging, out).map_err(io(out));
    }
    if contents(out)?.is_empty() {
        // Only a recipe's record or a lock: keep them, move the new files in.
        for entry in std::fs::read_dir(staging).map_err(io(staging))? {
            let from = entry.map_err(io(staging))?.path();
            let to = out.join(from.file_name().expect("a directory entry has a name"));
            std::fs::rename(&from, &to).map_err(io(&to))?;
        }
        return Ok(());
    }
    let aside = aside_path(out);
    std::fs::rename(out, &aside).map_err(io(out))?;
    if let Err(e) = std::fs::rename(staging, out) {
        let _ = std::fs::rename(&aside, out);
        return Err(io(out)(e));
    }
    std::fs::remove_dir_all(&aside).map_err(io(&aside))
}

/// A training run's output folder while the run goes on. Opening it applies
/// [`check_out_dir`]; with `overwrite`, the run already there is moved aside as a whole and
/// the new run starts in an empty folder. When the run ends, [`RunDir::finish`] keeps the new
/// run if it produced something, and otherwise puts everything back as it was: the replaced
/// run returns, and a folder that was new or empty loses what the failed run wrote
/// (`training_args.json`, an empty `metrics.jsonl`).
pub struct RunDir {
    out: PathBuf,
    /// The replaced run, while it waits beside `out`.
    aside: Option<PathBuf>,
    /// What `out` held before the run when the run does not replace or continue it: the
    /// entries to keep if it fails.
    before: Option<BTreeSet<String>>,
    /// Whether `out` was created for this run.
    created: bool,
}

impl RunDir {
    /// `continuing`: the run resumes a checkpoint of this same folder, so what the folder holds
    /// is this run's own past.
    pub fn open(out: &Path, overwrite: bool, continuing: bool) -> Result<RunDir> {
        if !continuing {
            check_out_dir(out, overwrite)?;
        }
        let created = !out.exists();
        let held = contents(out)?;
        let mut aside = None;
        if !continuing && overwrite && !held.is_empty() {
            crate::lock::check_free(out)?;
            let path = aside_path(out);
            std::fs::rename(out, &path).map_err(io(out))?;
            tracing::info!(old = %path.display(), "--overwrite: the previous run is kept aside until this one has produced weights");
            aside = Some(path);
        }
        std::fs::create_dir_all(out).map_err(io(out))?;
        let before = (!continuing && aside.is_none()).then_some(held);
        Ok(RunDir { out: out.to_path_buf(), aside, before, created })
    }

    /// Ends the run. `succeeded`: it finished, or stopped with a checkpoint to resume from.
    pub fn finish(mut self, succeeded: bool) -> Result<()> {
        let keep = succeeded
            || holds_good_output(&self.out)
            || (self.aside.is_none() && std::fs::read_to_string(self.out.join("metrics.jsonl")).is_ok_and(|t| !t.trim().is_empty()));
        if keep {
            if let Some(aside) = self.aside.take() {
                std::fs::remove_dir_all(&aside).map_err(io(&aside))?;
            }
            self.before = None;
            self.created = false;
            return Ok(());
        }
        self.restore()
    }

    fn restore(&mut self) -> Result<()> {
        if let Some(aside) = self.aside.take() {
            std::fs::remove_dir_all(&self.out).map_err(io(&self.out))?;
            std::fs::rename(&aside, &self.out).map_err(io(&self.out))?;
            tracing::warn!(out = %self.out.display(), "the new run failed before producing weights: the previous run is back in place");
        } else if self.created {
            std::fs::remove_dir_all(&self.out).map_err(io(&self.out))?;
        } else if let Some(before) = self.before.take() {
            for name in contents(&self.out)?.difference(&before) {
                let path = self.out.join(name);
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        self.created = false;
        Ok(())
    }
}

/// A run that ends without [`RunDir::finish`] (an error path that returned early, a panic)
/// counts as failed.
impl Drop for RunDir {
    fn drop(&mut self) {
        if self.aside.is_some() || self.created || self.before.is_some() {
            if let Err(e) = self.restore() {
                tracing::warn!("restoring {}: {e}", self.out.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_folder_write_leaves_nothing_and_a_good_one_lands_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("merged");
        let failing = write_dir_atomically(&out, false, |dir| {
            std::fs::write(dir.join("model.safetensors"), b"half").unwrap();
            Err(TrainError::Invalid("disk full".into()))
        });
        assert!(failing.unwrap_err().to_string().contains("disk full"));
        assert!(!out.exists(), "no half-written folder");
        assert_eq!(names(tmp.path()), Vec::<String>::new(), "no staging folder left");

        let write = |name: &'static str| move |dir: &Path| std::fs::write(dir.join(name), b"new").map_err(io(dir));
        write_dir_atomically(&out, false, write("model.safetensors")).unwrap();
        // Without --overwrite, a folder that holds anything is refused and left as it was.
        let err = write_dir_atomically(&out, false, write("model.safetensors")).unwrap_err().to_string();
        assert!(err.contains("--out") && err.contains("not empty") && err.contains("--overwrite"), "{err}");
        // With it, the old folder is replaced as a whole: none of its files stay beside the new.
        std::fs::write(out.join("model-00001-of-00002.safetensors"), b"old shard").unwrap();
        write_dir_atomically(&out, true, write("model.safetensors")).unwrap();
        assert_eq!(names(&out), ["model.safetensors"]);
        assert_eq!(names(tmp.path()), ["merged"], "no aside or staging folder left");
        // A recipe's stage record does not make a folder hold an output, and stays.
        let stage = tmp.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        std::fs::write(stage.join("manifest.json"), b"{}").unwrap();
        write_dir_atomically(&stage, false, write("model.safetensors")).unwrap();
        assert_eq!(names(&stage), ["manifest.json", "model.safetensors"]);
    }

    #[test]
    fn outputs_that_are_inputs_are_refused_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("p.jsonl");
        std::fs::write(&data, b"{}\n").unwrap();
        let (hard, soft) = (tmp.path().join("hard.jsonl"), tmp.path().join("soft.jsonl"));
        std::fs::hard_link(&data, &hard).unwrap();
        std::os::unix::fs::symlink(&data, &soft).unwrap();
        let dotted = tmp.path().join(".").join("p.jsonl");
        for out in [&data, &hard, &soft, &dotted] {
            let err = check_not_input(&[("--out", out)], &[("--data", &data)]).unwrap_err().to_string();
            assert!(err.contains("--out") && err.contains("--data") && err.contains("same file"), "{err}");
        }
        check_not_input(&[("--out", &tmp.path().join("new.jsonl"))], &[("--data", &data)]).unwrap();
        // An input inside an output folder: replacing the folder would delete it.
        let err = check_not_input(&[("--out", tmp.path())], &[("--data", &data)]).unwrap_err().to_string();
        assert!(err.contains("inside --out"), "{err}");
    }

    #[test]
    fn a_replaced_run_comes_back_when_the_new_one_fails_and_goes_when_it_succeeds() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("adapter_model.safetensors"), b"old").unwrap();
        std::fs::write(out.join("metrics.jsonl"), b"{\"step\":1}\n").unwrap();
        assert!(RunDir::open(&out, false, false).is_err(), "a finished run needs --overwrite");
        let run = RunDir::open(&out, true, false).unwrap();
        assert_eq!(names(&out), Vec::<String>::new(), "the new run starts in an empty folder");
        std::fs::write(out.join("training_args.json"), b"new").unwrap();
        run.finish(false).unwrap();
        assert_eq!(names(&out), ["adapter_model.safetensors", "metrics.jsonl"]);
        assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), b"{\"step\":1}\n");
        assert_eq!(names(tmp.path()), ["run"]);

        let run = RunDir::open(&out, true, false).unwrap();
        std::fs::write(out.join("model.safetensors"), b"new").unwrap();
        run.finish(true).unwrap();
        assert_eq!(names(&out), ["model.safetensors"], "never two runs in one folder");
        assert_eq!(names(tmp.path()), ["run"]);

        // A fresh folder of a run that failed before its first step is removed.
        let fresh = tmp.path().join("fresh");
        let run = RunDir::open(&fresh, false, false).unwrap();
        std::fs::write(fresh.join("training_args.json"), b"{}").unwrap();
        drop(run);
        assert!(!fresh.exists());
    }

    #[test]
    fn a_killed_overwrite_is_settled_by_the_next_run() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("training_args.json"), b"new, unfinished").unwrap();
        // What a killed process (a pid that never exists) left: its aside of the old run.
        let aside = tmp.path().join(".run.replaced-999999999");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("adapter_model.safetensors"), b"old").unwrap();
        let err = check_out_dir(&out, false).unwrap_err().to_string();
        assert!(err.contains("adapter_model.safetensors"), "the old run is back, so refused: {err}");
        assert_eq!(names(&out), ["adapter_model.safetensors"]);
        assert_eq!(names(tmp.path()), ["run"]);
    }
}
