//! Periodic checkpoints: `checkpoints/step-N/` holds the model (as the stage saves it: a PEFT
//! adapter or a full checkpoint, always f32 so a resume is exact), `optimizer.safetensors`
//! (AdamW moments by parameter path), `trainer_state.json` and `checksums.json` (the sha256 of
//! every other file, written last).
//!
//! Writing is crash-safe: everything goes to `checkpoints/.step-N.tmp/`, each file and the
//! folder are fsynced, then the folder is renamed. A `step-N` folder is therefore complete or
//! absent; a disk that corrupts it later is caught by the manifest when resuming.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ladder_model::weights::{write_safetensors_with_codes, StorageDtype, TensorFile};
use ladder_model::Decoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io, Result, TrainError};
use crate::optim::AdamW;

/// How a stage writes its model (adapter or full weights) into a folder.
pub trait SaveModel<M = Decoder> {
    /// The final output, in the source's storage type.
    fn save(&self, model: &M, dir: &Path) -> Result<()>;
    /// A checkpoint: exact (f32) weights, so a resumed run continues bit for bit.
    fn save_checkpoint(&self, model: &M, dir: &Path) -> Result<()> {
        self.save(model, dir)
    }
}

/// The loop's position, saved with each checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub total_steps: usize,
    pub seed: u64,
    /// Steps dropped so far for a non-finite loss or gradient (`--on-nonfinite skip`), so
    /// `--max-skipped-steps` counts across resumes.
    #[serde(default)]
    pub skipped_steps: usize,
    /// Processes that trained together (`mpirun -np`); the global batch is the stage's
    /// batch × grad-accum × this. Checkpoints from before data parallelism had one.
    #[serde(default = "one")]
    pub world_size: usize,
    /// The resolved stage configuration, to warn when a resume changes it.
    pub config: serde_json::Value,
}

fn one() -> usize {
    1
}

/// Where a resumed run starts.
pub struct Resume {
    pub state: TrainerState,
    pub optimizer: AdamW,
}

/// The checksum list of a checkpoint folder (not `manifest.json`: a recipe stage folder has one).
const MANIFEST: &str = "checksums.json";
const MANIFEST_FORMAT: &str = "ladder-checkpoint/1";

/// `checksums.json`: what a complete checkpoint holds.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    step: usize,
    /// File name → sha256 (hex) of every other file in the folder.
    files: BTreeMap<String, String>,
}

pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step}"))
}

/// Writes a complete checkpoint for `state.step`, then keeps only the newest `keep_last`
/// checkpoints when set.
pub fn save<M>(
    out: &Path,
    model: &M,
    optimizer: &AdamW,
    state: &TrainerState,
    saver: &dyn SaveModel<M>,
    keep_last: Option<usize>,
) -> Result<PathBuf> {
    let parent = out.join("checkpoints");
    let final_dir = checkpoint_dir(out, state.step);
    let tmp = parent.join(format!(".step-{}.tmp", state.step));
    // Half checkpoints of a killed run (any step): the lock makes this run the folder's only
    // writer, so none of them is in progress.
    for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".step-") && name.ends_with(".tmp") {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = (|| {
        saver.save_checkpoint(model, &tmp)?;
        let moments = optimizer.state_tensors();
        write_safetensors_with_codes(&tmp.join("optimizer.safetensors"), &moments.values, StorageDtype::F32, &moments.codes)?;
        let json = serde_json::to_vec_pretty(state).expect("serialisable");
        ladder_model::write_atomic(&tmp.join("trainer_state.json"), &json)?;
        write_manifest(&tmp, state.step)?;
        fsync(&tmp)
    })();
    if let Err(e) = written {
        // Non-finite weights or a full disk: no half checkpoint stays, the previous ones do.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.at_step(state.step, out));
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    fsync(&parent)?;
    if let Some(keep) = keep_last {
        rotate(&parent, keep)?;
    }
    Ok(final_dir)
}

/// Hashes and fsyncs every file of `dir`, then writes `checksums.json` (fsynced too).
fn write_manifest(dir: &Path, step: usize) -> Result<()> {
    let mut files = BTreeMap::new();
    for name in file_names(dir)? {
        let path = dir.join(&name);
        fsync(&path)?;
        files.insert(name, sha256_file(&path)?);
    }
    let manifest = Manifest { format: MANIFEST_FORMAT.into(), step, files };
    let path = dir.join(MANIFEST);
    ladder_model::write_atomic(&path, &serde_json::to_vec_pretty(&manifest).expect("serialisable"))?;
    Ok(())
}

/// Names of the regular files directly in `dir` (not the manifest), sorted.
fn file_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map_err(io(dir))?.is_file() && name != MANIFEST {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Flushes a file or a folder (its entries) to disk.
fn fsync(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = File::open(path).map_err(io(path))?;
    std::io::copy(&mut f, &mut h).map_err(io(path))?;
    Ok(ladder_model::hex(&h.finalize()))
}

/// Checks a checkpoint folder against its manifest: every listed file present with its
/// recorded sha256. `Err` says what is wrong.
pub fn verify(dir: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|_| format!("no {MANIFEST} (incomplete checkpoint)"))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| format!("unreadable {MANIFEST}: {e}"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!("{MANIFEST} has format {:?}, expected {MANIFEST_FORMAT:?}", manifest.format));
    }
    if !manifest.files.contains_key("trainer_state.json") {
        return Err("the manifest lists no trainer_state.json".into());
    }
    for (name, want) in &manifest.files {
        let path = dir.join(name);
        if !path.exists() {
            return Err(format!("{name} is missing"));
        }
        let got = sha256_file(&path).map_err(|e| e.to_string())?;
        if &got != want {
            return Err(format!("{name} fails its sha256 checksum (corrupted)"));
        }
    }
    Ok(())
}

/// `step-N` folders under `checkpoints/`, complete or not, oldest first.
fn list(parent: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(parent)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step: usize = name.strip_prefix("step-")?.parse().ok()?;
            e.path().is_dir().then_some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// `--keep-last N`: deletes all but the newest `keep` checkpoints.
fn rotate(parent: &Path, keep: usize) -> Result<()> {
    let found = list(parent);
    for (_, dir) in found.iter().take(found.len().saturating_sub(keep.max(1))) {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
        tracing::debug!(path = %dir.display(), "old checkpoint removed (--keep-last)");
    }
    Ok(())
}

/// The checkpoint folder `path` names: a `step-N` folder itself (which must pass its checks),
/// or a run folder, whose newest good checkpoint is taken; corrupt or incomplete ones are
/// reported and passed over.
pub fn find(path: &Path) -> Result<PathBuf> {
    let corrupt = |message: String| TrainError::Resume { path: path.to_path_buf(), message };
    if path.join("trainer_state.json").exists() || path.join(MANIFEST).exists() {
        verify(path).map_err(|why| corrupt(format!("corrupt or incomplete checkpoint: {why}")))?;
        return Ok(path.to_path_buf());
    }
    for (_, dir) in list(&path.join("checkpoints")).into_iter().rev() {
        match verify(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => tracing::warn!(
                checkpoint = %dir.display(),
                "skipping corrupt or incomplete checkpoint ({why}); trying the previous one"
            ),
        }
    }
    Err(corrupt(
        "no good checkpoint found (expected a checkpoint folder here, or checkpoints/step-N/ below)".into(),
    ))
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
    let (mut tensors, mut codes) = (HashMap::new(), HashMap::new());
    for key in file.keys().map(str::to_string).collect::<Vec<_>>() {
        match file.codes(&key)? {
            Some(c) => {
                codes.insert(key, c);
            }
            None => {
                tensors.insert(key.clone(), file.get(&key, None)?.data);
            }
        }
    }
    let mut optimizer = optimizer;
    optimizer.load_state(state.step, tensors, codes, device);
    Ok(Resume { state, optimizer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_checkpoint(parent: &Path, step: usize) -> PathBuf {
        let dir = parent.join(format!("step-{step}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("trainer_state.json"), format!("{{\"step\": {step}}}")).unwrap();
        std::fs::write(dir.join("optimizer.safetensors"), b"moments").unwrap();
        write_manifest(&dir, step).unwrap();
        dir
    }

    #[test]
    fn verify_catches_corruption_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fake_checkpoint(tmp.path(), 1);
        assert_eq!(verify(&dir), Ok(()));
        std::fs::write(dir.join("optimizer.safetensors"), b"momentz").unwrap();
        assert!(verify(&dir).unwrap_err().contains("optimizer.safetensors fails its sha256"));
        std::fs::remove_file(dir.join("optimizer.safetensors")).unwrap();
        assert!(verify(&dir).unwrap_err().contains("missing"));
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        assert!(verify(&dir).unwrap_err().contains("incomplete"));
    }

    #[test]
    fn find_falls_back_to_the_previous_good_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("checkpoints");
        fake_checkpoint(&parent, 2);
        let newest = fake_checkpoint(&parent, 10);
        std::fs::write(newest.join("trainer_state.json"), b"{}").unwrap();
        assert_eq!(find(tmp.path()).unwrap(), parent.join("step-2"));
        let err = find(&newest).unwrap_err().to_string();
        assert!(err.contains("step-10") && err.contains("corrupt"), "{err}");
    }

    #[test]
    fn rotate_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        for step in [1, 2, 10, 3] {
            fake_checkpoint(tmp.path(), step);
        }
        rotate(tmp.path(), 2).unwrap();
        let left: Vec<usize> = list(tmp.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(left, vec![3, 10]);
    }
}
