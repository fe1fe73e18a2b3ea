//! Periodic checkpoints: `checkpoints/step-N/` holds the model (as the stage saves it: a PEFT
//! adapter or a full checkpoint), `optimizer.safetensors` (AdamW moments by parameter path) and
//! `trainer_state.json`. Written to a temporary folder and renamed, so a checkpoint folder is
//! either complete or absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ladder_model::weights::{write_safetensors, StorageDtype, TensorFile};
use ladder_model::Decoder;
use serde::{Deserialize, Serialize};

use crate::error::{io, Result, TrainError};
use crate::optim::AdamW;

/// How a stage writes its model (adapter or full weights) into a folder.
pub trait SaveModel {
    fn save(&self, model: &Decoder, dir: &Path) -> Result<()>;
}

/// The loop's position, saved with each checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub seed: u64,
    /// The resolved stage configuration, to warn when a resume changes it.
    pub config: serde_json::Value,
}

/// Where a resumed run starts.
pub struct Resume {
    pub state: TrainerState,
    pub optimizer: AdamW,
}

pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step}"))
}

/// Writes a complete checkpoint for `state.step`.
pub fn save(out: &Path, model: &Decoder, optimizer: &AdamW, state: &TrainerState, saver: &dyn SaveModel) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(out, state.step);
    let tmp = out.join("checkpoints").join(format!(".step-{}.tmp", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    saver.save(model, &tmp)?;
    write_safetensors(&tmp.join("optimizer.safetensors"), &optimizer.state_tensors(), StorageDtype::F32)?;
    let json = serde_json::to_vec_pretty(state).expect("serialisable");
    ladder_model::write_atomic(&tmp.join("trainer_state.json"), &json)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    Ok(final_dir)
}

/// The checkpoint folder `path` names: a `step-N` folder itself, or a run folder whose latest
/// checkpoint is taken.
pub fn find(path: &Path) -> Result<PathBuf> {
    if path.join("trainer_state.json").exists() {
        return Ok(path.to_path_buf());
    }
    let dir = path.join("checkpoints");
    let latest = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step: usize = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join("trainer_state.json").exists().then_some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s);
    latest.map(|(_, p)| p).ok_or_else(|| TrainError::Resume {
        path: path.to_path_buf(),
        message: "no checkpoint found (expected trainer_state.json here or checkpoints/step-N/ below)".into(),
    })
}

/// Reads the trainer state and optimizer moments of a checkpoint folder.
pub fn load(dir: &Path, optimizer: AdamW, device: &Device) -> Result<Resume> {
    let state_path = dir.join("trainer_state.json");
    let bytes = std::fs::read(&state_path).map_err(io(&state_path))?;
    let state: TrainerState = serde_json::from_slice(&bytes).map_err(|e| TrainError::Resume {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    let file = TensorFile::open(&dir.join("optimizer.safetensors"))?;
    let mut tensors = HashMap::new();
    for key in file.keys().map(str::to_string).collect::<Vec<_>>() {
        tensors.insert(key.clone(), file.get(&key, None)?.data);
    }
    let mut optimizer = optimizer;
    optimizer.load_state(state.step, tensors, device);
    Ok(Resume { state, optimizer })
}
