//! Where a model comes from: a local folder, or `hf://ORG/NAME[@REVISION]` resolved through
//! the standard Hugging Face cache (`HF_HOME`, shared with Python tools) by the `hf-hub` crate.
//! `HF_HUB_OFFLINE=1` forbids downloads: the model must already be in the cache.

use std::path::PathBuf;

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

/// Files a model folder may need; the weights are found from the index when sharded.
const FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];

/// A parsed model reference.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub { repo: String, revision: Option<String> },
}

impl ModelSource {
    pub fn parse(spec: &str) -> Result<Self> {
        let Some(rest) = spec.strip_prefix("hf://") else {
            return Ok(ModelSource::Local(PathBuf::from(spec)));
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((r, rev)) => (r, Some(rev.to_string())),
            None => (rest, None),
        };
        if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
            return Err(ModelError::Source(format!(
                "{spec:?}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION"
            )));
        }
        Ok(ModelSource::Hub { repo: repo.to_string(), revision })
    }

    /// A local folder holding the model, downloading into the HF cache if allowed.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            ModelSource::Local(p) => {
                if p.is_dir() {
                    Ok(p.clone())
                } else if p.is_file() {
                    Err(ModelError::NotAFolder { path: p.clone() })
                } else {
                    Err(ModelError::MissingFolder { path: p.clone() })
                }
            }
            ModelSource::Hub { repo, revision } => resolve_hub(repo, revision.as_deref()),
        }
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

fn hub_repo(repo: &str, revision: Option<&str>) -> Repo {
    match revision {
        Some(rev) => Repo::with_revision(repo.to_string(), RepoType::Model, rev.to_string()),
        None => Repo::new(repo.to_string(), RepoType::Model),
    }
}

fn resolve_hub(repo: &str, revision: Option<&str>) -> Result<PathBuf> {
    let cache = Cache::from_env();
    let cached = cache.repo(hub_repo(repo, revision));
    if let Some(config) = cached.get("config.json") {
        let has_weights = cached.get("model.safetensors").is_some() || cached.get("model.safetensors.index.json").is_some();
        if has_weights {
            return Ok(config.parent().expect("snapshot folder").to_path_buf());
        }
    }
    if offline() {
        return Err(ModelError::Source(format!(
            "hf://{repo}: not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set; download it first (e.g. `huggingface-cli download {repo}`) or unset HF_HUB_OFFLINE",
            cache.path().display()
        )));
    }
    download(repo, revision)
}

fn download(repo: &str, revision: Option<&str>) -> Result<PathBuf> {
    let err = |e: hf_hub::api::sync::ApiError| ModelError::Source(format!("hf://{repo}: {e}"));
    let api = hf_hub::api::sync::ApiBuilder::from_env().build().map_err(err)?;
    let remote = api.repo(hub_repo(repo, revision));
    let config = remote.get("config.json").map_err(err)?;
    for file in FILES.iter().skip(1) {
        // Optional files: a missing one is not an error.
        let _ = remote.get(file);
    }
    match remote.get("model.safetensors") {
        Ok(_) => {}
        Err(_) => {
            let index = remote.get("model.safetensors.index.json").map_err(err)?;
            let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io { path: index.clone(), source })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index.clone(), source })?;
            let mut shards: Vec<String> = json["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for shard in shards {
                remote.get(&shard).map_err(err)?;
            }
        }
    }
    Ok(config.parent().expect("snapshot folder").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_references() {
        assert_eq!(
            ModelSource::parse("hf://Qwen/Qwen2.5-0.5B@main").unwrap(),
            ModelSource::Hub { repo: "Qwen/Qwen2.5-0.5B".into(), revision: Some("main".into()) }
        );
        assert!(ModelSource::parse("hf://justaname").is_err());
        assert_eq!(ModelSource::parse("models/x").unwrap(), ModelSource::Local("models/x".into()));
    }

    #[test]
    fn offline_cache_lookup_uses_hf_home() {
        let home = tempfile::tempdir().unwrap();
        let snap = home.path().join("hub/models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(home.path().join("hub/models--org--tiny/refs")).unwrap();
        std::fs::write(home.path().join("hub/models--org--tiny/refs/main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("model.safetensors"), "").unwrap();
        // SAFETY of env mutation: this is the only test in the crate touching these variables.
        std::env::set_var("HF_HOME", home.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let found = ModelSource::parse("hf://org/tiny").unwrap().resolve().unwrap();
        assert_eq!(found, snap);
        let err = ModelSource::parse("hf://org/absent").unwrap().resolve().unwrap_err();
        assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    }
}
