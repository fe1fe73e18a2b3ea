//! `manifest.json` in each stage folder: the resolved stage configuration, its inputs and
//! fingerprint, metrics, durations and status. `ladder status` and `ladder compare` read only
//! these (and the run's `run.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{io, RecipeError, Result};
use crate::schema::StageKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub recipe: String,
    pub start: String,
    pub stage: String,
    pub kind: StageKind,
    pub from: String,
    pub level: Option<u32>,
    pub status: Status,
    pub fingerprint: String,
    pub inputs: Vec<Value>,
    pub config: Value,
    /// The stage's report (steps, final loss, tokens, seconds… or the eval aggregate).
    pub metrics: Option<Value>,
    pub executor: String,
    /// Unix seconds.
    pub started_at: f64,
    pub finished_at: Option<f64>,
    /// Wall time of this attempt.
    pub duration_s: Option<f64>,
    /// The checkpoint this attempt continued from.
    pub resumed_from: Option<PathBuf>,
    pub error: Option<String>,
    pub slurm_job_id: Option<String>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    /// The manifest of a stage folder, `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = Self::path(dir);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = Self::path(dir);
        let bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        ladder_model::write_atomic(&path, &bytes).map_err(|e| RecipeError::Manifest { path, message: e.to_string() })
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
