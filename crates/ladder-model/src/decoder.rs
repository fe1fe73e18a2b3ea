//! The decoder-only transformer shared by Llama, Qwen2 and Mistral, mirroring transformers'
//! `modeling_llama.py` / `modeling_qwen2.py`: RMSNorm, grouped-query attention with
//! `rotate_half` RoPE, SwiGLU MLP, optional tied embeddings. The architectures differ only in
//! flags resolved by [`crate::config`] (q/k/v bias, tied head, sliding window).
//!
//! Reading order: `RmsNorm`, `Mlp`, `Attention`, `DecoderLayer`, `Decoder`.

use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::DecoderConfig;
use crate::linear::{ForwardMode, Linear};
use crate::rope::{self, Rope};

/// Segment id marking padding in [`Tokens::segments`].
pub const PAD_SEGMENT: u32 = u32::MAX;

/// Root-mean-square norm computed in f32, as `LlamaRMSNorm`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// # Shapes
    /// - input: `[..., d]`, output: same
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variance = x.clone().square().mean_dim(D - 1);
        let normed = x * (variance + self.eps).sqrt().recip();
        let mut shape = [1usize; D];
        shape[D - 1] = self.weight.shape().dims::<1>()[0];
        normed * self.weight.val().reshape(shape)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// # Shapes
    /// - input/output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, mode: ForwardMode) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone(), mode));
        let up = self.up_proj.forward(x, mode);
        self.down_proj.forward(gate * up, mode)
    }
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`; cos/sin: `[batch, 1, seq, head_dim]`;
    ///   bias: `[batch, 1, seq, seq]` (0 where attention is allowed, −∞ elsewhere)
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: Tensor<4>,
        sin: Tensor<4>,
        bias: Tensor<4>,
        mode: ForwardMode,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, d]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone(), mode), h);
        let k = heads(self.k_proj.forward(x.clone(), mode), kv);
        let v = heads(self.v_proj.forward(x, mode), kv);
        let q = rope::apply(q, cos.clone(), sin.clone());
        let k = rope::apply(k, cos, sin);
        // transformers' `repeat_kv`: query head i reads key/value head i / groups.
        let (k, v) = (repeat_kv(k, h / kv), repeat_kv(v, h / kv));
        let scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (d as f64).sqrt()) + bias;
        let out = softmax(scores, 3).matmul(v);
        let out = out.swap_dims(1, 2).reshape([b, t, h * d]);
        self.o_proj.forward(out, mode)
    }
}

fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, groups, t, d])
        .reshape([b, kv * groups, t, d])
}

/// Pre-norm transformer block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: Tensor<4>,
        sin: Tensor<4>,
        bias: Tensor<4>,
        mode: ForwardMode,
    ) -> Tensor<3> {
        let attn = self
            .self_attn
            .forward(self.input_layernorm.forward(x.clone()), cos, sin, bias, mode);
        let x = x + attn;
        let mlp = self.mlp.forward(self.post_attention_layernorm.forward(x.clone()), mode);
        x + mlp
    }
}

/// A batch of token ids with their positions and segments (host-side, row-major
/// `[batch, seq]`).
///
/// Segments implement padding, packing and shared prompts: a token attends to earlier tokens of
/// its own segment, [`PAD_SEGMENT`] marks padding, and with [`Tokens::shared_prefix`] segment 0
/// is a prompt that every later segment of the row also sees (DPO lays out
/// `prompt | chosen | rejected` in one row, both completions positioned right after the prompt,
/// so the prompt is computed once per pair).
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    pub ids: &'a [u32],
    pub batch: usize,
    pub seq: usize,
    pub positions: Option<&'a [u32]>,
    pub segments: Option<&'a [u32]>,
    pub shared_prefix: bool,
}

impl<'a> Tokens<'a> {
    /// Unpadded rows of equal length; positions 0..seq.
    pub fn new(ids: &'a [u32], batch: usize, seq: usize) -> Self {
        assert_eq!(ids.len(), batch * seq, "ids must be [batch, seq]");
        Tokens {
            ids,
            batch,
            seq,
            positions: None,
            segments: None,
            shared_prefix: false,
        }
    }

    pub fn positions(mut self, positions: &'a [u32]) -> Self {
        self.positions = Some(positions);
        self
    }

    pub fn segments(mut self, segments: &'a [u32]) -> Self {
        self.segments = Some(segments);
        self
    }

    /// Makes segment 0 of each row visible to every segment of that row.
    pub fn shared_prefix(mut self) -> Self {
        self.shared_prefix = true;
        self
    }
}

/// The causal language model: `model.*` and `lm_head` in HF's key tree.
#[derive(Module, Debug)]
pub struct Decoder {
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: DecoderConfig,
    #[module(skip)]
    pub rope: Rope,
}

impl Decoder {
    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// Final hidden states after the last norm.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn hidden(&self, tokens: &Tokens, mode: ForwardMode) -> Tensor<3> {
        let device = self.device();
        let (b, t) = (tokens.batch, tokens.seq);
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(tokens.ids.iter().map(|&i| i as i64).collect(), [b * t]),
            &device,
        );
        let hidden = self.config.hidden_size;
        let mut x = self.embed_tokens.val().select(0, ids).reshape([b, t, hidden]);
        let default_positions: Vec<u32>;
        let positions = match tokens.positions {
            Some(p) => p,
            None => {
                default_positions = (0..b).flat_map(|_| 0..t as u32).collect();
                &default_positions
            }
        };
        let (cos, sin) = self.rope.cos_sin(positions, b, t, &device);
        let bias = attention_bias(tokens, positions, self.config.sliding_window, &device);
        for layer in &self.layers {
            x = layer.forward(x, cos.clone(), sin.clone(), bias.clone(), mode);
        }
        self.norm.forward(x)
    }

    /// Vocabulary logits for hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, output: `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<3>, mode: ForwardMode) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden, mode),
            None => {
                let [b, t, h] = hidden.dims();
                let w = self.embed_tokens.val();
                let v = w.dims()[0];
                hidden.reshape([b * t, h]).matmul(w.transpose()).reshape([b, t, v])
            }
        }
    }

    /// `logits(hidden(tokens))`.
    pub fn forward(&self, tokens: &Tokens, mode: ForwardMode) -> Tensor<3> {
        self.logits(self.hidden(tokens, mode), mode)
    }
}

/// Additive attention bias `[batch, 1, seq, seq]`: 0 where query i may attend key j (causal,
/// same segment or the shared prompt, within the sliding window), −∞ elsewhere. A padding query attends only to
/// itself so its softmax stays finite; its output is never used.
fn attention_bias(
    tokens: &Tokens,
    positions: &[u32],
    window: Option<usize>,
    device: &Device,
) -> Tensor<4> {
    let (b, t) = (tokens.batch, tokens.seq);
    let mut bias = vec![f32::NEG_INFINITY; b * t * t];
    for row in 0..b {
        let seg = |i: usize| tokens.segments.map_or(0, |s| s[row * t + i]);
        for i in 0..t {
            let out = &mut bias[(row * t + i) * t..(row * t + i + 1) * t];
            if seg(i) == PAD_SEGMENT {
                out[i] = 0.0;
                continue;
            }
            for (j, o) in out.iter_mut().enumerate().take(i + 1) {
                let in_window = window.is_none_or(|w| {
                    (positions[row * t + i] as usize) < positions[row * t + j] as usize + w
                });
                let visible = seg(j) == seg(i) || (tokens.shared_prefix && seg(j) == 0);
                if visible && in_window {
                    *o = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(bias, [b, 1, t, t]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, DecoderConfig};
    use crate::weights::{host, random_decoder};

    fn config(window: Option<usize>) -> DecoderConfig {
        DecoderConfig {
            architecture: Architecture::Qwen2,
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 48,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            qkv_bias: true,
            o_bias: false,
            mlp_bias: false,
            sliding_window: window,
            bos_token_id: None,
            eos_token_ids: vec![],
        }
    }

    fn logits(model: &Decoder, tokens: &Tokens) -> Vec<f32> {
        host(model.forward(tokens, ForwardMode::default()))
    }

    #[test]
    fn future_tokens_do_not_change_past_logits() {
        let model = random_decoder(&config(None), 0.5, 1, &Device::flex());
        let a = logits(&model, &Tokens::new(&[1, 2, 3, 4, 5, 6], 1, 6));
        let b = logits(&model, &Tokens::new(&[1, 2, 3, 4, 9, 9], 1, 6));
        let v = 50;
        let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(diff(&a[..4 * v], &b[..4 * v]) < 1e-5, "causal mask leaks the future");
        assert!(diff(&a[4 * v..], &b[4 * v..]) > 1e-3, "later logits should change");
    }

    #[test]
    fn packed_row_equals_separate_rows_and_padding_is_inert() {
        let model = random_decoder(&config(None), 0.5, 2, &Device::flex());
        let v = 50;
        let first = logits(&model, &Tokens::new(&[7, 8, 9], 1, 3));
        let second = logits(&model, &Tokens::new(&[10, 11], 1, 2));
        // One row holding both, positions restarting, then one padding token.
        let ids = [7, 8, 9, 10, 11, 0];
        let positions = [0, 1, 2, 0, 1, 0];
        let segments = [0, 0, 0, 1, 1, PAD_SEGMENT];
        let packed = logits(&model, &Tokens::new(&ids, 1, 6).positions(&positions).segments(&segments));
        let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(diff(&packed[..3 * v], &first) < 1e-5);
        assert!(diff(&packed[3 * v..5 * v], &second) < 1e-5);
        assert!(packed.iter().all(|x| x.is_finite()), "padding rows must stay finite");
    }

    #[test]
    fn shared_prompt_row_equals_two_separate_rows() {
        let model = random_decoder(&config(None), 0.5, 4, &Device::flex());
        let v = 50;
        let chosen = logits(&model, &Tokens::new(&[5, 6, 7, 8, 9], 1, 5));
        let rejected = logits(&model, &Tokens::new(&[5, 6, 7, 20, 21, 22], 1, 6));
        // prompt 5 6 7 | chosen 8 9 | rejected 20 21 22, both completions at positions 3...
        let ids = [5, 6, 7, 8, 9, 20, 21, 22];
        let positions = [0, 1, 2, 3, 4, 3, 4, 5];
        let segments = [0, 0, 0, 1, 1, 2, 2, 2];
        let row = Tokens::new(&ids, 1, 8).positions(&positions).segments(&segments).shared_prefix();
        let shared = logits(&model, &row);
        let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(diff(&shared[..5 * v], &chosen) < 1e-5);
        assert!(diff(&shared[5 * v..], &rejected[3 * v..]) < 1e-5);
    }

    #[test]
    fn sliding_window_limits_attention() {
        let full = random_decoder(&config(None), 0.5, 3, &Device::flex());
        let mut windowed = full.clone();
        windowed.config.sliding_window = Some(2);
        let ids = [1, 2, 3, 4, 5];
        let a = logits(&full, &Tokens::new(&ids, 1, 5));
        let b = logits(&windowed, &Tokens::new(&ids, 1, 5));
        let v = 50;
        // Positions 0 and 1 see at most 2 tokens either way; position 4 sees fewer when windowed.
        let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(diff(&a[..2 * v], &b[..2 * v]) < 1e-5);
        assert!(diff(&a[4 * v..], &b[4 * v..]) > 1e-4);
    }
}
