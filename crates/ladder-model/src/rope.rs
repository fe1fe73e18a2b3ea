//! Rotary position embeddings as transformers' `LlamaRotaryEmbedding` computes them: the
//! `rotate_half` layout (first half / second half of each head), not Burn's interleaved
//! `RotaryEncoding`, with Llama 3.1 and linear frequency scaling.
//!
//! Qwen2-VL's multimodal RoPE (`mrope_section`) is the same rotation with three position rows
//! (temporal, height, width): frequency `i` takes its position from the row of the section it
//! falls in, as `Qwen2_5_VLRotaryEmbedding.recomposition_frequencies` does.
//!
//! Angles are computed on the host in f64 for exactly the positions of the batch, so packed
//! sequences (positions restarting inside a row) cost nothing extra.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{DecoderConfig, RopeScaling};

/// Inverse frequencies of one head, after scaling.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f64>,
    position_scale: f64,
    /// For each frequency, the mrope row (0 = t, 1 = h, 2 = w) its position comes from.
    mrope_rows: Option<Vec<usize>>,
}

impl Rope {
    pub fn new(config: &DecoderConfig) -> Self {
        let dim = config.head_dim;
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        let mut position_scale = 1.0;
        match config.rope_scaling {
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                // transformers' `_compute_llama3_parameters`.
                let old = original_max_position_embeddings as f64;
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_freq_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_freq_wavelen {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            Some(RopeScaling::Linear { factor }) => position_scale = 1.0 / factor,
            None => {}
        }
        // transformers: `freq.split(mrope_section)`, chunk i from row i % 3.
        let mrope_rows = config.mrope_section.as_ref().map(|sections| {
            sections.iter().enumerate().flat_map(|(i, &n)| std::iter::repeat_n(i % 3, n)).collect()
        });
        Rope {
            inv_freq,
            position_scale,
            mrope_rows,
        }
    }

    /// Whether this is Qwen2-VL's multimodal RoPE.
    pub fn is_mrope(&self) -> bool {
        self.mrope_rows.is_some()
    }

    /// `cos` and `sin` for the given positions, each `[batch, 1, seq, head_dim]`.
    pub fn cos_sin(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        self.table(positions.len(), |i, _| positions[i], batch, seq, device)
    }

    /// [`Rope::cos_sin`] for 3-row multimodal positions `[3, batch * seq]` (row-major: all
    /// temporal positions, then height, then width). Without `mrope_section` the temporal row
    /// is used, which is what a text-only model would see.
    pub fn cos_sin_mrope(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let n = batch * seq;
        assert_eq!(positions.len(), 3 * n, "mrope positions must be [3, batch * seq]");
        match &self.mrope_rows {
            Some(rows) => self.table(n, |i, f| positions[rows[f] * n + i], batch, seq, device),
            None => self.table(n, |i, _| positions[i], batch, seq, device),
        }
    }

    /// `cos`/`sin` `[batch, 1, seq, head_dim]` where token `i`, frequency `f` sits at
    /// `position(i, f)`.
    fn table(
        &self,
        n: usize,
        position: impl Fn(usize, usize) -> u32,
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let mut cos = Vec::with_capacity(n * dim);
        let mut sin = Vec::with_capacity(n * dim);
        for i in 0..n {
            // transformers computes the angles in f32; rounding the angle the same way keeps
            // long positions within f32 noise of the reference.
            let angles: Vec<f32> = self
                .inv_freq
                .iter()
                .enumerate()
                .map(|(f, inv)| (position(i, f) as f64 * self.position_scale * inv) as f32)
                .collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let shape = [batch, 1, seq, dim];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }
}

/// `x * cos + rotate_half(x) * sin` for `x: [batch, heads, seq, head_dim]`.
pub fn apply(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    crate::kernels::rope(x, cos, sin)
}
