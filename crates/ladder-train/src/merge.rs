//! `ladder merge` (and a recipe's merge stage): a LoRA adapter folded into its base model,
//! written as a full checkpoint. Its own module, above both `setup` (text models) and `vlm`
//! (Qwen2.5-VL), so that neither needs the other.

use std::path::Path;

use ladder_model::peft;

use crate::error::Result;
use crate::outputs::write_dir_atomically;
use crate::setup;

/// `ladder merge` and a recipe's merge stage: folds `adapter` into `model` and writes a full
/// checkpoint in the source's dtype, for text models and Qwen2.5-VL alike. `out` must be new or
/// empty unless `overwrite`, and never the model's or the adapter's own folder.
pub fn run(model: &str, adapter: &Path, out: &Path, overwrite: bool) -> Result<()> {
    let device = crate::device::parse_device("cpu")?;
    let (dir, is_vlm) = ladder_model::vlm::detect(model)?;
    crate::outputs::check_not_input(&[("--out", out)], &[("--model", &dir), ("--adapter", adapter)])?;
    crate::outputs::check_out_dir(out, overwrite)?;
    if is_vlm {
        return write_dir_atomically(out, overwrite, |staging| crate::vlm::merge(&dir, adapter, staging, &device));
    }
    let mut loaded = setup::load(model, Some(adapter), &device)?;
    peft::merge(&mut loaded.model);
    write_dir_atomically(out, overwrite, |staging| setup::save_full(&loaded.model, &loaded.dir, staging, loaded.dtype))
}

