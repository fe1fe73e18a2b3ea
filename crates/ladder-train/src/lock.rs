//! `<out>/.ladder.lock`: one run per output folder. Two runs writing the same checkpoints and
//! `metrics.jsonl` would corrupt both, so the second one stops with the first one's pid. A lock
//! left by a run that died (its pid gone on this host) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io, Result, TrainError};

/// Held for the duration of a run; removes the lock file when dropped.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// This machine's name, as the lock file records it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Fails as [`acquire`] would when a live run holds `out`'s lock, without taking it: for a
/// caller about to move the folder (`--overwrite`).
pub fn check_free(out: &Path) -> Result<()> {
    if !out.join(".ladder.lock").exists() {
        return Ok(());
    }
    drop(acquire(out)?);
    Ok(())
}

/// The lock file of `out`, and this process's temporary sibling of it.
fn paths(out: &Path) -> (PathBuf, PathBuf) {
    let path = out.join(".ladder.lock");
    let tmp = ladder_model::temp_path(&path, "tmp");
    (path, tmp)
}

/// Removes the temporary lock files that processes killed while taking `out`'s lock left (a
/// lock's text not yet published, a stale lock set aside), so that they do not count as a
/// started run's outputs.
pub fn remove_stale_temps(out: &Path) {
    let (path, tmp) = paths(out);
    ladder_model::remove_stale(&tmp);
    ladder_model::remove_stale(&ladder_model::temp_path(&path, "stale"));
}

/// Takes the lock of output folder `out` (which must exist).
///
/// The lock file appears whole or not at all: "PID HOST" is written to this process's
/// temporary sibling (`..ladder.lock.tmp-PID`) first, then hard-linked to `.ladder.lock`, which
/// fails if the name exists, so the link is both the atomic publish and the exclusive create.
/// (Creating the lock and then writing into it left an empty lock after a SIGKILL in between,
/// which no later run, `--resume` included, could tell from a run starting up.) A temporary
/// left by a killed process is swept first. Where the file system has no hard links, the lock
/// is created in place and written, as before.
pub fn acquire(out: &Path) -> Result<OutLock> {
    remove_stale_temps(out);
    let (path, tmp) = paths(out);
    let host = hostname();
    let line = format!("{} {host}\n", std::process::id());
    std::fs::write(&tmp, &line).map_err(io(&tmp))?;
    if fault_injected() {
        // Dies the way SIGKILL would, between writing the lock's text and publishing it.
        std::process::abort();
    }
    let taken = take(out, &path, &tmp, &host, &line);
    let _ = std::fs::remove_file(&tmp);
    taken
}

/// The two tries of [`acquire`]: the second after removing a stale lock. `line` is the lock's
/// text ("PID HOST"), also in `tmp`.
fn take(out: &Path, path: &Path, tmp: &Path, host: &str, line: &str) -> Result<OutLock> {
    for _ in 0..2 {
        let created = match std::fs::hard_link(tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => create_in_place(path, line),
            linked => linked,
        };
        match created {
            Ok(()) => return Ok(OutLock { path: path.to_path_buf() }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let mut parts = text.split_whitespace();
                let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
                let owner = parts.next().unwrap_or("").to_string();
                match pid {
                    Some(pid) if owner == host && !ladder_model::process_alive(pid) => {
                        tracing::warn!(lock = %path.display(), pid, "removing a stale lock (that process is gone)");
                        remove_stale_lock(path, &text)?;
                    }
                    Some(pid) => return Err(TrainError::Locked { out: out.to_path_buf(), lock: path.to_path_buf(), pid, host: owner }),
                    // Unreadable: written by a ladder before the atomic lock, or by hand, or
                    // damaged; not ours to take.
                    None => {
                        return Err(TrainError::Invalid(format!(
                            "{}: lock file is not \"PID HOST\" (it holds {:?}): a run may be starting in {}; if no ladder run uses that folder, delete the lock file",
                            path.display(),
                            text.chars().take(40).collect::<String>(),
                            out.display()
                        )))
                    }
                }
            }
            Err(e) => return Err(io(path)(e)),
        }
    }
    Err(TrainError::Invalid(format!("{}: could not take the lock", path.display())))
}

/// Removes the stale lock `path`, which held `seen`, unless another run has replaced it since.
/// Two runs started together on a folder with a stale lock both read it; a plain remove by the
/// slower one would delete the lock the faster one had just taken, and both would run. So the
/// lock is renamed aside (atomic: what is moved is whatever holds the name now), and put back
/// if it is no longer the stale one. (A third run taking the name in that instant is not
/// covered.)
fn remove_stale_lock(path: &Path, seen: &str) -> Result<()> {
    let aside = ladder_model::temp_path(path, "stale");
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        // Another run removed it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    if std::fs::read_to_string(&aside).unwrap_or_default() != seen {
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

/// The lock without a hard link (a file system that has none): created, then written.
fn create_in_place(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(line.as_bytes())
}

/// Test hook (fault injection for the reliability tests): `LADDER_FAULT_LOCK=abort` makes the
/// process die while taking the lock, after its text is written and before it is published.
fn fault_injected() -> bool {
    std::env::var("LADDER_FAULT_LOCK").is_ok_and(|v| v == "abort")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_and_stale_lock_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let lock = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(lock);
        assert!(!dir.path().join(".ladder.lock").exists());
        // A pid above Linux's maximum (2^22) never exists.
        std::fs::write(dir.path().join(".ladder.lock"), format!("999999999 {}\n", hostname())).unwrap();
        let _lock = acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_lock_is_published_whole_and_dead_processes_temps_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        for dead in ["..ladder.lock.tmp-999999999", "..ladder.lock.stale-999999999"] {
            std::fs::write(dir.path().join(dead), "999999999 somewhere\n").unwrap();
        }
        let lock = acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(".ladder.lock")).unwrap();
        assert_eq!(text, format!("{} {}\n", std::process::id(), hostname()));
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, [".ladder.lock"], "the temporaries (this one's and the dead ones') are gone");
        drop(lock);
    }

    #[test]
    fn a_stale_lock_replaced_by_a_live_run_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ladder.lock");
        let stale = format!("999999999 {}\n", hostname());
        // Another run took the folder over between this run's read of the stale lock and its
        // removal.
        let live = format!("{} {}\n", std::os::unix::process::parent_id(), hostname());
        std::fs::write(&path, &live).unwrap();
        remove_stale_lock(&path, &stale).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), live, "the live run's lock is kept");
        std::fs::write(&path, &stale).unwrap();
        remove_stale_lock(&path, &stale).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(names.is_empty(), "the stale lock and the aside copy are gone: {names:?}");
        std::fs::write(&path, &live).unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::os::unix::process::parent_id())), "{err}");
    }

    #[test]
    fn a_garbage_lock_is_described_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".ladder.lock"), "garbage").unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not \"PID HOST\"") && err.contains("garbage") && !err.contains("pid 0"), "{err}");
    }
}
