//! Images for Qwen2-VL / Qwen2.5-VL, prepared as transformers' slow image processor
//! (`Qwen2VLImageProcessorPil`, `image_processing_pil_qwen2_vl.py`, the one `use_fast=False`
//! picks) prepares them: convert to RGB (transparency composited onto white), "smart resize"
//! to a multiple of `patch_size × merge_size` within `[min_pixels, max_pixels]` with PIL's
//! bicubic filter, rescale by 1/255, normalise with the CLIP mean and std, repeat the frame
//! `temporal_patch_size` times and flatten to patches in the vision tower's order.
//!
//! Departures: decoding uses the `image` crate (PNG, JPEG), not libpng/libjpeg-turbo. PNG
//! decodes to the same bytes; JPEG decoders may differ by a grey level on some pixels (measured
//! in `tests/image.rs`). 16-bit PNGs are reduced to 8 bits by the `image` crate's rounding,
//! where PIL keeps the high byte.

mod resample;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};

pub use resample::resize_bicubic;

/// transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`, the Qwen2-VL processor's defaults.
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Decodes PNG or JPEG bytes (the format is sniffed from the content).
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let img = ::image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
        let (width, height) = (img.width() as usize, img.height() as usize);
        if width == 0 || height == 0 {
            return Err(format!("the image is empty ({width}×{height})"));
        }
        let data = if img.color().has_alpha() {
            composite_on_white(&img.to_rgba8().into_raw())
        } else {
            img.to_rgb8().into_raw()
        };
        Ok(RgbImage { width, height, data })
    }

    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        Self::decode(&bytes).map_err(|message| DataError::Image { path: path.to_path_buf(), message })
    }
}

/// RGBA over opaque white with Pillow's `alpha_composite` integer arithmetic (7 fractional
/// bits, division by 255 as shifts), which transformers' `convert_to_rgb` applies to any image
/// with transparency.
fn composite_on_white(rgba: &[u8]) -> Vec<u8> {
    const BITS: u32 = 7;
    let div255 = |a: u32| ((a >> 8) + a) >> 8;
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = u32::from(px[3]);
        if a == 0 {
            out.extend_from_slice(&[255, 255, 255]);
            continue;
        }
        // With an opaque backdrop the output alpha is 255·255, so the source weight is a·2^7.
        let coef1 = a * 255 * 255 * (1 << BITS) / (255 * 255);
        let coef2 = 255 * (1 << BITS) - coef1;
        for c in &px[..3] {
            let mixed = u32::from(*c) * coef1 + 255 * coef2;
            out.push((div255(mixed + (0x80 << BITS)) >> BITS) as u8);
        }
    }
    out
}

/// `preprocessor_config.json` as Hugging Face writes it: the bounds either as
/// `min_pixels`/`max_pixels` (older files, which take precedence) or as
/// `size.shortest_edge`/`size.longest_edge` (transformers v5).
#[derive(Debug, Default, Deserialize)]
struct HfImageConfig {
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
    size: Option<HfSize>,
    patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    merge_size: Option<usize>,
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    resample: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct HfSize {
    shortest_edge: Option<u64>,
    longest_edge: Option<u64>,
}

/// The settings the processor runs with, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    pub do_resize: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
}

impl Default for ImageConfig {
    /// `Qwen2VLImageProcessorPil`'s class defaults, which Qwen2.5-VL uses for any key its
    /// `preprocessor_config.json` leaves out.
    fn default() -> Self {
        ImageConfig {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            do_resize: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
        }
    }
}

/// PIL's resampling code for bicubic, the only filter this processor is used with.
const PIL_BICUBIC: u32 = 3;

impl ImageConfig {
    /// Reads `preprocessor_config.json` from a model folder; without one, the defaults.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
        Self::from_json(&text, &path)
    }

    /// Parses the text of a `preprocessor_config.json`; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |message: String| DataError::Image { path: path.to_path_buf(), message };
        let hf: HfImageConfig = serde_json::from_str(text).map_err(|e| bad(format!("malformed preprocessor config: {e}")))?;
        let d = Self::default();
        let size = hf.size.unwrap_or_default();
        let three = |v: Option<Vec<f64>>, key: &str, default: [f64; 3]| match v {
            None => Ok(default),
            Some(v) => <[f64; 3]>::try_from(v.as_slice()).map_err(|_| bad(format!("{key} must have 3 values (RGB), found {}", v.len()))),
        };
        let cfg = ImageConfig {
            min_pixels: hf.min_pixels.or(size.shortest_edge).unwrap_or(d.min_pixels),
            max_pixels: hf.max_pixels.or(size.longest_edge).unwrap_or(d.max_pixels),
            patch_size: hf.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: hf.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: hf.merge_size.unwrap_or(d.merge_size),
            image_mean: three(hf.image_mean, "image_mean", d.image_mean)?,
            image_std: three(hf.image_std, "image_std", d.image_std)?,
            do_resize: hf.do_resize.unwrap_or(d.do_resize),
            do_rescale: hf.do_rescale.unwrap_or(d.do_rescale),
            rescale_factor: hf.rescale_factor.unwrap_or(d.rescale_factor),
            do_normalize: hf.do_normalize.unwrap_or(d.do_normalize),
        };
        if let Some(r) = hf.resample.filter(|r| *r != PIL_BICUBIC) {
            return Err(bad(format!("resample {r} is not supported; only bicubic (3), which Qwen2-VL uses")));
        }
        if cfg.patch_size == 0 || cfg.merge_size == 0 || cfg.temporal_patch_size == 0 {
            return Err(bad("patch_size, merge_size and temporal_patch_size must be positive".into()));
        }
        if cfg.min_pixels > cfg.max_pixels {
            return Err(bad(format!("min_pixels {} is larger than max_pixels {}", cfg.min_pixels, cfg.max_pixels)));
        }
        if cfg.image_std.contains(&0.0) {
            return Err(bad("image_std has a zero".into()));
        }
        Ok(cfg)
    }

    /// The side length every resized dimension is a multiple of.
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Length of one flattened patch: C·T·P·P.
    pub fn patch_len(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

/// transformers' `smart_resize`: the nearest multiples of `factor` (Python's round, ties to
/// even), then scaled down or up, keeping the aspect ratio, to fit `[min_pixels, max_pixels]`.
/// Returns `(height, width)`.
pub fn smart_resize(height: usize, width: usize, factor: usize, min_pixels: u64, max_pixels: u64) -> std::result::Result<(usize, usize), String> {
    if height == 0 || width == 0 {
        return Err(format!("the image is empty ({width}×{height})"));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(format!("aspect ratio {ratio:.1} is over the processor's limit of 200 ({width}×{height})"));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    let area = (height * width) as f64;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (area / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / area).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

/// How an image's size relates to the processor's pixel bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Already a multiple of the patch factor, within bounds: not resampled.
    Exact,
    /// Within bounds once rounded; resized to the nearest multiples of the patch factor.
    Rounded,
    /// Over `max_pixels` even when rounded: scaled down.
    Downscaled,
    /// Under `min_pixels` even when rounded: scaled up.
    Upscaled,
}

/// One image ready for the vision tower.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessed {
    /// `[grid_t·grid_h·grid_w, C·T·P·P]`, row-major.
    pub pixel_values: Vec<f32>,
    /// `(t, h, w)` in patches, as `image_grid_thw`.
    pub grid_thw: [usize; 3],
    /// `(height, width)` before and after resizing.
    pub original: (usize, usize),
    pub resized: (usize, usize),
    pub fit: Fit,
}

impl Preprocessed {
    /// Number of `<|image_pad|>` tokens the image takes in the prompt: its patches after the
    /// `merge_size × merge_size` merger.
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        image_tokens(self.grid_thw, merge_size)
    }
}

/// `grid_t·grid_h·grid_w / merge²`, as the Qwen2-VL processor expands `<|image_pad|>`.
pub fn image_tokens(grid_thw: [usize; 3], merge_size: usize) -> usize {
    grid_thw.iter().product::<usize>() / (merge_size * merge_size)
}

/// Runs the whole processor on one image.
pub fn preprocess(img: &RgbImage, cfg: &ImageConfig) -> std::result::Result<Preprocessed, String> {
    let (h, w) = (img.height, img.width);
    let factor = cfg.factor();
    let (rh, rw) = if cfg.do_resize { smart_resize(h, w, factor, cfg.min_pixels, cfg.max_pixels)? } else { (h, w) };
    if rh % factor != 0 || rw % factor != 0 {
        return Err(format!("with do_resize off the image must be a multiple of {factor} on each side, found {w}×{h}"));
    }
    // The branch smart_resize took: the area after rounding to the factor is what it bounds.
    let f = factor as f64;
    let rounded = (h as f64 / f).round_ties_even() * f * (w as f64 / f).round_ties_even() * f;
    let fit = match () {
        _ if (rh, rw) == (h, w) => Fit::Exact,
        _ if rounded > cfg.max_pixels as f64 => Fit::Downscaled,
        _ if rounded < cfg.min_pixels as f64 => Fit::Upscaled,
        _ => Fit::Rounded,
    };
    let pixels = if (rh, rw) == (h, w) { img.data.clone() } else { resize_bicubic(&img.data, w, h, 3, rw, rh) };
    // numpy's order: rescale in f64 and round to f32, then normalise in f32.
    let mean = cfg.image_mean.map(|m| m as f32);
    let std = cfg.image_std.map(|s| s as f32);
    let value = |v: u8, c: usize| -> f32 {
        let x = if cfg.do_rescale { (f64::from(v) * cfg.rescale_factor) as f32 } else { f32::from(v) };
        if cfg.do_normalize {
            (x - mean[c]) / std[c]
        } else {
            x
        }
    };
    let (p, m, t) = (cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size);
    let (gh, gw) = (rh / p, rw / p);
    let mut out = Vec::with_capacity(gh * gw * cfg.patch_len());
    // Patch order (gh/m, gw/m, m, m): each merge group of m×m neighbours is contiguous. Within a
    // patch: (C, T, P, P), the single frame repeated T times.
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (py0, px0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                    for c in 0..3 {
                        for _ in 0..t {
                            for y in py0..py0 + p {
                                for x in px0..px0 + p {
                                    out.push(value(pixels[(y * rw + x) * 3 + c], c));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Preprocessed { pixel_values: out, grid_thw: [1, gh, gw], original: (h, w), resized: (rh, rw), fit })
}

/// Where a row's image comes from.
#[derive(Clone, PartialEq)]
pub enum ImageSource {
    /// A file; relative paths in a data file are resolved against the data file's folder.
    Path(PathBuf),
    /// Encoded PNG/JPEG bytes (Hugging Face `datasets`' `{bytes, path}` image struct).
    Bytes { bytes: Vec<u8>, name: Option<String> },
}

/// Embedded bytes print as their length, not a wall of numbers.
impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            ImageSource::Bytes { bytes, name } => f.debug_struct("Bytes").field("len", &bytes.len()).field("name", name).finish(),
        }
    }
}

impl ImageSource {
    /// A short name for messages: the path, or the original file name of embedded bytes.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::Bytes { name: Some(n), bytes } => format!("{n} ({} embedded bytes)", bytes.len()),
            ImageSource::Bytes { name: None, bytes } => format!("{} embedded bytes", bytes.len()),
        }
    }

    pub fn load(&self) -> std::result::Result<RgbImage, String> {
        match self {
            ImageSource::Path(p) => {
                let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                RgbImage::decode(&bytes)
            }
            ImageSource::Bytes { bytes, .. } => RgbImage::decode(bytes),
        }
    }
}

/// Counts how images were fitted to the pixel bounds, for one summary line per dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitCounts {
    pub exact: usize,
    pub rounded: usize,
    pub downscaled: usize,
    pub upscaled: usize,
}

impl FitCounts {
    pub fn record(&mut self, fit: Fit) {
        match fit {
            Fit::Exact => self.exact += 1,
            Fit::Rounded => self.rounded += 1,
            Fit::Downscaled => self.downscaled += 1,
            Fit::Upscaled => self.upscaled += 1,
        }
    }

    /// Logs the counts when any image was out of bounds: resizing is expected, not an error,
    /// but a dataset of huge scans silently shrunk is worth a line.
    pub fn log(&self, what: &str, cfg: &ImageConfig) {
        if self.downscaled + self.upscaled > 0 {
            tracing::info!(
                "{what}: {} image(s) over max_pixels {} were scaled down and {} under min_pixels {} scaled up ({} within bounds)",
                self.downscaled,
                cfg.max_pixels,
                self.upscaled,
                cfg.min_pixels,
                self.exact + self.rounded
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_transformers() {
        // Values from transformers' smart_resize (factor 28, defaults 3136 / 1003520).
        let cases = [
            ((28, 56), (56, 84)), // under min_pixels: scaled up
            ((100, 100), (112, 112)),
            ((42, 70), (56, 56)), // 1.5 and 2.5 both round to 2 (ties to even)
            ((1000, 2000), (700, 1400)),
            ((10, 10), (56, 56)),
        ];
        for ((h, w), want) in cases {
            assert_eq!(smart_resize(h, w, 28, 3136, 1_003_520).unwrap(), want, "{h}×{w}");
        }
        assert!(smart_resize(1, 300, 28, 3136, 1_003_520).unwrap_err().contains("aspect ratio"));
    }

    #[test]
    fn patches_follow_the_merge_order() {
        // A 56×28 (w×h) image: grid 2×4, one merge row of two 2×2 groups. Each pixel holds its
        // patch column in red, so the flattened order shows up in the first value of each patch.
        let (w, h) = (56, 28);
        let data: Vec<u8> = (0..h).flat_map(|_| (0..w).flat_map(|x| [(x / 14) as u8, 0, 0])).collect();
        let cfg = ImageConfig { min_pixels: 1, do_rescale: false, do_normalize: false, ..ImageConfig::default() };
        let out = preprocess(&RgbImage { width: w, height: h, data }, &cfg).unwrap();
        assert_eq!(out.grid_thw, [1, 2, 4]);
        assert_eq!(out.fit, Fit::Exact);
        assert_eq!(out.num_tokens(2), 2);
        let firsts: Vec<f32> = out.pixel_values.chunks(cfg.patch_len()).map(|p| p[0]).collect();
        assert_eq!(firsts, [0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0]);
    }

    #[test]
    fn config_reads_both_forms_and_rejects_nonsense() {
        let p = Path::new("preprocessor_config.json");
        let a = ImageConfig::from_json(r#"{"min_pixels": 100, "max_pixels": 5000, "merge_size": 2}"#, p).unwrap();
        let b = ImageConfig::from_json(r#"{"size": {"shortest_edge": 100, "longest_edge": 5000}}"#, p).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.min_pixels, a.max_pixels), (100, 5000));
        let err = ImageConfig::from_json(r#"{"image_mean": [0.5]}"#, p).unwrap_err().to_string();
        assert!(err.contains("image_mean must have 3 values"), "{err}");
        assert!(ImageConfig::from_json(r#"{"resample": 2}"#, p).is_err());
    }

    #[test]
    fn transparency_goes_on_white() {
        assert_eq!(composite_on_white(&[0, 0, 0, 0, 10, 20, 30, 255, 0, 0, 0, 128]), [255, 255, 255, 10, 20, 30, 127, 127, 127]);
    }
}
