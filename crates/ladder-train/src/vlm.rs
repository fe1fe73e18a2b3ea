//! Training a Qwen2.5-VL model (`Qwen2_5_VLForConditionalGeneration`), as TRL's trainers do
//! with a processor: the model folder with its image processor, LoRA on the language model
//! and, optionally, on the vision blocks, and rows' images loaded and preprocessed next to
//! their tokens. The loop and the objectives are the text ones ([`crate::model`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use ladder_data::{load_images, ImageConfig, Located, Preprocessed, Row, Tokenizer, IMAGE_PAD};
use ladder_model::vlm::{self, VisionLanguageModel, VlmLora, VISION_LINEAR};
use ladder_model::ModelSource;

use crate::checkpoint::{self, SaveModel};
use crate::error::{Result, TrainError};
use crate::setup;
use crate::stage::{Method, StageJob};

/// `--lora-vision`: vision block linears, comma-separated, or `all-linear`.
pub fn parse_vision_targets(spec: &str) -> std::result::Result<Vec<String>, String> {
    if spec.trim() == "all-linear" {
        return Ok(VISION_LINEAR.iter().map(|s| s.to_string()).collect());
    }
    let targets: Vec<String> = spec.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if let Some(t) = targets.iter().find(|t| !VISION_LINEAR.contains(&t.as_str())) {
        return Err(format!("unknown vision LoRA target {t:?}; expected a comma-separated list of {} or all-linear", VISION_LINEAR.join(", ")));
    }
    if targets.is_empty() {
        return Err("no vision LoRA targets given".into());
    }
    Ok(targets)
}

/// A vision-language model loaded and set up for a stage (LoRA only).
pub struct VlmStage {
    pub model: VisionLanguageModel,
    pub tokenizer: Tokenizer,
    /// The image processor (`preprocessor_config.json`, else Qwen2-VL's defaults).
    pub images: ImageConfig,
    pub source_dir: PathBuf,
    /// The adapter being trained.
    pub lora: VlmLora,
    pub resume_dir: Option<PathBuf>,
    /// The training device (autodiff).
    pub device: Device,
    pub pad_id: u32,
}

/// Loads a Qwen2.5-VL folder for `job`: checks that tokenizer, image processor and model fit
/// together, freezes the base and attaches a new adapter (or the `--adapter` / checkpoint one).
pub fn load(job: &StageJob) -> Result<VlmStage> {
    let Method::Lora(settings) = &job.method else {
        return Err(TrainError::Invalid("--full is not supported for Qwen2.5-VL models yet; train a LoRA adapter instead".into()));
    };
    let device = crate::device::training_device(job.device, job.gradient_checkpointing)?;
    let resume_dir = job.resume.as_deref().map(checkpoint::find).transpose()?;
    let source_dir = ModelSource::parse(&job.model)?.resolve()?;
    let (tokenizer, images, pad_id) = open(&source_dir)?;
    // The base is frozen before adapter factors are created or loaded; those train.
    let mut model = vlm::load_vlm(&source_dir, &device)?.model.no_grad();
    let adapter = resume_dir.as_deref().or(job.adapter.as_deref());
    let lora = match adapter {
        Some(dir) => vlm::load_adapter(&mut model, dir, &device)?,
        None => {
            let lora = VlmLora { settings: settings.clone(), vision_targets: job.lora_vision.clone() };
            vlm::attach_new(&mut model, &lora, job.train.seed, &device);
            lora
        }
    };
    // The language model computes in `--precision`; the vision tower stays f32.
    model.language_model = job.precision.apply(model.language_model);
    Ok(VlmStage { model, tokenizer, images, source_dir, lora, resume_dir, device, pad_id })
}

/// Checks that a Qwen2.5-VL folder's config, tokenizer and image processor fit together, as
/// training will (for `ladder validate`, before anything runs).
pub fn check_folder(dir: &Path) -> Result<()> {
    open(dir).map(|_| ())
}

/// A model folder's tokenizer, image processor and padding id, checked against its
/// `config.json`.
fn open(source_dir: &Path) -> Result<(Tokenizer, ImageConfig, u32)> {
    let config = ladder_model::VlmConfig::from_file(&source_dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_dir(source_dir)?;
    if tokenizer.vocab_size() > config.text.vocab_size {
        return Err(TrainError::VocabMismatch {
            path: source_dir.join("tokenizer.json"),
            tokenizer: tokenizer.vocab_size(),
            model: config.text.vocab_size,
        });
    }
    if tokenizer.token_id(IMAGE_PAD) != Some(config.image_token_id) {
        return Err(TrainError::Invalid(format!(
            "{}: the tokenizer's {IMAGE_PAD} is {:?} but config.json's image_token_id is {}",
            source_dir.join("tokenizer.json").display(),
            tokenizer.token_id(IMAGE_PAD),
            config.image_token_id
        )));
    }
    let images = ImageConfig::from_dir(source_dir)?;
    let v = &config.vision;
    if (images.patch_size, images.temporal_patch_size, images.merge_size) != (v.patch_size, v.temporal_patch_size, v.spatial_merge_size) {
        let processor = source_dir.join("preprocessor_config.json");
        // Without the file, the sizes are Qwen2-VL's defaults: say so rather than name a file
        // that is not there.
        let origin = if processor.exists() { processor.display().to_string() } else { format!("{} is missing, and Qwen2-VL's defaults", processor.display()) };
        return Err(TrainError::Invalid(format!(
            "{origin}: patch_size {}, temporal_patch_size {}, merge_size {} do not match the model's vision_config ({}, {}, {})",
            images.patch_size,
            images.temporal_patch_size,
            images.merge_size,
            v.patch_size,
            v.temporal_patch_size,
            v.spatial_merge_size
        )));
    }
    let pad_id = tokenizer
        .pad_id()
        .or(tokenizer.eos_id())
        .ok_or_else(|| TrainError::Invalid("the tokenizer defines neither a pad nor an EOS token".into()))?;
    Ok((tokenizer, images, pad_id))
}

/// A model folder (+ PEFT adapter) loaded for generation (no autodiff), with its tokenizer,
/// image processor and the ids that end a row.
pub fn load_for_generation(dir: &Path, adapter: Option<&Path>, device: &Device) -> Result<(VisionLanguageModel, Tokenizer, ImageConfig, Vec<u32>)> {
    let (tokenizer, images, _) = open(dir)?;
    let loaded = vlm::load_vlm(dir, device)?;
    let mut model = loaded.model;
    if let Some(a) = adapter {
        vlm::load_adapter(&mut model, a, device)?;
    }
    let mut eos = loaded.config.text.eos_token_ids.clone();
    eos.extend(tokenizer.eos_id());
    Ok((model, tokenizer, images, eos))
}

/// The starting model as a reference sees it: `--model` (+ `--adapter`) loaded again, frozen,
/// so that a resumed run still compares against where training began.
pub fn starting_model(job: &StageJob, device: &Device) -> Result<VisionLanguageModel> {
    let dir = ModelSource::parse(&job.model)?.resolve()?;
    let mut model = vlm::load_vlm(&dir, device)?.model;
    if let Some(adapter) = &job.adapter {
        vlm::load_adapter(&mut model, adapter, device)?;
    }
    Ok(model.no_grad())
}

/// Folds a PEFT adapter (language model and vision blocks) into a Qwen2.5-VL model and writes
/// the full checkpoint in the source's dtype, with its config, tokenizer and image processor:
/// a folder `Qwen2_5_VLForConditionalGeneration.from_pretrained` and `ladder` load.
pub fn merge(dir: &Path, adapter: &Path, out: &Path, device: &Device) -> Result<()> {
    let loaded = vlm::load_vlm(dir, device)?;
    let mut model = loaded.model;
    vlm::load_adapter(&mut model, adapter, device)?;
    vlm::merge(&mut model);
    std::fs::create_dir_all(out).map_err(crate::error::io(out))?;
    ladder_model::weights::write_safetensors(&out.join("model.safetensors"), &vlm::hf_tensors(&model), loaded.dtype)?;
    setup::copy_companions(dir, out, &setup::COMPANIONS)?;
    setup::copy_companions(dir, out, &["preprocessor_config.json"])
}

/// Writes the adapter as a PEFT folder, with the tokenizer and image processor files.
pub struct VlmSaver<'a> {
    pub base: &'a str,
    pub source_dir: &'a Path,
    pub lora: &'a VlmLora,
}

impl SaveModel<VisionLanguageModel> for VlmSaver<'_> {
    /// Adapters are always f32, so checkpoints and the final output are written alike.
    fn save(&self, model: &VisionLanguageModel, dir: &Path) -> Result<()> {
        // `linears_mut` walks the tree mutably; a clone shares the tensors.
        vlm::save_adapter(&mut model.clone(), self.lora, self.base, dir)?;
        setup::copy_companions(self.source_dir, dir, &setup::COMPANIONS[2..])?;
        setup::copy_companions(self.source_dir, dir, &["preprocessor_config.json"])
    }
}

/// A prompt's images for a forward: pixel values and grids of `rows`' images, row by row.
pub fn batch_images(rows: &[&[Arc<Preprocessed>]]) -> (Vec<f32>, Vec<[usize; 3]>) {
    let (mut pixels, mut grids) = (Vec::new(), Vec::new());
    for image in rows.iter().flat_map(|r| r.iter()) {
        pixels.extend_from_slice(&image.pixel_values);
        grids.push(image.grid_thw);
    }
    (pixels, grids)
}

/// A row's images, decoded and preprocessed; errors name the row and the image.
pub fn row_images(row: &Located<Row>, cfg: &ImageConfig) -> Result<Vec<Arc<Preprocessed>>> {
    Ok(load_images(row, cfg)?.into_iter().map(Arc::new).collect())
}

/// The error for a row with images given to a text-only model.
pub fn text_model_error(row: &Located<Row>) -> TrainError {
    TrainError::Invalid(format!(
        "{}:{}: the row has images but the model is text-only; use a vision-language model (Qwen2.5-VL) or drop the image",
        row.origin.file.display(),
        row.origin.line
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vision_targets_parse() {
        assert_eq!(parse_vision_targets("all-linear").unwrap().len(), 5);
        assert_eq!(parse_vision_targets("qkv, proj").unwrap(), ["qkv", "proj"]);
        assert!(parse_vision_targets("q_proj").unwrap_err().contains("unknown vision LoRA target"));
        assert!(parse_vision_targets(",").is_err());
    }
}
