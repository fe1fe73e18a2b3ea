//! `ladder init`: a new, randomly initialised model in Hugging Face format, with its own
//! byte-level BPE tokenizer trained on the user's data (or an existing tokenizer), so a ladder
//! can start from a model made from scratch — the demo's generalist is one, pre-trained by an
//! `sft` stage on `{"text"}` rows. The folder is built aside and renamed into place, so a
//! failure leaves nothing behind.

use std::path::{Path, PathBuf};

use ladder_data::{read_rows, Prompt, ReadOptions, Row, Tokenizer};
use ladder_model::config::DecoderConfig;
use ladder_model::weights::{hf_tensors, write_safetensors};
use ladder_model::{Architecture, StorageDtype};
use serde::Serialize;

use crate::error::{io, Result, TrainError};

/// Where the tokenizer comes from.
#[derive(Clone, Debug, Serialize)]
pub enum TokenizerSource {
    /// Train a byte-level BPE of `vocab_size` tokens on the text of these data files.
    Train { data: Vec<PathBuf>, vocab_size: usize },
    /// Copy `tokenizer.json` / `tokenizer_config.json` from this folder.
    Existing(PathBuf),
}

/// Everything `ladder init` needs.
#[derive(Clone, Debug, Serialize)]
pub struct InitJob {
    pub out: PathBuf,
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub tokenizer: TokenizerSource,
    pub seed: u64,
    /// Standard deviation of the normal initialisation (transformers' `initializer_range`).
    pub init_std: f64,
    pub overwrite: bool,
}

/// What `ladder init` made.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub out: PathBuf,
    pub params: usize,
    pub vocab_size: usize,
    pub tokenizer_texts: usize,
}

/// Every string of a row: what the tokenizer should learn to encode.
fn texts_of(row: &Row, out: &mut Vec<String>) {
    let prompt = |p: &Prompt, out: &mut Vec<String>| match p {
        Prompt::Text(t) => out.push(t.clone()),
        Prompt::Messages(m) => out.extend(m.iter().map(|m| m.content.clone())),
    };
    match row {
        Row::Text { text } => out.push(text.clone()),
        Row::Completion { prompt: p, completion, .. } => {
            prompt(p, out);
            out.push(completion.clone());
        }
        Row::Messages { messages, .. } => out.extend(messages.iter().map(|m| m.content.clone())),
        Row::Preference { prompt: p, chosen, rejected, .. } => {
            prompt(p, out);
            out.extend([chosen.clone(), rejected.clone()]);
        }
    }
}

fn check(job: &InitJob) -> Result<()> {
    let bad = |m: String| Err(TrainError::Invalid(m));
    if job.num_heads == 0 || job.num_kv_heads == 0 || job.num_heads % job.num_kv_heads != 0 {
        return bad(format!("--kv-heads ({}) must divide --heads ({})", job.num_kv_heads, job.num_heads));
    }
    if job.hidden_size % job.num_heads != 0 || (job.hidden_size / job.num_heads) % 2 != 0 {
        return bad(format!("--hidden-size ({}) must be --heads ({}) × an even head size", job.hidden_size, job.num_heads));
    }
    if job.num_layers == 0 || job.intermediate_size == 0 {
        return bad("--layers and --intermediate-size must be at least 1".into());
    }
    if let TokenizerSource::Train { vocab_size, .. } = &job.tokenizer {
        if *vocab_size < 300 {
            return bad(format!("--vocab-size {vocab_size} is too small: a byte-level BPE needs 256 byte tokens, the special tokens and some merges (use ≥ 300)"));
        }
    }
    if job.out.join("model.safetensors").exists() && !job.overwrite {
        return bad(format!("{} already holds a model; pass --overwrite to replace it", job.out.display()));
    }
    Ok(())
}

/// Builds the tokenizer and the model in a sibling temporary folder, then renames it to `out`.
pub fn run(job: &InitJob) -> Result<InitReport> {
    check(job)?;
    let parent = job.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempfile::Builder::new().prefix(".ladder-init-").tempdir_in(parent).map_err(io(parent))?;
    let mut n_texts = 0;
    let tokenizer = match &job.tokenizer {
        TokenizerSource::Train { data, vocab_size } => {
            let mut texts = Vec::new();
            for path in data {
                for row in read_rows(path, &ReadOptions::default())?.rows {
                    texts_of(&row.value, &mut texts);
                }
            }
            n_texts = texts.len();
            tracing::info!(texts = n_texts, vocab_size, "training the tokenizer");
            ladder_data::tokenizer::train_bpe(&texts, *vocab_size, tmp.path())?
        }
        TokenizerSource::Existing(dir) => {
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"] {
                let src = dir.join(name);
                if src.exists() {
                    std::fs::copy(&src, tmp.path().join(name)).map_err(io(&src))?;
                }
            }
            Tokenizer::from_dir(tmp.path())?
        }
    };
    let eos = tokenizer
        .eos_id()
        .ok_or_else(|| TrainError::Invalid("the tokenizer has no eos_token (tokenizer_config.json)".into()))?;
    let config = DecoderConfig {
        rope_theta: job.rope_theta,
        max_position_embeddings: job.max_position_embeddings,
        tie_word_embeddings: job.tie_word_embeddings,
        bos_token_id: tokenizer.bos_id(),
        eos_token_ids: vec![eos],
        ..DecoderConfig::new(
            job.architecture,
            tokenizer.vocab_size(),
            job.hidden_size,
            job.intermediate_size,
            job.num_layers,
            job.num_heads,
            job.num_kv_heads,
        )
    };
    let model = ladder_model::random_decoder(&config, job.init_std, job.seed, &burn::tensor::Device::flex());
    let tensors = hf_tensors(&model);
    let params = tensors.iter().map(|t| t.2.len()).sum();
    write_safetensors(&tmp.path().join("model.safetensors"), &tensors, StorageDtype::F32)?;
    let config_path = tmp.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config.to_hf_json()).expect("json")).map_err(io(&config_path))?;
    if job.out.exists() {
        std::fs::remove_dir_all(&job.out).map_err(io(&job.out))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &job.out).map_err(io(&job.out))?;
    tracing::info!(out = %job.out.display(), params, "initialised");
    Ok(InitReport { out: job.out.clone(), params, vocab_size: config.vocab_size, tokenizer_texts: n_texts })
}
