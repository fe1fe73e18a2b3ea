//! Fingerprints: a stage is up to date when a completed output has the same hash of its kind,
//! its resolved configuration (output locations left out, so a run moved to another root
//! matches) and its inputs: the parent stage's fingerprint (or the start model's), data files
//! by content, and the code version.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use ladder_model::hex;
use sha2::{Digest, Sha256};

/// Keys of a resolved job that say where things are written, not what is computed. A parent's
/// output (`adapter`, and `model` below a start) is covered by the parent's fingerprint.
const LOCATION_KEYS: [&str; 6] = ["out", "resume", "overwrite", "reference_cache", "adapter", "model"];

/// Files larger than this are fingerprinted by size and modification time, not content.
const HASH_LIMIT: u64 = 64 << 20;

pub fn of(kind: &str, config: &Value, inputs: &[Value]) -> String {
    let mut config = config.clone();
    if let Some(obj) = config.as_object_mut() {
        for k in LOCATION_KEYS {
            obj.remove(k);
        }
        // Data produced by a pairs stage lives in the run folder: its stage input covers it.
        if let Some(data) = obj.get_mut("data") {
            *data = json!(data.as_array().map(|a| a.len()));
        }
    }
    let canonical = json!({"kind": kind, "config": config, "inputs": inputs});
    hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// Memoised file and model hashes for one planning pass.
#[derive(Default)]
pub struct Cache {
    files: HashMap<PathBuf, String>,
    models: HashMap<String, String>,
}

impl Cache {
    /// sha256 of a file's content (size and mtime for files over 64 MiB); "missing" if unreadable.
    pub fn file(&mut self, path: &Path) -> String {
        if let Some(h) = self.files.get(path) {
            return h.clone();
        }
        let h = hash_file(path).unwrap_or_else(|| "missing".into());
        self.files.insert(path.to_path_buf(), h.clone());
        h
    }

    /// A model folder: every file's name and hash; an `hf://` model: its reference as written.
    pub fn model(&mut self, spec: &str) -> String {
        if let Some(h) = self.models.get(spec) {
            return h.clone();
        }
        let h = if spec.starts_with("hf://") {
            hex(&Sha256::digest(spec.as_bytes()))
        } else {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(spec)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
                .unwrap_or_default();
            entries.sort();
            let mut hasher = Sha256::new();
            for p in entries {
                hasher.update(p.file_name().unwrap_or_default().as_encoded_bytes());
                hasher.update(self.file(&p).as_bytes());
            }
            hex(&hasher.finalize())
        };
        self.models.insert(spec.to_string(), h.clone());
        h
    }
}

fn hash_file(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > HASH_LIMIT {
        let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        return Some(format!("size={},mtime={mtime}", meta.len()));
    }
    let mut f = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_locations_do_not_change_the_fingerprint() {
        let a = of("sft", &json!({"lr": 1e-3, "out": "/a/x", "data": ["d.jsonl"]}), &[json!({"code": "1"})]);
        let b = of("sft", &json!({"lr": 1e-3, "out": "/b/x", "data": ["d.jsonl"]}), &[json!({"code": "1"})]);
        let c = of("sft", &json!({"lr": 2e-3, "out": "/a/x", "data": ["d.jsonl"]}), &[json!({"code": "1"})]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, of("sft", &json!({"lr": 1e-3}), &[json!({"code": "2"})]));
    }
}
