//! Rotary position embeddings as transformers' `LlamaRotaryEmbedding` computes them: the
//! `rotate_half` layout (first half / second half of each head), not Burn's interleaved
//! `RotaryEncoding`, with Llama 3.1 and linear frequency scaling.
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
        Rope {
            inv_freq,
            position_scale,
        }
    }

    /// `cos` and `sin` for the given positions, each `[batch, 1, seq, head_dim]`.
    pub fn cos_sin(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let mut cos = Vec::with_capacity(positions.len() * dim);
        let mut sin = Vec::with_capacity(positions.len() * dim);
        for &p in positions {
            let p = p as f64 * self.position_scale;
            // transformers computes the angles in f32; rounding the angle the same way keeps
            // long positions within f32 noise of the reference.
            let angles: Vec<f32> = self.inv_freq.iter().map(|f| (p * f) as f32).collect();
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
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}
