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

/// Takes the lock of output folder `out` (which must exist).
pub fn acquire(out: &Path) -> Result<OutLock> {
    let path = out.join(".ladder.lock");
    let host = hostname();
    // Two tries: the second after removing a stale lock.
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                writeln!(f, "{} {host}", std::process::id()).map_err(io(&path))?;
                return Ok(OutLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut parts = text.split_whitespace();
                let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
                let owner = parts.next().unwrap_or("").to_string();
                match pid {
                    Some(pid) if owner == host && !ladder_model::process_alive(pid) => {
                        tracing::warn!(lock = %path.display(), pid, "removing a stale lock (that process is gone)");
                        std::fs::remove_file(&path).map_err(io(&path))?;
                    }
                    Some(pid) => return Err(TrainError::Locked { out: out.to_path_buf(), lock: path, pid, host: owner }),
                    // Unreadable: a run is creating it right now, or it is damaged; either
                    // way, not ours to take.
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
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Err(TrainError::Invalid(format!("{}: could not take the lock", path.display())))
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
    fn a_garbage_lock_is_described_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".ladder.lock"), "garbage").unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not \"PID HOST\"") && err.contains("garbage") && !err.contains("pid 0"), "{err}");
    }
}
