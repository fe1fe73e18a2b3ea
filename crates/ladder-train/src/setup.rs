//! Loading a model for a job (source → folder → tokenizer + decoder + optional adapter, with
//! the checks that catch mismatched pieces early) and saving what a job produces.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use ladder_data::Tokenizer;
use ladder_model::{peft, Decoder, LoraSettings, ModelSource, StorageDtype};

use crate::error::{io, Result, TrainError};

/// A model ready for a job.
pub struct Loaded {
    /// The resolved model folder (local, or a snapshot in the HF cache).
    pub dir: PathBuf,
    pub model: Decoder,
    pub tokenizer: Tokenizer,
    pub dtype: StorageDtype,
    /// The adapter loaded with `--adapter`, if any.
    pub adapter: Option<LoraSettings>,
}

/// Resolves `model` (a folder or `hf://ORG/NAME[@REV]`), loads its tokenizer and weights on
/// `device`, and applies `adapter` (a PEFT folder) when given.
pub fn load(model: &str, adapter: Option<&Path>, device: &Device) -> Result<Loaded> {
    let dir = ModelSource::parse(model)?.resolve()?;
    if !dir.join("config.json").exists() {
        return Err(ladder_model::ModelError::MissingFile { path: dir.join("config.json") }.into());
    }
    // Check the pieces belong together before reading any weights.
    let config = ladder_model::DecoderConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(TrainError::VocabMismatch {
            path: dir.join("tokenizer.json"),
            tokenizer: tokenizer.vocab_size(),
            model: config.vocab_size,
        });
    }
    let ladder_model::Loaded { mut model, dtype } = ladder_model::load_decoder(&dir, device)?;
    let adapter = match adapter {
        Some(a) => Some(peft::load_adapter(&mut model, a, device)?),
        None => None,
    };
    Ok(Loaded { dir, model, tokenizer, dtype, adapter })
}

/// Files copied from the source folder next to saved weights, so the output is a complete
/// Hugging Face folder.
pub(crate) const COMPANIONS: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

pub(crate) fn copy_companions(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let src = from.join(name);
        if src.exists() {
            let dst = to.join(name);
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
        }
    }
    Ok(())
}

/// Writes a full checkpoint (`config.json`, `model.safetensors`, tokenizer files) that
/// `transformers.AutoModelForCausalLM.from_pretrained` loads.
pub fn save_full(model: &Decoder, source_dir: &Path, out: &Path, dtype: StorageDtype) -> Result<()> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let tensors = ladder_model::weights::hf_tensors(model);
    ladder_model::weights::write_safetensors(&out.join("model.safetensors"), &tensors, dtype)?;
    copy_companions(source_dir, out, &COMPANIONS)?;
    Ok(())
}

/// Writes the model's adapter as a PEFT folder, with the tokenizer files beside it.
pub fn save_adapter(model: &Decoder, settings: &LoraSettings, base: &str, source_dir: &Path, out: &Path) -> Result<()> {
    peft::save_adapter(model, settings, base, out)?;
    copy_companions(source_dir, out, &COMPANIONS[2..])?;
    Ok(())
}

/// Writes a whole output file atomically (temporary name, then rename), creating its folder:
/// a failed job never leaves half a file.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    Ok(ladder_model::write_atomic(path, bytes)?)
}
