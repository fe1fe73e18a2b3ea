//! Small file helpers shared by every crate: atomic writes whose temporary files never outlive
//! their process, the clean-up of those a killed process left, and hex digests.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Lowercase hex of a digest (sha256 fingerprints, checksums and cache keys).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsynced and renamed,
/// so readers never see a half-written file. The temporary file (`.NAME.tmp-PID`) is removed
/// when the write fails (a full disk), and any left by a killed process is removed first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_path(path, "tmp");
    remove_stale(&tmp);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// This process's temporary sibling of `path`: `.NAME.KIND-PID` in the same folder (so a rename
/// onto `path` is atomic). The pid lets a later run tell a dead process's leftovers from a
/// live one's ([`remove_stale`]).
pub fn temp_path(path: &Path, kind: &str) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    dir.join(format!(".{name}.{kind}-{}", std::process::id()))
}

/// Removes the siblings of `temp` (a [`temp_path`]) with the same name whose process is gone
/// (files or folders): what a killed or crashed earlier run left. A live process's are kept.
pub fn remove_stale(temp: &Path) {
    let (Some(dir), Some(name)) = (temp.parent(), temp.file_name().and_then(|n| n.to_str())) else { return };
    let Some((prefix, _)) = name.rsplit_once('-') else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        let pid = other.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|&p| !process_alive(p)) {
            let path = entry.path();
            tracing::warn!(path = %path.display(), pid, "removing a temporary file left by a process that is gone");
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// Whether process `pid` exists on this machine (Linux: `/proc/PID`). Elsewhere every pid
/// counts as alive, so nothing of a running process is ever taken.
pub fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_stale_temps_of_dead_processes_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        // A pid above Linux's maximum (2^22) never exists; our own pid is alive.
        let dead = dir.path().join(".out.jsonl.tmp-999999999");
        let live = dir.path().join(format!(".out.jsonl.tmp-{}", std::os::unix::process::parent_id()));
        std::fs::write(&dead, b"half").unwrap();
        std::fs::write(&live, b"in progress").unwrap();
        std::fs::create_dir(dir.path().join(".out.jsonl.partial-999999999")).unwrap();
        write_atomic(&out, b"whole").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        assert!(!dead.exists(), "the stale temporary file is removed");
        assert!(live.exists(), "a live process's temporary file is kept");
        assert!(dir.path().join(".out.jsonl.partial-999999999").exists(), "another kind is not this write's");
        // Into a folder that does not exist: an error naming the path, no temporary file.
        let err = write_atomic(&dir.path().join("missing/x.json"), b"x").unwrap_err().to_string();
        assert!(err.contains("missing/x.json"), "{err}");
    }
}
