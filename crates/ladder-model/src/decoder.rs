//! The decoder-only transformer shared by Llama, Qwen2 and Mistral, mirroring transformers'
//! `modeling_llama.py` / `modeling_qwen2.py`: RMSNorm, grouped-query attention with
//! `rotate_half` RoPE, SwiGLU MLP, optional tied embeddings. The architectures differ only in
//! flags resolved by [`crate::config`] (q/k/v bias, tied head, sliding window).
//!
//! Reading order: `RmsNorm`, `Mlp`, `Attention`, `DecoderLayer`, `Decoder`. Over 600 lines on
//! purpose: a model reads top to bottom in one file (candle's `qwen2.rs` is the model), with its
//! shape and numeric tests beside it.

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::config::DecoderConfig;
use crate::kernels;
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
        kernels::rms_norm(x, self.weight.val(), self.eps)
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
        let gate = self.gate_proj.forward(x.clone(), mode);
        let up = self.up_proj.forward(x, mode);
        self.down_proj.forward(kernels::swiglu(gate, up), mode)
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
        let (q, k, v) = self.qkv(x, cos, sin, mode);
        self.attend(q, k, v, bias, mode)
    }

    /// [`Attention::forward`] for new tokens after the keys and values in `cache`, which it
    /// extends. The module itself is unchanged (style point 6).
    ///
    /// # Shapes
    /// - x: `[batch, new, hidden]`; cos/sin: `[batch, 1, new, head_dim]`;
    ///   bias: `[batch, 1, new, cached + new]`
    /// - output: `[batch, new, hidden]`
    pub fn forward_cached(
        &self,
        x: Tensor<3>,
        cos: Tensor<4>,
        sin: Tensor<4>,
        bias: Tensor<4>,
        cache: &mut LayerCache,
        mode: ForwardMode,
    ) -> Tensor<3> {
        let (q, k, v) = self.qkv(x, cos, sin, mode);
        let (k, v) = match cache.kv.take() {
            Some((k0, v0)) => (Tensor::cat(vec![k0, k], 2), Tensor::cat(vec![v0, v], 2)),
            None => (k, v),
        };
        cache.kv = Some((k.clone(), v.clone()));
        self.attend(q, k, v, bias, mode)
    }

    /// Projected heads with RoPE applied: q `[batch, heads, seq, head_dim]`, k and v
    /// `[batch, kv_heads, seq, head_dim]`.
    fn qkv(&self, x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, mode: ForwardMode) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, t, _] = x.dims();
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, d]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone(), mode), h);
        let k = heads(self.k_proj.forward(x.clone(), mode), kv);
        let v = heads(self.v_proj.forward(x, mode), kv);
        let q = rope::apply(q, cos.clone(), sin.clone());
        let k = rope::apply(k, cos, sin);
        (q, k, v)
    }

    /// Softmax attention of `q` over `k`/`v` (any number of keys), then the output projection.
    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>, mode: ForwardMode) -> Tensor<3> {
        let [b, h, t, d] = q.dims();
        let out = kernels::attention(q, k, v, bias, 1.0 / (d as f64).sqrt());
        let out = out.swap_dims(1, 2).reshape([b, t, h * d]);
        self.o_proj.forward(out, mode)
    }
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

    /// [`DecoderLayer::forward`] through [`Attention::forward_cached`].
    pub fn forward_cached(
        &self,
        x: Tensor<3>,
        cos: Tensor<4>,
        sin: Tensor<4>,
        bias: Tensor<4>,
        cache: &mut LayerCache,
        mode: ForwardMode,
    ) -> Tensor<3> {
        let normed = self.input_layernorm.forward(x.clone());
        let x = x + self.self_attn.forward_cached(normed, cos, sin, bias, cache, mode);
        let mlp = self.mlp.forward(self.post_attention_layernorm.forward(x.clone()), mode);
        x + mlp
    }
}

/// One layer's keys (after RoPE) and values, `[batch, kv_heads, cached, head_dim]`.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
}

/// Keys and values of every token a batch has seen so far, with each cached slot's position
/// and segment. Owned by the caller and passed to [`Decoder::hidden_cached`], never stored
/// in the model, so one frozen model can serve several generations at once (style point 6).
///
/// Rows may hold padding slots (segment [`PAD_SEGMENT`]); no real token attends to them.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    batch: usize,
    /// Per row: the position of each cached slot.
    positions: Vec<Vec<u32>>,
    /// Per row: the segment of each cached slot.
    segments: Vec<Vec<u32>>,
}

impl KvCache {
    /// An empty cache for `batch` rows of `model`.
    pub fn new(model: &Decoder, batch: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); model.layers.len()],
            batch,
            positions: vec![Vec::new(); batch],
            segments: vec![Vec::new(); batch],
        }
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of cached slots per row (padding included).
    pub fn len(&self) -> usize {
        self.positions.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the given rows, in that order (finished sequences leave the batch).
    pub fn retain_rows(&mut self, rows: &[usize]) {
        if rows.len() == self.batch && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return;
        }
        let device = self.layers.iter().find_map(|l| l.kv.as_ref().map(|(k, _)| k.device()));
        if let Some(device) = device {
            let index = Tensor::<1, Int>::from_data(
                TensorData::new(rows.iter().map(|&r| r as i64).collect(), [rows.len()]),
                &device,
            );
            for layer in &mut self.layers {
                if let Some((k, v)) = layer.kv.take() {
                    layer.kv = Some((k.select(0, index.clone()), v.select(0, index.clone())));
                }
            }
        }
        self.positions = rows.iter().map(|&r| self.positions[r].clone()).collect();
        self.segments = rows.iter().map(|&r| self.segments[r].clone()).collect();
        self.batch = rows.len();
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
    /// Qwen2-VL's 3-row positions `[3, batch, seq]` (t, h, w), which replace `positions` for
    /// RoPE; see [`crate::vlm::mrope_positions`]. Masking still uses `positions`.
    pub mrope_positions: Option<&'a [u32]>,
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
            mrope_positions: None,
            segments: None,
            shared_prefix: false,
        }
    }

    /// 3-row multimodal positions `[3, batch, seq]` for Qwen2-VL's mrope.
    pub fn mrope_positions(mut self, positions: &'a [u32]) -> Self {
        assert_eq!(positions.len(), 3 * self.batch * self.seq, "mrope positions must be [3, batch, seq]");
        self.mrope_positions = Some(positions);
        self
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
    /// The dtype activations are computed in: f32, or bf16/f16 for mixed precision (set by
    /// [`crate::precision::set_compute_dtype`]). Weights are cast to it where they are used,
    /// so trainable weights keep f32 master copies; logits come back in f32.
    #[module(skip)]
    pub compute: DType,
}

impl Decoder {
    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// Token embeddings of `tokens.ids`.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn embed(&self, tokens: &Tokens) -> Tensor<3> {
        let (b, t) = (tokens.batch, tokens.seq);
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(tokens.ids.iter().map(|&i| i as i64).collect(), [b * t]),
            &self.device(),
        );
        crate::kernels::embedding(self.embed_tokens.val(), ids).reshape([b, t, self.config.hidden_size])
    }

    /// Final hidden states after the last norm.
    ///
    /// # Shapes
    /// - output: `[batch, seq, hidden]`
    pub fn hidden(&self, tokens: &Tokens, mode: ForwardMode) -> Tensor<3> {
        self.hidden_from_embeddings(self.embed(tokens), tokens, mode)
    }

    /// [`Decoder::hidden`] on given input embeddings instead of `tokens.ids`' (a vision-language
    /// model puts image features at its image tokens); `tokens` supplies positions and segments.
    ///
    /// # Shapes
    /// - embeddings: `[batch, seq, hidden]`, output: same
    pub fn hidden_from_embeddings(&self, embeddings: Tensor<3>, tokens: &Tokens, mode: ForwardMode) -> Tensor<3> {
        let device = self.device();
        let (b, t) = (tokens.batch, tokens.seq);
        let default_positions: Vec<u32>;
        let positions = match tokens.positions {
            Some(p) => p,
            None => {
                default_positions = (0..b).flat_map(|_| 0..t as u32).collect();
                &default_positions
            }
        };
        let (cos, sin) = match tokens.mrope_positions {
            Some(p) => self.rope.cos_sin_mrope(p, b, t, &device),
            None => self.rope.cos_sin(positions, b, t, &device),
        };
        let bias = attention_bias(tokens, positions, self.config.sliding_window, &device);
        let (mut x, cos, sin, bias) = self.in_compute_dtype(embeddings, cos, sin, bias);
        for layer in &self.layers {
            x = layer.forward(x, cos.clone(), sin.clone(), bias.clone(), mode);
        }
        self.norm.forward(x)
    }

    /// The layers' inputs in [`Decoder::compute`]'s dtype (a no-op in f32).
    fn in_compute_dtype(&self, x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, bias: Tensor<4>) -> (Tensor<3>, Tensor<4>, Tensor<4>, Tensor<4>) {
        let d = self.compute;
        (x.cast(d), cos.cast(d), sin.cast(d), bias.cast(d))
    }

    /// The LM head as one `[hidden, vocab]` matrix (the transposed embedding when tied), or
    /// `None` when the head has a bias or an active LoRA adapter and so is more than a matrix.
    pub fn head_weight(&self, mode: ForwardMode) -> Option<Tensor<2>> {
        match &self.lm_head {
            None => Some(self.embed_tokens.val().transpose()),
            Some(head) if head.bias.is_none() && (head.lora.is_none() || !mode.adapters) => Some(head.weight.val()),
            Some(_) => None,
        }
    }

    /// Vocabulary logits for hidden states, in f32 whatever the compute dtype (softmax and
    /// losses over a vocabulary need its range and precision).
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, output: `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<3>, mode: ForwardMode) -> Tensor<3> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden, mode),
            None => {
                let [b, t, h] = hidden.dims();
                let w = self.embed_tokens.val().cast(hidden.dtype());
                let v = w.dims()[0];
                hidden.reshape([b * t, h]).matmul(w.transpose()).reshape([b, t, v])
            }
        };
        logits.cast(DType::F32)
    }

    /// `logits(hidden(tokens))`.
    pub fn forward(&self, tokens: &Tokens, mode: ForwardMode) -> Tensor<3> {
        self.logits(self.hidden(tokens, mode), mode)
    }

    /// Final hidden states of `tokens`, which continue the rows already in `cache` (empty for
    /// a prefill); `cache` is extended with them. `tokens.positions` default to continuing
    /// each row's last position; `tokens.segments` mark padding as in [`Decoder::hidden`].
    /// Equal, up to float rounding, to [`Decoder::hidden`] on the concatenated rows.
    ///
    /// # Shapes
    /// - output: `[batch, new, hidden]`
    pub fn hidden_cached(&self, tokens: &Tokens, cache: &mut KvCache, mode: ForwardMode) -> Tensor<3> {
        self.hidden_cached_from_embeddings(self.embed(tokens), tokens, cache, mode)
    }

    /// [`Decoder::hidden_cached`] on given input embeddings (see
    /// [`Decoder::hidden_from_embeddings`]). With `tokens.mrope_positions`, each cached slot
    /// records the largest of its three positions, so later tokens continue from the largest
    /// position + 1, as transformers' `rope_deltas` make them.
    ///
    /// # Shapes
    /// - embeddings: `[batch, new, hidden]`, output: same
    pub fn hidden_cached_from_embeddings(
        &self,
        embeddings: Tensor<3>,
        tokens: &Tokens,
        cache: &mut KvCache,
        mode: ForwardMode,
    ) -> Tensor<3> {
        let device = self.device();
        let (b, t) = (tokens.batch, tokens.seq);
        assert_eq!(b, cache.batch, "tokens and cache disagree on the batch size");
        let positions: Vec<u32> = match (tokens.positions, tokens.mrope_positions) {
            (Some(p), _) => p.to_vec(),
            (None, Some(m)) => (0..b * t).map(|i| m[i].max(m[b * t + i]).max(m[2 * b * t + i])).collect(),
            (None, None) => (0..b)
                .flat_map(|r| {
                    let next = cache.positions[r].last().map_or(0, |p| p + 1);
                    next..next + t as u32
                })
                .collect(),
        };
        let segments: Vec<u32> = tokens.segments.map_or_else(|| vec![0; b * t], <[u32]>::to_vec);
        for r in 0..b {
            cache.positions[r].extend_from_slice(&positions[r * t..(r + 1) * t]);
            cache.segments[r].extend_from_slice(&segments[r * t..(r + 1) * t]);
        }
        let (cos, sin) = match tokens.mrope_positions {
            Some(m) => self.rope.cos_sin_mrope(m, b, t, &device),
            None => self.rope.cos_sin(&positions, b, t, &device),
        };
        let keys = cache.len();
        let bias = bias_over_keys(b, t, keys - t, &cache.positions, &cache.segments, false, self.config.sliding_window, &device);
        let (mut x, cos, sin, bias) = self.in_compute_dtype(embeddings, cos, sin, bias);
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward_cached(x, cos.clone(), sin.clone(), bias.clone(), layer_cache, mode);
        }
        self.norm.forward(x)
    }
}

/// Additive attention bias `[batch, 1, seq, seq]`: 0 where query i may attend key j (causal,
/// same segment or the shared prompt, within the sliding window), −∞ elsewhere. A padding
/// query attends only to itself so its softmax stays finite; its output is never used.
fn attention_bias(
    tokens: &Tokens,
    positions: &[u32],
    window: Option<usize>,
    device: &Device,
) -> Tensor<4> {
    let (b, t) = (tokens.batch, tokens.seq);
    let rows = |v: &[u32]| (0..b).map(|r| v[r * t..(r + 1) * t].to_vec()).collect::<Vec<_>>();
    let segments = tokens.segments.map_or_else(|| vec![vec![0; t]; b], rows);
    bias_over_keys(b, t, 0, &rows(positions), &segments, tokens.shared_prefix, window, device)
}

/// The bias of [`attention_bias`] for `queries` new tokens that sit at key slots
/// `offset..offset + queries` of rows described by each key slot's position and segment:
/// `[batch, 1, queries, keys]`. With `shared_prefix`, segment 0 is visible to every segment.
#[allow(clippy::too_many_arguments)]
fn bias_over_keys(
    batch: usize,
    queries: usize,
    offset: usize,
    positions: &[Vec<u32>],
    segments: &[Vec<u32>],
    shared_prefix: bool,
    window: Option<usize>,
    device: &Device,
) -> Tensor<4> {
    let keys = offset + queries;
    let mut bias = vec![f32::NEG_INFINITY; batch * queries * keys];
    for row in 0..batch {
        let (pos, seg) = (&positions[row], &segments[row]);
        for q in 0..queries {
            let i = offset + q;
            let out = &mut bias[(row * queries + q) * keys..(row * queries + q + 1) * keys];
            if seg[i] == PAD_SEGMENT {
                out[i] = 0.0;
                continue;
            }
            for (j, o) in out.iter_mut().enumerate().take(i + 1) {
                let in_window = window.is_none_or(|w| (pos[i] as usize) < pos[j] as usize + w);
                let visible = seg[j] == seg[i] || (shared_prefix && seg[j] == 0);
                if visible && in_window {
                    *o = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(bias, [batch, 1, queries, keys]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, DecoderConfig};
    use crate::weights::{host, random_decoder};

    fn config(window: Option<usize>) -> DecoderConfig {
        DecoderConfig {
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            sliding_window: window,
            ..DecoderConfig::new(Architecture::Qwen2, 50, 32, 48, 2, 4, 2)
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

    /// Prefill of a left-padded batch, then one token at a time through the cache, gives the
    /// logits of the full forward on each row alone (with and without a sliding window).
    #[test]
    fn cached_forward_equals_full_forward() {
        for window in [None, Some(3)] {
            let model = random_decoder(&config(window), 0.5, 4, &Device::flex());
            let v = 50;
            let rows: [&[u32]; 2] = [&[5, 6, 7, 8, 9, 10, 11], &[12, 13, 14, 15, 16, 17, 18]];
            let prompt_lens = [4, 2];
            let pad = 4 - 2;
            // Prefill: row 1 left-padded by two.
            let ids = [5, 6, 7, 8, 0, 0, 12, 13];
            let positions = [0, 1, 2, 3, 0, 0, 0, 1];
            let segments = [0, 0, 0, 0, PAD_SEGMENT, PAD_SEGMENT, 0, 0];
            let mut cache = KvCache::new(&model, 2);
            let mode = ForwardMode::default();
            let prefill = Tokens::new(&ids, 2, 4).positions(&positions).segments(&segments);
            let mut got: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
            let h = host(model.logits(model.hidden_cached(&prefill, &mut cache, mode), mode));
            got[0].extend_from_slice(&h[..4 * v]);
            got[1].extend_from_slice(&h[(4 + pad) * v..8 * v]);
            for step in 0..3 {
                let next = [rows[0][prompt_lens[0] + step], rows[1][prompt_lens[1] + step]];
                let h = host(model.logits(model.hidden_cached(&Tokens::new(&next, 2, 1), &mut cache, mode), mode));
                got[0].extend_from_slice(&h[..v]);
                got[1].extend_from_slice(&h[v..]);
            }
            assert_eq!(cache.len(), 7);
            let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
            for r in 0..2 {
                let n = prompt_lens[r] + 3;
                let want = logits(&model, &Tokens::new(&rows[r][..n], 1, n));
                let d = diff(&got[r], &want);
                assert!(d < 1e-4, "row {r} window {window:?}: max diff {d:.2e}");
            }
            // Dropping a row keeps the other's cache intact.
            cache.retain_rows(&[1]);
            let h = host(model.logits(model.hidden_cached(&Tokens::new(&[rows[1][5]], 1, 1), &mut cache, mode), mode));
            let want = logits(&model, &Tokens::new(&rows[1][..6], 1, 6));
            assert!(diff(&h, &want[5 * v..]) < 1e-4);
        }
    }
}
