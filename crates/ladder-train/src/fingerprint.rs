//! What a checkpoint belongs to: a fingerprint of the model, the starting adapter and the data,
//! saved with the resolved options (the objective among them) as the run's `training_args.json`
//! and in each checkpoint's `trainer_state.json`. `--resume` compares both with the run being
//! started and refuses a checkpoint of another run, naming every difference; `--resume-anyway`
//! continues and only reports them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{io, Result, TrainError};

/// The inputs a run's result depends on, each as a sha256 (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `config.json`, the tokenizer, and each weight file's name, size, safetensors header and
    /// first and last MiB: any other model changes it, without reading gigabytes on each resume.
    pub model: String,
    /// The `--adapter` a LoRA run started from (`adapter_config.json` and its weights).
    pub adapter: Option<String>,
    /// Every data file, whole, in the order given.
    pub data: String,
}

/// Options that do not change what a run computes: where it writes, how often it saves, the
/// device, and resume's own switches. Everything else in the resolved options must match.
const NOT_RESULT_CHANGING: [&str; 14] = [
    "out",
    "resume",
    "resume_anyway",
    "overwrite",
    "device",
    "gradient_checkpointing",
    "save_every",
    "keep_last",
    "on_nonfinite",
    "max_skipped_steps",
    "reference_cache",
    // Paths: their contents are compared through the fingerprint instead.
    "model",
    "adapter",
    "data",
];

impl Fingerprint {
    /// The fingerprint of a stage's inputs: its model, starting adapter and data files.
    pub fn of(model_spec: &str, adapter: Option<&Path>, data_files: &[PathBuf]) -> Result<Fingerprint> {
        let dir = ladder_model::ModelSource::parse(model_spec)?.resolve()?;
        let mut model = Sha256::new();
        for name in ["config.json", "tokenizer.json"] {
            hash_file(&mut model, &dir.join(name), None)?;
        }
        for file in weight_files(&dir)? {
            hash_file(&mut model, &file, Some(1 << 20))?;
        }
        let adapter = match adapter {
            Some(a) => {
                let mut h = Sha256::new();
                for name in ["adapter_config.json", "adapter_model.safetensors"] {
                    hash_file(&mut h, &a.join(name), None)?;
                }
                Some(hex(h))
            }
            None => None,
        };
        let mut data = Sha256::new();
        for file in data_files {
            hash_file(&mut data, file, None)?;
        }
        Ok(Fingerprint { model: hex(model), adapter, data: hex(data) })
    }
}

/// The weight files of a model folder, sorted.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `path` into `h`: its name and length, then the whole file, or (with `ends`) the
/// safetensors header and the first and last `ends` bytes. A missing file counts as absent.
fn hash_file(h: &mut Sha256, path: &Path, ends: Option<u64>) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Ok(mut f) = std::fs::File::open(path) else {
        h.update(format!("{name}: absent\n"));
        return Ok(());
    };
    let len = f.metadata().map_err(io(path))?.len();
    h.update(format!("{name}: {len}\n"));
    match ends {
        Some(n) if len > 2 * n => {
            let mut buf = vec![0u8; n as usize];
            f.read_exact(&mut buf).map_err(io(path))?;
            h.update(&buf);
            f.seek(SeekFrom::End(-(n as i64))).map_err(io(path))?;
            f.read_exact(&mut buf).map_err(io(path))?;
            h.update(&buf);
        }
        _ => {
            std::io::copy(&mut f, h).map_err(io(path))?;
        }
    }
    Ok(())
}

/// `a.b.c` → value, for every leaf of a JSON object.
fn leaves(prefix: &str, v: &Value, out: &mut std::collections::BTreeMap<String, Value>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Options added after runs were first saved, with the value every run before them had: a
/// checkpoint without the key resumes at that value, and is refused at another.
fn added_since(key: &str) -> Option<Value> {
    match key {
        "train.adamw.optimizer" => Some(Value::from("adamw")),
        _ => None,
    }
}

/// Replaces `train.batch_size` and `train.grad_accum` by their product with `ranks`.
fn global_batch(leaves: &mut std::collections::BTreeMap<String, Value>, ranks: usize) {
    let Some(batch) = leaves.remove("train.batch_size").and_then(|v| v.as_u64()) else { return };
    let accum = leaves.remove("train.grad_accum").and_then(|v| v.as_u64()).unwrap_or(1);
    leaves.insert("train.global batch (batch_size × grad_accum × processes)".into(), Value::from(batch * accum * ranks as u64));
}

fn result_changing(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    !NOT_RESULT_CHANGING.contains(&last)
}

/// The key of the resolved options that holds the [`Fingerprint`].
pub const KEY: &str = "fingerprint";

/// What differs between a checkpoint's options (with their [`KEY`]) and those of the run
/// resuming it, one line each: `lr: 0.0002 in the checkpoint, 0.001 now`. A checkpoint of an
/// older ladder, without a fingerprint, is compared on the options it recorded only (and
/// [`check_resume`] says what could not be checked). The batch is compared as the global
/// batch (batch × grad-accum × processes, the `ranks` of each run): the same rows per step give
/// the same updates, so a run may resume on another process count with the same global batch.
pub fn differences(saved_config: &Value, saved_ranks: usize, config: &Value, ranks: usize) -> Vec<String> {
    let (saved, now) = (fingerprint(saved_config), fingerprint(config));
    let mut found = Vec::new();
    if let (Some(s), Some(now)) = (&saved, &now) {
        if s.model != now.model {
            found.push("model (--model): a different model than the checkpoint's".into());
        }
        if s.adapter != now.adapter {
            found.push("adapter (--adapter): a different starting adapter than the checkpoint's".into());
        }
        if s.data != now.data {
            found.push("data (--data): different data than the checkpoint's".into());
        }
    }
    let (mut a, mut b) = (Default::default(), Default::default());
    leaves("", saved_config, &mut a);
    leaves("", config, &mut b);
    global_batch(&mut a, saved_ranks);
    global_batch(&mut b, ranks);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys.into_iter().filter(|k| result_changing(k) && !k.starts_with(KEY)) {
        if !a.contains_key(key) && (saved.is_none() || b.get(key) == added_since(key).as_ref()) {
            continue;
        }
        let (was, now) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
        if was != now {
            let name = key.rsplit('.').next().unwrap_or(key);
            found.push(format!("{name}: {was} in the checkpoint, {now} now"));
        }
    }
    found
}

fn fingerprint(config: &Value) -> Option<Fingerprint> {
    config.get(KEY).and_then(|f| serde_json::from_value(f.clone()).ok())
}

/// Refuses to resume `checkpoint` when `differences` is not empty, unless `anyway`, in which
/// case each difference is a warning.
pub fn check_resume(checkpoint: &Path, saved_config: &Value, differences: &[String], anyway: bool) -> Result<()> {
    if fingerprint(saved_config).is_none() {
        tracing::warn!(
            checkpoint = %checkpoint.display(),
            "this checkpoint records no fingerprint (an older ladder made it): its options are checked, its model and data cannot be"
        );
    }
    if differences.is_empty() {
        return Ok(());
    }
    if anyway {
        for d in differences {
            tracing::warn!(checkpoint = %checkpoint.display(), "--resume-anyway: {d}");
        }
        return Ok(());
    }
    Err(TrainError::Resume {
        path: checkpoint.to_path_buf(),
        message: format!(
            "this checkpoint belongs to another run:\n  - {}\nresume with the checkpoint's inputs and options, start a new run, or pass --resume-anyway to continue regardless",
            differences.join("\n  - ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp(model: &str) -> Value {
        json!({"model": model, "adapter": null, "data": "d"})
    }

    #[test]
    fn differences_name_what_changed_and_ignore_locations() {
        let saved = json!({"objective": "sft", "out": "a", "device": "cpu", "model": "m1", "fingerprint": fp("x"), "train": {"lr": 0.0002, "save_every": 2, "batch_size": 2}});
        let same = json!({"objective": "sft", "out": "b", "device": "cuda", "model": "m2", "fingerprint": fp("x"), "train": {"lr": 0.0002, "save_every": 5, "batch_size": 2}});
        assert!(differences(&saved, 1, &same, 1).is_empty());
        let changed = json!({"objective": "dpo", "out": "a", "model": "m1", "fingerprint": fp("y"), "train": {"lr": 0.001, "batch_size": 4}});
        let d = differences(&saved, 1, &changed, 1);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d[0].starts_with("model (--model)"), "{d:?}");
        assert!(d.iter().any(|l| l == "objective: \"sft\" in the checkpoint, \"dpo\" now"), "{d:?}");
        assert!(d.iter().any(|l| l == "lr: 0.0002 in the checkpoint, 0.001 now"), "{d:?}");
        assert!(d.iter().any(|l| l == "global batch (batch_size × grad_accum × processes): 2 in the checkpoint, 4 now"), "{d:?}");
        // The same global batch on another process count resumes; another one does not.
        let accum = json!({"objective": "sft", "out": "b", "model": "m1", "fingerprint": fp("x"), "train": {"lr": 0.0002, "batch_size": 2, "grad_accum": 2}});
        assert!(differences(&saved, 2, &accum, 1).is_empty(), "{:?}", differences(&saved, 2, &accum, 1));
        assert_eq!(differences(&saved, 1, &accum, 1).len(), 1);
        let err = check_resume(Path::new("ck"), &saved, &d, false).unwrap_err().to_string();
        assert!(err.contains("--resume-anyway") && err.contains("lr:"), "{err}");
        check_resume(Path::new("ck"), &saved, &d, true).unwrap();
        // An older checkpoint: no fingerprint, and no key it did not record is compared.
        let old = json!({"out": "a", "model": "m1", "train": {"lr": 0.0002, "batch_size": 2}});
        assert!(differences(&old, 1, &same, 1).is_empty(), "{:?}", differences(&old, 1, &same, 1));
        assert_eq!(differences(&old, 1, &changed, 1).len(), 2);
        // A checkpoint from before `--optimizer` trained with f32 AdamW.
        let before = json!({"objective": "sft", "fingerprint": fp("x"), "train": {"lr": 0.0002, "batch_size": 2, "adamw": {"eps": 1e-8}}});
        let with = |kind: &str| json!({"objective": "sft", "fingerprint": fp("x"), "train": {"lr": 0.0002, "batch_size": 2, "adamw": {"eps": 1e-8, "optimizer": kind}}});
        assert!(differences(&before, 1, &with("adamw"), 1).is_empty());
        assert_eq!(differences(&before, 1, &with("adamw-8bit"), 1), ["optimizer: null in the checkpoint, \"adamw-8bit\" now"]);
    }
}
