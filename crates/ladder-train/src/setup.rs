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

/// `ladder merge` and a recipe's merge stage: folds `adapter` into `model` and writes a full
/// checkpoint in the source's dtype, for text models and Qwen2.5-VL alike.
pub fn merge(model: &str, adapter: &Path, out: &Path) -> Result<()> {
    let device = crate::device::parse_device("cpu")?;
    let (dir, is_vlm) = crate::vlm::detect(model)?;
    if is_vlm {
        return write_dir_atomically(out, |staging| crate::vlm::merge(&dir, adapter, staging, &device));
    }
    let mut loaded = load(model, Some(adapter), &device)?;
    peft::merge(&mut loaded.model);
    write_dir_atomically(out, |staging| save_full(&loaded.model, &loaded.dir, staging, loaded.dtype))
}

/// Runs `write` into a staging folder beside `out`, then moves what it wrote into `out`
/// (the folder in one rename when `out` does not exist yet, else file by file), so a failed
/// job leaves no half-written folder: on error the staging folder is removed and `out` is
/// untouched.
pub fn write_dir_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let moved = write(&staging).and_then(|()| {
        if !out.exists() {
            return std::fs::rename(&staging, out).map_err(io(out));
        }
        for entry in std::fs::read_dir(&staging).map_err(io(&staging))? {
            let from = entry.map_err(io(&staging))?.path();
            let to = out.join(from.file_name().expect("a directory entry has a name"));
            std::fs::rename(&from, &to).map_err(io(&to))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
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

/// Refuses to write into a folder that already holds a finished output, unless asked to.
pub fn prepare_out_dir(out: &Path, overwrite: bool, resuming: bool) -> Result<()> {
    let finished = out.join("adapter_model.safetensors").exists() || out.join("model.safetensors").exists();
    if finished && !overwrite && !resuming {
        return Err(TrainError::Invalid(format!(
            "{} already holds a trained model; pass --overwrite to replace it or choose another --out",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_folder_write_leaves_nothing_and_a_good_one_lands_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("merged");
        let failing = write_dir_atomically(&out, |dir| {
            std::fs::write(dir.join("model.safetensors"), b"half").unwrap();
            Err(TrainError::Invalid("disk full".into()))
        });
        assert!(failing.unwrap_err().to_string().contains("disk full"));
        assert!(!out.exists(), "no half-written folder");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "no staging folder left");

        let write = |bytes: &'static [u8]| move |dir: &Path| std::fs::write(dir.join("a"), bytes).map_err(io(dir));
        write_dir_atomically(&out, write(b"1")).unwrap();
        // Into an existing folder: its other files stay, the written ones are replaced.
        std::fs::write(out.join("keep"), b"k").unwrap();
        write_dir_atomically(&out, write(b"2")).unwrap();
        assert_eq!(std::fs::read(out.join("a")).unwrap(), b"2");
        assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"k");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
