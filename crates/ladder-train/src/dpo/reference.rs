//! The reference policy: the policy with its adapter off, a frozen copy of the starting
//! model, or log-probs computed once before training and cached on disk (keyed by everything
//! they depend on, checksummed, recomputed when a check fails).

use std::path::{Path, PathBuf};

use ladder_model::ForwardMode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io, Result, TrainError};
use crate::model::LanguageModel;

use super::batch::{sequence_logps, Layout};
use super::objective::{host, Reference};
use super::{DpoJob, Pair, Prepared, ReferenceKind};

/// Reference log-probs `(chosen, rejected)` of every pair in batches, without gradients. With
/// several processes each scores its share of the batches (the same batches as one process)
/// and every rank gets all the values back.
pub fn reference_logps<M: LanguageModel>(model: &M, pairs: &[Pair], pad_id: u32, batch_size: usize, mode: ForwardMode) -> Vec<(f64, f64)> {
    let bar = crate::progress::bar(pairs.len(), 0, "pairs");
    bar.set_prefix("reference");
    let chunks: Vec<&[Pair]> = pairs.chunks(batch_size.max(1)).collect();
    let shares = crate::dist::world().map_shared(chunks.len(), |c| {
        let layout = Layout::new(chunks[c], pad_id);
        let sums = host(sequence_logps(model, &layout, mode).0.detach());
        let n = chunks[c].len();
        bar.inc(n as u64);
        (0..n).flat_map(|i| [sums[i], sums[n + i]]).flat_map(f64::to_le_bytes).collect()
    });
    bar.finish_and_clear();
    let values: Vec<f64> = shares.concat().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
    values.chunks_exact(2).map(|v| (v[0], v[1])).collect()
}

/// What the precomputed-reference cache did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// A cache file existed but failed its checks; it was recomputed and replaced.
    Recomputed,
}

/// The cache file: reference log-probs of every pair, keyed and checksummed. Values are the
/// f32 sums the model computed; JSON holds them exactly (an f32 survives serde_json's f64
/// round trip, which may be one f64 ulp off).
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    fingerprint: String,
    chosen: Vec<f32>,
    rejected: Vec<f32>,
    checksum: String,
}

const CACHE_FORMAT: &str = "ladder-reference-logps/1";

fn checksum(chosen: &[f32], rejected: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in chosen.iter().chain(rejected) {
        h.update(v.to_le_bytes());
    }
    ladder_model::hex(&h.finalize())
}

/// Fingerprint of everything the reference log-probs depend on: the reference weights (every
/// `.safetensors` file of the model folder, and the adapter's files), whether adapters are on,
/// and the token ids of every pair (which capture the data, the tokenizer, the chat template
/// and the truncation settings).
pub fn fingerprint(model_dir: &Path, adapter: Option<&Path>, adapters_on: bool, pairs: &[Pair]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    let mut files: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .map_err(io(model_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if let Some(a) = adapter {
        files.push(a.join("adapter_model.safetensors"));
        files.push(a.join("adapter_config.json"));
    }
    for file in &files {
        h.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        std::io::copy(&mut f, &mut h).map_err(io(file))?;
    }
    h.update([adapters_on as u8]);
    for p in pairs {
        for part in [&p.prompt, &p.chosen, &p.rejected] {
            h.update((part.len() as u64).to_le_bytes());
            for id in part.iter() {
                h.update(id.to_le_bytes());
            }
        }
        // The token ids do not capture an image's pixels (text pairs hash as before).
        for image in &p.images {
            for g in image.grid_thw {
                h.update((g as u64).to_le_bytes());
            }
            for v in &image.pixel_values {
                h.update(v.to_le_bytes());
            }
        }
    }
    Ok(ladder_model::hex(&h.finalize()))
}

/// Reads a cache file, trusting it only if it parses, carries the expected fingerprint and
/// pair count, and its checksum matches its values.
fn read_cache(path: &Path, fingerprint: &str, n: usize) -> std::result::Result<Vec<(f64, f64)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: CacheFile = serde_json::from_str(&text).map_err(|e| format!("unreadable ({e})"))?;
    if file.format != CACHE_FORMAT || file.fingerprint != fingerprint {
        return Err("written for other inputs".into());
    }
    if file.chosen.len() != n || file.rejected.len() != n {
        return Err(format!("holds {} pairs, expected {n}", file.chosen.len()));
    }
    if checksum(&file.chosen, &file.rejected) != file.checksum {
        return Err("checksum mismatch (corrupted)".into());
    }
    Ok(file.chosen.into_iter().zip(file.rejected).map(|(c, r)| (c as f64, r as f64)).collect())
}

fn write_cache(path: &Path, fingerprint: &str, values: &[(f64, f64)]) -> Result<()> {
    let (chosen, rejected): (Vec<f32>, Vec<f32>) = values.iter().map(|&(c, r)| (c as f32, r as f32)).unzip();
    let file = CacheFile {
        format: CACHE_FORMAT.into(),
        fingerprint: fingerprint.into(),
        checksum: checksum(&chosen, &rejected),
        chosen,
        rejected,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    Ok(ladder_model::write_atomic(path, &serde_json::to_vec(&file).expect("serialisable"))?)
}

/// What the reference cache did (hit, miss, written), and its file.
pub(super) type CacheReport = (Option<CacheOutcome>, Option<PathBuf>);

/// Sets up the reference for `model` (the policy as loaded); `start` loads the starting model
/// again, frozen. A precomputed reference is stored in `prepared`'s pairs, with what its cache
/// did and the cache file.
pub(super) fn reference<M: LanguageModel>(
    job: &DpoJob,
    prepared: &mut Prepared,
    model: &M,
    resuming: bool,
    pad_id: u32,
    start: impl Fn() -> Result<M>,
) -> Result<(Reference<M>, CacheReport)> {
    let s = &job.dpo;
    tracing::info!(pairs = prepared.pairs.len(), reference = ?s.reference, loss = %s.loss, beta = s.beta, "dpo");
    Ok(match s.reference {
        ReferenceKind::AdapterOff => {
            // Jobs built by hand (not through the options) meet the rule here too.
            ReferenceKind::resolve(Some(s.reference), &job.stage).map_err(|e| TrainError::Invalid(format!("--reference {e}")))?;
            (Reference::AdapterOff, (None, None))
        }
        ReferenceKind::Frozen => (Reference::Frozen(Box::new(start()?)), (None, None)),
        ReferenceKind::Precomputed => {
            // A new adapter starts as the identity (B = 0): its reference is the base.
            let adapters_on = job.stage.adapter.is_some();
            let model_dir = ladder_model::ModelSource::parse(&job.stage.model)?.resolve()?;
            let key = fingerprint(&model_dir, job.stage.adapter.as_deref(), adapters_on, &prepared.pairs)?;
            let path = s.reference_cache.join("reference-logps").join(format!("{key}.json"));
            // Every rank computes (its share) unless every rank can read the cache.
            let cached = read_cache(&path, &key, prepared.pairs.len());
            let mut misses = [cached.is_err() as u8 as f64];
            crate::dist::world().sum_f64(&mut misses);
            let cached = if misses[0] > 0.0 { cached.and(Err("not readable on every rank".to_string())) } else { cached };
            let (values, cache) = match cached {
                Ok(values) => {
                    tracing::info!(path = %path.display(), "reference log-probs: cache hit");
                    (values, CacheOutcome::Hit)
                }
                Err(why) => {
                    let existed = path.exists();
                    if existed {
                        tracing::warn!(path = %path.display(), "reference cache not trusted: {why}; recomputing");
                    }
                    let mode = ForwardMode { adapters: adapters_on, train: false };
                    // Never on trainable weights: each forward would record an autodiff graph
                    // that no backward pass frees (full fine-tuning, 61 pairs: 21 GB RSS).
                    let values = if resuming {
                        reference_logps(&start()?, &prepared.pairs, pad_id, job.stage.train.batch_size, mode)
                    } else {
                        reference_logps(&model.clone().no_grad(), &prepared.pairs, pad_id, job.stage.train.batch_size, mode)
                    };
                    if crate::dist::world().is_root() {
                        write_cache(&path, &key, &values)?;
                    }
                    (values, if existed { CacheOutcome::Recomputed } else { CacheOutcome::Miss })
                }
            };
            for (pair, v) in prepared.pairs.iter_mut().zip(values) {
                pair.reference = Some(v);
            }
            (Reference::Precomputed, (Some(cache), Some(path)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_trusted_only_when_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let values = vec![(-1.5, -2.25), (-0.125, -3.0)];
        write_cache(&path, "abc", &values).unwrap();
        assert_eq!(read_cache(&path, "abc", 2).unwrap(), values);
        assert!(read_cache(&path, "other", 2).unwrap_err().contains("other inputs"));
        assert!(read_cache(&path, "abc", 3).is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("-2.25", "-2.5")).unwrap();
        assert!(read_cache(&path, "abc", 2).unwrap_err().contains("checksum"));
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(read_cache(&path, "abc", 2).unwrap_err().contains("unreadable"));
    }
}
