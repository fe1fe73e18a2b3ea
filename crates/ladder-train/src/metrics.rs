//! `metrics.jsonl`: one JSON object per optimizer step, appended and flushed as training goes,
//! so a crashed run keeps its curve and a resumed run continues it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::error::{io, Result};

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log, keeping only lines of steps `<= keep_through` (all lines are dropped for a
    /// fresh run), so a resumed run does not duplicate steps. The kept lines replace the file
    /// atomically: a run killed right here leaves the old log whole, not an emptied one.
    pub fn open(path: &Path, keep_through: usize) -> Result<Self> {
        let mut kept = Vec::new();
        if keep_through > 0 && path.exists() {
            let f = std::fs::File::open(path).map_err(io(path))?;
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(io(path))?;
                let step = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["step"].as_u64());
                if step.is_some_and(|s| s as usize <= keep_through) {
                    kept.push(line);
                }
            }
        }
        let text: String = kept.iter().map(|line| format!("{line}\n")).collect();
        ladder_model::write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io(path))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{record}").map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }
}
