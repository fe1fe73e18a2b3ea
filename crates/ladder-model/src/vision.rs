//! Qwen2.5-VL's vision tower, mirroring transformers' `Qwen2_5_VisionTransformerPretrainedModel`
//! (`modeling_qwen2_5_vl.py`): patch embedding, 2-D rotary embeddings, RMSNorm blocks with
//! window attention except at `fullatt_block_indexes`, SwiGLU MLPs with biases, and the patch
//! merger (ln_q, then an MLP with GELU over each 2×2 block) into the language model's width.
//!
//! Departures from transformers, none of which change the numbers:
//! - The patch embedding is a `Conv3d` whose stride equals its kernel, applied to one patch at a
//!   time, so it is a linear layer over the flattened `(C, T, P, P)` patch; the kernel is
//!   reshaped to `[embed, C*T*P*P]` at load.
//! - transformers permutes the patches into window order, attends within `cu_seqlens` chunks
//!   and permutes back. The windows only ever move whole merge blocks, so we keep the
//!   processor's order and express windows and images as an additive attention bias instead.
//!
//! Reading order: `VisionConfig`, `VisionAttention`, `VisionBlock`, `PatchMerger`,
//! `VisionTransformer`.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::decoder::{Mlp, RmsNorm};
use crate::error::{ModelError, Result};
use crate::linear::{ForwardMode, Linear};
use crate::weights::{host, linear, norm, push_linear, transpose, Fetch};
use crate::{kernels, rope};

/// transformers hard-codes the vision norms' epsilon.
const NORM_EPS: f64 = 1e-6;

/// `vision_config` as transformers writes it; unknown keys are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HfVisionConfig {
    pub depth: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_heads: Option<usize>,
    pub in_channels: Option<usize>,
    /// Older configs call it `in_chans`.
    pub in_chans: Option<usize>,
    pub patch_size: Option<usize>,
    pub temporal_patch_size: Option<usize>,
    pub spatial_merge_size: Option<usize>,
    pub window_size: Option<usize>,
    pub out_hidden_size: Option<usize>,
    pub fullatt_block_indexes: Option<Vec<usize>>,
    pub hidden_act: Option<String>,
    pub rope_parameters: Option<serde_json::Value>,
}

/// The resolved vision-tower configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    /// Window edge in pixels; windows hold `window_size / spatial_merge_size / patch_size`
    /// merged tokens per side.
    pub window_size: usize,
    pub out_hidden_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    pub rope_theta: f64,
}

impl VisionConfig {
    /// Applies transformers' `Qwen2_5_VLVisionConfig` defaults; `path` is named in errors.
    pub fn from_hf(hf: &HfVisionConfig, path: &Path) -> Result<Self> {
        let bad = |key: &str, message: String| ModelError::BadValue {
            path: path.to_path_buf(),
            key: format!("vision_config.{key}"),
            message,
        };
        if let Some(act) = &hf.hidden_act {
            if act != "silu" {
                return Err(bad("hidden_act", format!("{act:?} is not supported (only \"silu\")")));
            }
        }
        let c = VisionConfig {
            depth: hf.depth.unwrap_or(32),
            hidden_size: hf.hidden_size.unwrap_or(3584),
            intermediate_size: hf.intermediate_size.unwrap_or(3420),
            num_heads: hf.num_heads.unwrap_or(16),
            in_channels: hf.in_channels.or(hf.in_chans).unwrap_or(3),
            patch_size: hf.patch_size.unwrap_or(14),
            temporal_patch_size: hf.temporal_patch_size.unwrap_or(2),
            spatial_merge_size: hf.spatial_merge_size.unwrap_or(2),
            window_size: hf.window_size.unwrap_or(112),
            out_hidden_size: hf.out_hidden_size.unwrap_or(3584),
            fullatt_block_indexes: hf.fullatt_block_indexes.clone().unwrap_or_else(|| vec![7, 15, 23, 31]),
            rope_theta: hf
                .rope_parameters
                .as_ref()
                .and_then(|p| p.get("rope_theta"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0),
        };
        if c.num_heads == 0 || !c.hidden_size.is_multiple_of(c.num_heads) || !c.head_dim().is_multiple_of(4) {
            return Err(bad(
                "num_heads",
                format!("hidden_size {} / num_heads {} must be a multiple of 4 (2-D RoPE)", c.hidden_size, c.num_heads),
            ));
        }
        if c.spatial_merge_size == 0 || c.patch_size == 0 || c.temporal_patch_size == 0 {
            return Err(bad("spatial_merge_size", "merge, patch and temporal patch sizes must be positive".into()));
        }
        if c.window_tokens() == 0 {
            return Err(bad(
                "window_size",
                format!("{} is smaller than one merged token ({} pixels)", c.window_size, c.spatial_merge_size * c.patch_size),
            ));
        }
        Ok(c)
    }

    /// `vision_config` as transformers 5.23 saves it (see [`crate::vlm::VlmConfig::to_hf_json`]).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "depth": self.depth,
            "fullatt_block_indexes": self.fullatt_block_indexes,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "in_channels": self.in_channels,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "model_type": "qwen2_5_vl_vision",
            "num_heads": self.num_heads,
            "out_hidden_size": self.out_hidden_size,
            "patch_size": self.patch_size,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "axial"},
            "spatial_merge_size": self.spatial_merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "tokens_per_second": 4,
            "window_size": self.window_size,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Length of one flattened patch, `C * T * P * P` (the processor's `pixel_values` width).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// Patches per merged token.
    pub fn merge_unit(&self) -> usize {
        self.spatial_merge_size * self.spatial_merge_size
    }

    /// Merged tokens per window side.
    pub fn window_tokens(&self) -> usize {
        self.window_size / self.spatial_merge_size / self.patch_size
    }
}

/// Bidirectional multi-head attention with a fused `qkv` projection (output laid out
/// `(3, heads, head_dim)`) and 2-D RoPE.
#[derive(Module, Debug)]
pub struct VisionAttention {
    pub qkv: Linear,
    pub proj: Linear,
    pub num_heads: usize,
}

impl VisionAttention {
    /// # Shapes
    /// - x: `[1, patches, hidden]`; cos/sin: `[1, 1, patches, head_dim]`;
    ///   bias: `[1, 1, patches, patches]` (0 inside a window or image, −∞ elsewhere)
    /// - output: `[1, patches, hidden]`
    pub fn forward(&self, x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, bias: Tensor<4>, mode: ForwardMode) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let qkv = self.qkv.forward(x, mode).reshape([b, n, 3, h, hd]);
        let part = |i: usize| qkv.clone().slice([0..b, 0..n, i..i + 1, 0..h, 0..hd]).reshape([b, n, h, hd]).swap_dims(1, 2);
        let q = rope::apply(part(0), cos.clone(), sin.clone());
        let k = rope::apply(part(1), cos, sin);
        let v = part(2);
        let out = kernels::attention(q, k, v, bias, 1.0 / (hd as f64).sqrt());
        let out = out.swap_dims(1, 2).reshape([b, n, d]);
        self.proj.forward(out, mode)
    }
}

/// Pre-norm block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
#[derive(Module, Debug)]
pub struct VisionBlock {
    pub norm1: RmsNorm,
    pub norm2: RmsNorm,
    pub attn: VisionAttention,
    pub mlp: Mlp,
}

impl VisionBlock {
    /// # Shapes
    /// - x: `[1, patches, hidden]`, output: same
    pub fn forward(&self, x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, bias: Tensor<4>, mode: ForwardMode) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), cos, sin, bias, mode);
        x.clone() + self.mlp.forward(self.norm2.forward(x), mode)
    }
}

/// `Qwen2_5_VLPatchMerger`: each run of `merge_unit` consecutive patches (one 2×2 block in the
/// processor's order) is normed, concatenated and projected to the language model's width.
/// `mlp_0` / `mlp_2` are HF's `merger.mlp.0` / `merger.mlp.2` (an `nn.Sequential` around GELU).
#[derive(Module, Debug)]
pub struct PatchMerger {
    pub ln_q: RmsNorm,
    pub mlp_0: Linear,
    pub mlp_2: Linear,
    pub merge_unit: usize,
}

impl PatchMerger {
    /// # Shapes
    /// - x: `[1, patches, hidden]`, output: `[1, patches / merge_unit, out_hidden]`
    pub fn forward(&self, x: Tensor<3>, mode: ForwardMode) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let x = self.ln_q.forward(x).reshape([b, n / self.merge_unit, d * self.merge_unit]);
        // nn.GELU() is the exact (erf) form, as Burn's `gelu`.
        self.mlp_2.forward(gelu(self.mlp_0.forward(x, mode)), mode)
    }
}

/// The vision tower: `visual.*` in HF's checkpoint.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// `patch_embed.proj`, as a linear `[C*T*P*P, hidden]` without bias.
    pub patch_embed: Linear,
    pub blocks: Vec<VisionBlock>,
    pub merger: PatchMerger,
    #[module(skip)]
    pub config: VisionConfig,
}

impl VisionTransformer {
    pub fn device(&self) -> Device {
        self.patch_embed.weight.val().device()
    }

    /// Merged image features, one row per image token, images in `grids` order.
    ///
    /// `grids` holds `(t, h, w)` in patches per image (the processor's `image_grid_thw`); the
    /// rows of `pixel_values` are those images' patches in the processor's order.
    ///
    /// # Shapes
    /// - pixel_values: `[patches, C*T*P*P]`, output: `[patches / merge_unit, out_hidden]`
    pub fn forward(&self, pixel_values: Tensor<2>, grids: &[[usize; 3]], mode: ForwardMode) -> Result<Tensor<2>> {
        let c = &self.config;
        let [n, width] = pixel_values.dims();
        check_grids(c, grids, n, width)?;
        let device = self.device();
        let (cos, sin) = rope_tables(c, grids, &device);
        let (full, windowed) = attention_biases(c, grids, &device);
        let mut x = self.patch_embed.forward(pixel_values.unsqueeze_dim(0), mode);
        for (i, block) in self.blocks.iter().enumerate() {
            let bias = if c.fullatt_block_indexes.contains(&i) { full.clone() } else { windowed.clone() };
            x = block.forward(x, cos.clone(), sin.clone(), bias, mode);
        }
        let merged = self.merger.forward(x, mode);
        let [_, m, d] = merged.dims();
        Ok(merged.reshape([m, d]))
    }

    /// Every linear layer with its path under the model (`model.visual.blocks.0.attn.qkv`, as
    /// PEFT names modules on `Qwen2_5_VLForConditionalGeneration`). The patch embedding (a
    /// convolution in PEFT) is left out.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.visual.blocks.{i}");
            out.push((format!("{p}.attn.qkv"), &mut b.attn.qkv));
            out.push((format!("{p}.attn.proj"), &mut b.attn.proj));
            let m = &mut b.mlp;
            for (name, l) in [("gate_proj", &mut m.gate_proj), ("up_proj", &mut m.up_proj), ("down_proj", &mut m.down_proj)] {
                out.push((format!("{p}.mlp.{name}"), l));
            }
        }
        out
    }

    /// Every tensor under its checkpoint key (`visual.*`) in HF layout: the inverse of
    /// [`VisionTransformer::build`], the patch embedding back to its `Conv3d` kernel.
    pub fn hf_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let c = &self.config;
        let (d, patch_dim) = (c.hidden_size, c.patch_dim());
        let kernel = transpose(&host(self.patch_embed.weight.val()), patch_dim, d);
        let mut out = vec![(
            "visual.patch_embed.proj.weight".to_string(),
            vec![d, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size],
            kernel,
        )];
        let norm = |out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, key: String, n: &RmsNorm| {
            out.push((key, vec![n.weight.dims()[0]], host(n.weight.val())));
        };
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("visual.blocks.{i}");
            norm(&mut out, format!("{p}.norm1.weight"), &b.norm1);
            norm(&mut out, format!("{p}.norm2.weight"), &b.norm2);
            push_linear(&mut out, format!("{p}.attn.qkv"), &b.attn.qkv);
            push_linear(&mut out, format!("{p}.attn.proj"), &b.attn.proj);
            for (name, l) in [("gate_proj", &b.mlp.gate_proj), ("up_proj", &b.mlp.up_proj), ("down_proj", &b.mlp.down_proj)] {
                push_linear(&mut out, format!("{p}.mlp.{name}"), l);
            }
        }
        norm(&mut out, "visual.merger.ln_q.weight".into(), &self.merger.ln_q);
        push_linear(&mut out, "visual.merger.mlp.0".into(), &self.merger.mlp_0);
        push_linear(&mut out, "visual.merger.mlp.2".into(), &self.merger.mlp_2);
        out
    }

    /// Builds the tower from checkpoint tensors under `visual.` (HF shapes).
    pub(crate) fn build(c: &VisionConfig, device: &Device, f: &mut Fetch) -> Result<Self> {
        let (d, ff) = (c.hidden_size, c.intermediate_size);
        let kernel = f(
            "visual.patch_embed.proj.weight",
            &[d, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size],
        )?;
        // [d, C, T, P, P] is row-major [d, C*T*P*P]: the conv kernel is a linear weight.
        let patch_dim = c.patch_dim();
        let weight = Tensor::from_data(TensorData::new(transpose(&kernel, d, patch_dim), [patch_dim, d]), device);
        let patch_embed = Linear { weight: Param::from_tensor(weight), bias: None, lora: None };
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let p = format!("visual.blocks.{i}");
            blocks.push(VisionBlock {
                norm1: norm(f, &format!("{p}.norm1.weight"), d, NORM_EPS, device)?,
                norm2: norm(f, &format!("{p}.norm2.weight"), d, NORM_EPS, device)?,
                attn: VisionAttention {
                    qkv: linear(f, &format!("{p}.attn.qkv"), d, 3 * d, true, device)?,
                    proj: linear(f, &format!("{p}.attn.proj"), d, d, true, device)?,
                    num_heads: c.num_heads,
                },
                mlp: Mlp {
                    gate_proj: linear(f, &format!("{p}.mlp.gate_proj"), d, ff, true, device)?,
                    up_proj: linear(f, &format!("{p}.mlp.up_proj"), d, ff, true, device)?,
                    down_proj: linear(f, &format!("{p}.mlp.down_proj"), ff, d, true, device)?,
                },
            });
        }
        let merged = d * c.merge_unit();
        let merger = PatchMerger {
            ln_q: norm(f, "visual.merger.ln_q.weight", d, NORM_EPS, device)?,
            mlp_0: linear(f, "visual.merger.mlp.0", merged, merged, true, device)?,
            mlp_2: linear(f, "visual.merger.mlp.2", merged, c.out_hidden_size, true, device)?,
            merge_unit: c.merge_unit(),
        };
        Ok(VisionTransformer { patch_embed, blocks, merger, config: c.clone() })
    }
}

/// Image token count of one `(t, h, w)` grid.
pub fn merged_tokens(c: &VisionConfig, grid: [usize; 3]) -> usize {
    grid[0] * grid[1] * grid[2] / c.merge_unit()
}

fn check_grids(c: &VisionConfig, grids: &[[usize; 3]], rows: usize, width: usize) -> Result<()> {
    let err = |m: String| Err(ModelError::ImageInput(m));
    if width != c.patch_dim() {
        return err(format!(
            "pixel_values rows have {width} values; this vision tower takes C*T*P*P = {}",
            c.patch_dim()
        ));
    }
    let m = c.spatial_merge_size;
    for (i, &[t, h, w]) in grids.iter().enumerate() {
        if t == 0 || h == 0 || w == 0 || h % m != 0 || w % m != 0 {
            return err(format!("image {i}: grid ({t}, {h}, {w}) must be positive with h and w multiples of {m}"));
        }
    }
    let patches: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
    if patches != rows {
        return err(format!("image_grid_thw describes {patches} patches but pixel_values has {rows} rows"));
    }
    Ok(())
}

/// Each patch's (h, w) in the processor's order: per image and frame, merge blocks row-major,
/// and within a block its `m × m` patches row-major (`get_vision_position_ids`).
fn patch_coordinates(c: &VisionConfig, grids: &[[usize; 3]]) -> Vec<(usize, usize)> {
    let m = c.spatial_merge_size;
    let mut out = Vec::new();
    for &[t, h, w] in grids {
        for _ in 0..t {
            for bh in 0..h / m {
                for bw in 0..w / m {
                    for ih in 0..m {
                        for iw in 0..m {
                            out.push((bh * m + ih, bw * m + iw));
                        }
                    }
                }
            }
        }
    }
    out
}

/// 2-D RoPE tables `[1, 1, patches, head_dim]`: the first quarter of the frequencies rotate by
/// the row, the second by the column, and the second half repeats the first
/// (`Qwen2_5_VLVisionRotaryEmbedding`).
fn rope_tables(c: &VisionConfig, grids: &[[usize; 3]], device: &Device) -> (Tensor<4>, Tensor<4>) {
    let hd = c.head_dim();
    let spatial = hd / 2;
    let inv: Vec<f64> = (0..spatial / 2).map(|j| 1.0 / c.rope_theta.powf((2 * j) as f64 / spatial as f64)).collect();
    let coords = patch_coordinates(c, grids);
    let (mut cos, mut sin) = (Vec::with_capacity(coords.len() * hd), Vec::with_capacity(coords.len() * hd));
    for &(h, w) in &coords {
        // Angles rounded to f32 as transformers computes them.
        let angles: Vec<f32> = inv.iter().map(|f| (h as f64 * f) as f32).chain(inv.iter().map(|f| (w as f64 * f) as f32)).collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    let shape = [1, 1, coords.len(), hd];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// Attention biases `[1, 1, patches, patches]` for full-attention blocks (each frame of each
/// image attends to itself, transformers' `cu_seqlens`) and window blocks (each window of
/// `window_tokens × window_tokens` merged tokens, cut at the image's right and bottom edges,
/// `get_vision_window_index`).
fn attention_biases(c: &VisionConfig, grids: &[[usize; 3]], device: &Device) -> (Tensor<4>, Tensor<4>) {
    let (m, ws) = (c.spatial_merge_size, c.window_tokens());
    let (mut frame_of, mut window_of) = (Vec::new(), Vec::new());
    let (mut frame, mut window) = (0usize, 0usize);
    for &[t, h, w] in grids {
        let (gh, gw) = (h / m, w / m);
        let (nwh, nww) = (gh.div_ceil(ws), gw.div_ceil(ws));
        for _ in 0..t {
            for bh in 0..gh {
                for bw in 0..gw {
                    let id = window + (bh / ws) * nww + bw / ws;
                    for _ in 0..m * m {
                        frame_of.push(frame);
                        window_of.push(id);
                    }
                }
            }
            frame += 1;
            window += nwh * nww;
        }
    }
    let bias = |group: &[usize]| {
        let n = group.len();
        let mut out = vec![f32::NEG_INFINITY; n * n];
        for i in 0..n {
            for j in 0..n {
                if group[i] == group[j] {
                    out[i * n + j] = 0.0;
                }
            }
        }
        Tensor::from_data(TensorData::new(out, [1, 1, n, n]), device)
    };
    (bias(&frame_of), bias(&window_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window_size: usize) -> VisionConfig {
        let hf: HfVisionConfig = serde_json::from_value(serde_json::json!({
            "depth": 1, "hidden_size": 8, "intermediate_size": 8, "num_heads": 2, "patch_size": 2,
            "spatial_merge_size": 2, "window_size": window_size, "out_hidden_size": 4,
            "fullatt_block_indexes": [0]
        }))
        .unwrap();
        VisionConfig::from_hf(&hf, Path::new("config.json")).unwrap()
    }

    /// Windows of 2×2 merged tokens over a 3×5 merged grid: 2 rows × 3 columns of windows,
    /// the last row and column partial, each window's patches contiguous in merge blocks.
    #[test]
    fn windows_partition_the_grid_with_partial_edges() {
        let c = config(8); // 8 / 2 / 2 = 2 merged tokens per window side
        let grid = [1, 6, 10];
        let mut window_of = Vec::new();
        let (m, ws) = (2, 2);
        for bh in 0..3 {
            for bw in 0..5 {
                window_of.push((bh / ws) * 3 + bw / ws);
            }
        }
        let (_, windowed) = attention_biases(&c, &[grid], &Device::flex());
        let bias = crate::weights::host(windowed);
        let n = 60;
        for i in 0..n {
            for j in 0..n {
                let same = window_of[i / (m * m)] == window_of[j / (m * m)];
                assert_eq!(bias[i * n + j] == 0.0, same, "patches {i}, {j}");
            }
        }
        let sizes: Vec<usize> = (0..6).map(|w| window_of.iter().filter(|&&x| x == w).count()).collect();
        assert_eq!(sizes, vec![4, 4, 2, 2, 2, 1]);
    }

    #[test]
    fn images_attend_only_to_themselves() {
        let c = config(8);
        let (full, _) = attention_biases(&c, &[[1, 2, 2], [2, 2, 2]], &Device::flex());
        let bias = crate::weights::host(full);
        let n = 12;
        let frame = |i: usize| i / 4; // image 0, then image 1's two frames
        for i in 0..n {
            for j in 0..n {
                assert_eq!(bias[i * n + j] == 0.0, frame(i) == frame(j));
            }
        }
    }

    #[test]
    fn patch_coordinates_are_block_major() {
        let c = config(8);
        let coords = patch_coordinates(&c, &[[1, 2, 4]]);
        assert_eq!(coords, vec![(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]);
    }

    #[test]
    fn bad_grids_are_errors() {
        let c = config(8);
        assert!(check_grids(&c, &[[1, 3, 4]], 12, c.patch_dim()).unwrap_err().to_string().contains("multiples of 2"));
        assert!(check_grids(&c, &[[1, 2, 4]], 9, c.patch_dim()).unwrap_err().to_string().contains("8 patches"));
        assert!(check_grids(&c, &[[1, 2, 4]], 8, 5).unwrap_err().to_string().contains("C*T*P*P"));
    }
}
