//! Fused CPU kernels for the training hot path, each with its own backward pass.
//!
//! Burn's autodiff builds RMSNorm, SwiGLU and softmax attention out of a dozen primitive
//! operations each, and records every intermediate for the backward pass: on the CPU that is a
//! dozen passes over memory and a dozen buffers per call. Here each is one operation (a Burn
//! backend extension): a parallel single pass forward, and a backward pass written by hand that
//! keeps only what it needs (the inputs and, for attention, one log-sum-exp per query instead
//! of the `[batch, heads, queries, keys]` probabilities).
//!
//! Attention also handles grouped-query heads without copying keys and values per query head:
//! the query heads of one key/value head are laid end to end as one taller matrix.
//!
//! Linear layers, LoRA included, are one operation too: the adapter's product is added into
//! the base output, and its share of the input gradient into the base share, which flex's
//! `matmul` (it neither accumulates nor writes into memory it did not first zero and copy)
//! cannot do.
//!
//! The fused path runs on the `flex` CPU backend in f32; any other device or dtype takes the
//! reference composition below (the same formulas as transformers), which the tests compare
//! the fused kernels against. `LADDER_UNFUSED=1` forces the reference path everywhere.
//!
//! Layout: this file holds the public functions and their references; [`cpu`] the kernels on
//! slices and the `Flex` forward and backward; [`gemm`] the matrix products they all use (the
//! one module allowed `unsafe`); [`grad`] their registration with autodiff; [`profile`] the timers
//! of `ladder bench --profile`.

pub mod adamw_8bit;
mod attention;
mod cpu;
mod gemm;
mod grad;
mod low_rank;
pub mod profile;

pub use cpu::simd_level;

use std::sync::OnceLock;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Dispatch};
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};

/// The fused operations as a backend extension: implemented for `Flex` and `Autodiff<Flex>`.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: burn::backend::Backend {
    /// `silu(gate) * up`, element-wise.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// RMSNorm over the last dimension, times `weight`.
    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
    /// `softmax(q·kᵀ·scale + bias)·v` with grouped-query heads.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
    /// Rotary embedding, `rotate_half` layout: `x·cos + rotate_half(x)·sin`.
    fn fused_rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x·w`: `[n, d_in]·[d_in, d_out]`.
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x·w + scale·(x·a)·b`: a linear layer with a LoRA adapter.
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
    /// [`FusedOps::fused_lora_linear`] with dropout of the adapter's input (see [`Dropout`]).
    fn fused_lora_dropout_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        seed: u64,
        keep: f32,
    ) -> FloatTensor<Self>;
    /// One AdamW step on flat parameters, gradients and moments: the new `(p, m, v)`.
    fn fused_adamw(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Per row: `[log softmax(hidden·weight)[target], mean(hidden·weight)]`.
    fn fused_token_logprobs(hidden: FloatTensor<Self>, weight: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self>;
    /// Rows `ids` of `table`: an embedding lookup.
    fn fused_embedding(table: FloatTensor<Self>, ids: IntTensor<Self>) -> FloatTensor<Self>;
}

/// Whether `tensor` can take the fused path: f32 on the flex CPU backend.
fn fused_for(tensor_device: &Device, dtype: DType) -> bool {
    static UNFUSED: OnceLock<bool> = OnceLock::new();
    let unfused = *UNFUSED.get_or_init(|| std::env::var_os("LADDER_UNFUSED").is_some_and(|v| v != "0"));
    !unfused && dtype == DType::F32 && tensor_device.clone().inner() == Device::flex()
}

/// `silu(gate) * up`, the SwiGLU gate.
///
/// # Shapes
/// - gate, up, output: any, equal
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if fused_for(&gate.device(), gate.dtype()) && gate.dims() == up.dims() {
        Tensor::from_dispatch(Dispatch::fused_swiglu(gate.into_dispatch(), up.into_dispatch()))
    } else {
        swiglu_reference(gate, up)
    }
}

pub fn swiglu_reference<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

/// Rows `ids` of `table`, an embedding lookup.
///
/// Its backward pass is why it is fused. Burn's `select` builds the table's gradient in a
/// zeroed tensor, which flex allocates as bytes and then copies to align it: two
/// vocabulary-sized buffers. When the table is also the LM head (tied embeddings) they came on
/// top of the head's own gradient, at the end of the backward pass: the step's peak in full
/// fine-tuning, 1,038 MiB above the gradients themselves at Qwen2.5-0.5B. Here the gradient
/// is one zeroed `Vec` of which only the looked-up rows are written, and it is added into the
/// head's gradient in place, so its other rows are never touched (see `grad.rs`).
///
/// # Shapes
/// - table: `[vocab, hidden]`; ids: `[n]`; output: `[n, hidden]`
pub fn embedding(table: Tensor<2>, ids: Tensor<1, Int>) -> Tensor<2> {
    if fused_for(&table.device(), table.dtype()) {
        Tensor::from_dispatch(Dispatch::fused_embedding(table.into_dispatch(), ids.into_dispatch()))
    } else {
        embedding_reference(table, ids)
    }
}

pub fn embedding_reference(table: Tensor<2>, ids: Tensor<1, Int>) -> Tensor<2> {
    table.select(0, ids)
}

/// RMSNorm computed in f32, as `LlamaRMSNorm`: `x / sqrt(mean(x²) + eps) * weight`.
///
/// # Shapes
/// - x: `[..., d]`, weight: `[d]`, output: same as x
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    if fused_for(&x.device(), x.dtype()) && weight.dtype() == DType::F32 {
        Tensor::from_dispatch(Dispatch::fused_rms_norm(x.into_dispatch(), weight.into_dispatch(), eps as f32))
    } else {
        rms_norm_reference(x, weight, eps)
    }
}

/// In f32 for any input dtype, then cast back before the weight multiplies it, as
/// `LlamaRMSNorm` does under bf16.
pub fn rms_norm_reference<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let variance = x.clone().square().mean_dim(D - 1);
    let normed = (x * (variance + eps).sqrt().recip()).cast(dtype);
    let mut shape = [1usize; D];
    shape[D - 1] = weight.dims()[0];
    normed * weight.cast(dtype).reshape(shape)
}

/// Softmax attention with grouped-query heads: query head `i` reads key/value head
/// `i / (heads / kv_heads)`, as transformers' `repeat_kv`.
///
/// # Shapes
/// - q: `[batch, heads, queries, head_dim]`; k, v: `[batch, kv_heads, keys, head_dim]`
/// - bias: `[batch, 1, queries, keys]`, added to the scaled scores (−∞ hides a key)
/// - output: `[batch, heads, queries, head_dim]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
    let [b, h, tq, _] = q.dims();
    let [_, kv, tk, _] = k.dims();
    let fits = h % kv == 0 && bias.dims() == [b, 1, tq, tk];
    if fits && fused_for(&q.device(), q.dtype()) {
        Tensor::from_dispatch(Dispatch::fused_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            bias.into_dispatch(),
            scale as f32,
        ))
    } else if fits && on_gpu(&q.device()) && ![&q, &k, &v].iter().any(|t| t.is_tracked()) && scale == 1.0 / (q.dims()[3] as f64).sqrt() {
        flash_attention(q, k, v, bias)
    } else {
        attention_reference(q, k, v, bias, scale)
    }
}

/// Whether `device` is a GPU backend (anything but flex, Burn's CPU backend).
fn on_gpu(device: &Device) -> bool {
    device.clone().inner() != Device::flex()
}

/// Attention through Burn's `module::attention`, which on its GPU backends autotunes between
/// flash-attention kernels and its own composition. Without autodiff only (inference, DPO's
/// reference pass): under autodiff Burn falls back to the composition, as the training path
/// does. Its flash kernels take a boolean mask and the default scale, not an additive bias, so
/// the −∞ entries of `bias` become the mask, and key/value heads are repeated per query head.
fn flash_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    let [b, h, tq, _] = q.dims();
    let [_, kv, tk, _] = k.dims();
    let (k, v) = (repeat_kv(k, h / kv), repeat_kv(v, h / kv));
    let mask = bias.lower_elem(f32::MIN).expand([b, h, tq, tk]);
    burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())
}

pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
    let h = q.dims()[1];
    let kv = k.dims()[1];
    let (k, v) = (repeat_kv(k, h / kv), repeat_kv(v, h / kv));
    let dtype = q.dtype();
    let scores = q.matmul(k.swap_dims(2, 3)) * scale + bias;
    // The softmax in f32 under mixed precision, as transformers' eager attention.
    softmax(scores.cast(DType::F32), 3).cast(dtype).matmul(v)
}

fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, kv, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2).expand([b, kv, groups, t, d]).reshape([b, kv * groups, t, d])
}

/// `x·w`, a linear layer's product.
///
/// # Shapes
/// - x: `[n, d_in]`; w: `[d_in, d_out]`; output: `[n, d_out]`
pub fn linear(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if fused_for(&x.device(), x.dtype()) && w.dtype() == DType::F32 && x.dims()[1] == w.dims()[0] {
        Tensor::from_dispatch(Dispatch::fused_linear(x.into_dispatch(), w.into_dispatch()))
    } else {
        x.matmul(w)
    }
}

/// LoRA dropout of one layer call: element `i` of the adapter's input is kept, and scaled by
/// `1/keep`, when the SplitMix64 hash of `(seed, i)` falls below `keep`. A hash rather than a
/// stored mask: the fused backward pass regenerates it instead of keeping a `[n, d_in]` mask
/// per layer, and drawing every element from Burn's generator had cost LoRA with dropout 40%
/// of its speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub seed: u64,
    pub keep: f64,
}

impl Dropout {
    /// A new mask, its seed drawn from `device`'s generator, so a run stays a function of its
    /// seed and step.
    pub fn draw(keep: f64, device: &Device) -> Dropout {
        let draws = Tensor::<1>::random([2], Distribution::Uniform(0.0, 1.0), &device.clone().inner());
        let bits: Vec<u64> = draws.into_data().convert::<f32>().iter::<f32>().map(|v| u64::from(v.to_bits())).collect();
        Dropout { seed: (bits[0] << 32) | bits[1], keep }
    }

    /// The mask as a tensor shaped like `x` (0 or `1/keep`).
    pub fn mask(&self, x: &Tensor<2>) -> Tensor<2> {
        let mask = cpu::dropout_mask(x.dims().iter().product(), self.seed, self.keep as f32);
        Tensor::from_data(TensorData::new(mask, x.dims()), &x.device())
    }
}

/// `x·w + scale·(dropout(x)·a)·b`: a linear layer with a LoRA adapter, as PEFT's `lora.Linear`
/// computes it, with dropout of the adapter's input in training. The fused path adds the
/// adapter's product into the base output, and in backward the adapter's share of x's
/// gradient into the base share, instead of making and then adding separate buffers.
///
/// # Shapes
/// - x: `[n, d_in]`; w: `[d_in, d_out]`; a: `[d_in, r]`; b: `[r, d_out]`; output: `[n, d_out]`
pub fn lora_linear(x: Tensor<2>, w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scale: f64, dropout: Option<Dropout>) -> Tensor<2> {
    let f32s = [&w, &a, &b].iter().all(|t| t.dtype() == DType::F32);
    let fits = x.dims()[1] == w.dims()[0] && a.dims()[0] == w.dims()[0] && a.dims()[1] == b.dims()[0] && b.dims()[1] == w.dims()[1];
    if !(fits && f32s && fused_for(&x.device(), x.dtype())) {
        return lora_linear_reference(x, w, a, b, scale, dropout);
    }
    let (x, w, a, b) = (x.into_dispatch(), w.into_dispatch(), a.into_dispatch(), b.into_dispatch());
    Tensor::from_dispatch(match dropout {
        None => Dispatch::fused_lora_linear(x, w, a, b, scale as f32),
        Some(d) => Dispatch::fused_lora_dropout_linear(x, w, a, b, scale as f32, d.seed, d.keep as f32),
    })
}

pub fn lora_linear_reference(x: Tensor<2>, w: Tensor<2>, a: Tensor<2>, b: Tensor<2>, scale: f64, dropout: Option<Dropout>) -> Tensor<2> {
    let input = match dropout {
        Some(d) => x.clone() * d.mask(&x).cast(x.dtype()),
        None => x.clone(),
    };
    x.matmul(w) + input.matmul(a).matmul(b) * scale
}

/// One AdamW step's constants, as `torch.optim.AdamW` uses them.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// `1 − lr·weight_decay` (decoupled decay, applied to the parameter first).
    pub decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// `lr / (1 − β1^t)`.
    pub step_size: f64,
    /// `√(1 − β2^t)`.
    pub bias2_sqrt: f64,
    /// Multiplies the gradient first (gradient clipping and accumulation).
    pub grad_scale: f64,
}

/// One AdamW step on a flat parameter `p`, its gradient `g` and moments `m`, `v`:
/// `g ← g·grad_scale`, `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p·decay − step_size · m / (√v / bias2_sqrt + eps)`. Returns the new `(p, m, v)`.
///
/// The fused path is one parallel pass over the four arrays; Burn's element-wise operations
/// take about ten, each writing a new buffer. Tensors without autodiff only (the optimizer
/// works on the inner tensors).
pub fn adamw(p: Tensor<1>, g: Tensor<1>, m: Tensor<1>, v: Tensor<1>, s: AdamWStep) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let same = [&g, &m, &v].iter().all(|t| t.dims() == p.dims() && t.dtype() == DType::F32);
    if !(same && fused_for(&p.device(), p.dtype())) {
        return adamw_reference(p, g, m, v, s);
    }
    let (p, m, v) = Dispatch::fused_adamw(p.into_dispatch(), g.into_dispatch(), m.into_dispatch(), v.into_dispatch(), s);
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

/// One AdamW step with 8-bit moments ([`adamw_8bit`]): the updated parameter.
///
/// The arithmetic runs on the host. `p` and `g` are moved there and back through `into_data`,
/// which on flex copies only a tensor something else still holds; on a GPU this costs a
/// transfer per step.
pub fn adamw_8bit_step(p: Tensor<1>, g: Tensor<1>, moments: &mut adamw_8bit::Moments8bit, s: AdamWStep) -> Tensor<1> {
    let _timer = profile::kernel("adamw 8-bit (with host moves)");
    let (device, dtype) = (p.device(), p.dtype());
    let host = |t: Tensor<1>| t.cast(DType::F32).into_data().try_into_vec::<f32>().expect("f32 values");
    let (mut values, grad) = (host(p), host(g));
    adamw_8bit::step(&mut values, &grad, moments, s);
    let n = values.len();
    Tensor::<1>::from_data(TensorData::new(values, [n]), &device).cast(dtype)
}

pub fn adamw_reference(p: Tensor<1>, g: Tensor<1>, m: Tensor<1>, v: Tensor<1>, s: AdamWStep) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let g = g * s.grad_scale;
    let p = if s.decay != 1.0 { p * s.decay } else { p };
    let m = m * s.beta1 + g.clone() * (1.0 - s.beta1);
    let v = v * s.beta2 + g.square() * (1.0 - s.beta2);
    let denom = v.clone().sqrt() / s.bias2_sqrt + s.eps;
    (p - m.clone() / denom * s.step_size, m, v)
}

/// Rotary position embedding as transformers applies it: `x·cos + rotate_half(x)·sin`, where
/// `rotate_half` maps the halves `[x₁, x₂]` of each head to `[−x₂, x₁]`.
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]`; cos, sin: `[batch, 1, seq, head_dim]`
/// - output: same as x
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let [b, _, t, d] = x.dims();
    let fits = cos.dims() == [b, 1, t, d] && sin.dims() == [b, 1, t, d] && d % 2 == 0;
    if fits && fused_for(&x.device(), x.dtype()) && cos.dtype() == DType::F32 {
        Tensor::from_dispatch(Dispatch::fused_rope(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
    } else {
        rope_reference(x, cos, sin)
    }
}

pub fn rope_reference(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

/// Log-probability of each row's target token under `softmax(hidden · weight)`, and each
/// row's mean logit (detached; TRL's `logits/chosen` metric). The fused path never holds the
/// `[rows, vocab]` logits: it goes through the rows a block at a time and keeps one log-sum-exp
/// per row. A trained head's backward pass recomputes a block's logits; a frozen head's uses
/// each row's gradient direction, computed in the forward pass.
///
/// # Shapes
/// - hidden: `[rows, hidden]`; weight: `[hidden, vocab]`; targets: `[rows]`
/// - outputs: `[rows]` each
pub fn token_logprobs(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let n = hidden.dims()[0];
    if n > 0 && fused_for(&hidden.device(), hidden.dtype()) && weight.dtype() == DType::F32 {
        let both: Tensor<2> = Tensor::from_dispatch(Dispatch::fused_token_logprobs(
            hidden.into_dispatch(),
            weight.into_dispatch(),
            targets.into_dispatch(),
        ));
        let logprobs = both.clone().slice([0..n, 0..1]).reshape([n]);
        (logprobs, both.detach().slice([0..n, 1..2]).reshape([n]))
    } else if n > 0 && !weight.is_tracked() {
        let rows = block_rows(weight.dims()[1]);
        token_logprobs_blocked(hidden, weight, targets, rows)
    } else {
        token_logprobs_reference(hidden, weight, targets)
    }
}

pub fn token_logprobs_reference(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let weight = weight.cast(hidden.dtype());
    logprobs_of_logits(hidden.matmul(weight), targets)
}

/// Rows per block in [`token_logprobs_blocked`]: a block's f32 logits stay within 256 MiB
/// (441 rows at Qwen2.5's 151,936-entry vocabulary, where 8k rows at once would be 4.9 GB).
fn block_rows(vocab: usize) -> usize {
    ((256 << 20) / (4 * vocab.max(1))).max(1)
}

/// [`token_logprobs`] for a frozen head (LoRA, a DPO reference, inference) on any device,
/// holding `[rows, vocab]` logits for one block of rows at a time, never for all of them.
///
/// Each block's logits are computed outside the autodiff graph, and reduced right away to
/// each row's log-sum-exp, mean, and softmax-weighted head column `E_p[w] = softmax·wᵀ`, which
/// is the log-sum-exp's gradient in the hidden state. The result is `h·w_target − lse` with the
/// log-sum-exp's term written as `h·E_p[w]` minus its own detached value: equal in the forward
/// pass, and with the exact gradient `w_target − E_p[w]` in the backward pass, which so never
/// needs the logits. A head that trains (full fine-tuning) would need `hᵀ·softmax`, the full
/// `[rows, vocab]` softmax, so it takes [`token_logprobs_reference`].
///
/// # Shapes
/// - as [`token_logprobs`]
pub fn token_logprobs_blocked(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>, rows: usize) -> (Tensor<1>, Tensor<1>) {
    let [n, h] = hidden.dims();
    let rows = rows.max(1);
    let weight = weight.detach().cast(hidden.dtype());
    let inputs = hidden.clone().detach();
    // Without a gradient to carry (a reference pass, inference) E_p[w] is not needed.
    let tracked = hidden.is_tracked();
    let (mut lse, mut mean, mut expected) = (Vec::new(), Vec::new(), Vec::new());
    for start in (0..n).step_by(rows) {
        let block = inputs.clone().slice([start..(start + rows).min(n), 0..h]);
        let logits = block.matmul(weight.clone()).cast(DType::F32);
        let max = logits.clone().max_dim(1);
        let block_lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
        if tracked {
            let probs = (logits.clone() - block_lse.clone()).exp();
            expected.push(probs.cast(weight.dtype()).matmul(weight.clone().transpose()).cast(DType::F32));
        }
        mean.push(logits.mean_dim(1));
        lse.push(block_lse);
    }
    let (lse, mean) = (Tensor::cat(lse, 0).reshape([n]), Tensor::cat(mean, 0).reshape([n]));
    let hidden = hidden.cast(DType::F32);
    let target_columns = weight.transpose().select(0, targets).cast(DType::F32);
    let target_logits = (hidden.clone() * target_columns).sum_dim(1).reshape([n]);
    let logprobs = if tracked {
        let surrogate = (hidden * Tensor::cat(expected, 0)).sum_dim(1).reshape([n]);
        target_logits - lse - surrogate.clone() + surrogate.detach()
    } else {
        target_logits - lse
    };
    (logprobs, mean)
}

/// [`token_logprobs`] from given `[rows, vocab]` logits (an LM head that is more than a
/// matrix, e.g. with a LoRA adapter, computes them itself), in f32.
pub fn logprobs_of_logits(logits: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
    let logits = logits.cast(DType::F32);
    let n = logits.dims()[0];
    let mean = logits.clone().detach().mean_dim(1).reshape([n]);
    (log_softmax(logits, 1).gather(1, targets.reshape([n, 1])).reshape([n]), mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// Every element within `tol` of the reference, scaled by the reference's largest magnitude
    /// where that exceeds 1 (sums of many products carry f32 rounding in proportion).
    fn close(a: Tensor<4>, b: Tensor<4>, tol: f32, what: &str) {
        let a: Vec<f32> = a.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let b: Vec<f32> = b.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len(), "{what}: sizes differ");
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        let scale = b.iter().fold(1.0f32, |m, y| m.max(y.abs()));
        assert!(worst <= tol * scale, "{what}: max difference {worst} > {tol} × {scale}");
    }

    /// [`close`] within 1e-5 for each of several named results.
    fn close_each(fused: Vec<Tensor<4>>, reference: Vec<Tensor<4>>, names: &[&str]) {
        assert_eq!(fused.len(), names.len());
        for ((a, b), name) in fused.into_iter().zip(reference).zip(names) {
            close(a, b, 1e-5, name);
        }
    }

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad()
    }

    /// Causal bias with a padded tail in row 1, as the decoder builds it.
    fn causal_bias(b: usize, t: usize, device: &Device) -> Tensor<4> {
        let mut bias = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            for i in 0..t {
                let padded = r == 1 && i >= t - 2;
                for j in 0..=i {
                    if !padded || j == i {
                        bias[(r * t + i) * t + j] = 0.0;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(bias, [b, 1, t, t]), device)
    }

    #[test]
    fn flex_takes_the_fused_path() {
        if std::env::var_os("LADDER_UNFUSED").is_none() {
            assert!(fused_for(&Device::flex().autodiff(), DType::F32));
            assert!(fused_for(&Device::flex(), DType::F32));
        }
        assert!(!fused_for(&Device::flex(), DType::BF16));
    }

    #[test]
    fn fused_attention_matches_the_reference_forward_and_backward() {
        // 7 queries: one tile; 150: three tiles, the causal skip and a partial last tile; with
        // two rows of two key/value heads, the backward pass cuts each pair's three tiles into
        // three parts. One batch row of 300 queries and one key/value head: five tiles in five
        // parts. `strided`: every input a view with heads and positions swapped, as the
        // projections' outputs are.
        for (b, kv, t) in [(2, 2, 7), (2, 2, 150), (1, 1, 300)] {
            for strided in [false, true] {
                let device = Device::flex().autodiff();
                let (h, d) = (2 * kv, 8);
                let input = |heads: usize| match strided {
                    false => random([b, heads, t, d], &device),
                    true => random([b, t, heads, d], &device),
                };
                let (q, k, v) = (input(h), input(kv), input(kv));
                let view = |x: &Tensor<4>| if strided { x.clone().swap_dims(1, 2) } else { x.clone() };
                let bias = causal_bias(b, t, &device);
                let dout = Tensor::<4>::random([b, h, t, d], Distribution::Normal(0.0, 1.0), &device);
                let run = |f: fn(Tensor<4>, Tensor<4>, Tensor<4>, Tensor<4>, f64) -> Tensor<4>| {
                    let out = f(view(&q), view(&k), view(&v), bias.clone(), 0.3);
                    let grads = (out.clone() * dout.clone()).sum().backward();
                    let g = |x: &Tensor<4>| x.grad(&grads).unwrap();
                    vec![out.detach(), g(&q), g(&k), g(&v)]
                };
                close_each(run(attention), run(attention_reference), &["output", "dq", "dk", "dv"]);
            }
        }
    }

    #[test]
    fn fused_attention_handles_more_keys_than_queries() {
        // Generation: new queries after cached keys, no autodiff.
        let device = Device::flex();
        let (b, h, kv, tq, tk, d) = (1, 2, 1, 3, 5, 4);
        let q = Tensor::<4>::random([b, h, tq, d], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([b, kv, tk, d], Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([b, kv, tk, d], Distribution::Normal(0.0, 1.0), &device);
        let bias = Tensor::<4>::zeros([b, 1, tq, tk], &device);
        close(attention(q.clone(), k.clone(), v.clone(), bias.clone(), 0.5), attention_reference(q, k, v, bias, 0.5), 1e-5, "output");
    }

    #[test]
    fn fused_token_logprobs_match_the_reference() {
        check_token_logprobs(37, 16, 50, 1e-5);
    }

    /// Enough rows over a vocabulary large enough for the fused kernels' logits to span two
    /// blocks (256 rows or 64 MiB each, whichever is more): 300 rows × 70 000 logits in two
    /// blocks of 150 rows. The hidden gradient sums 70 000 products in f32, whose rounding
    /// (about √k·ε, 2e-5 relative) differs between any two summation orders, so it is
    /// compared at 1e-4.
    #[test]
    fn fused_token_logprobs_over_several_blocks_match_the_reference() {
        check_token_logprobs(300, 8, 70_000, 1e-4);
    }

    /// The fused token log-probabilities of `n` rows of width `h` over a vocabulary of `v`
    /// against the reference composition, values and gradients, within `tol` (see [`close`]).
    fn check_token_logprobs(n: usize, h: usize, v: usize, tol: f32) {
        // A trained head (full fine-tuning) recomputes the logits in backward; a frozen one
        // (LoRA, DPO) keeps each row's gradient direction from the forward pass.
        for head_trained in [true, false] {
            let device = Device::flex().autodiff();
            let hidden = Tensor::<2>::random([n, h], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let mut weight = Tensor::<2>::random([v, h], Distribution::Normal(0.0, 1.0), &device);
            if head_trained {
                weight = weight.require_grad();
            }
            let targets = Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).map(|i| i * 7 % v as i64).collect(), [n]), &device);
            let g = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            // A tied head: the weight is the transposed embedding, as the decoder passes it.
            let run = |f: fn(Tensor<2>, Tensor<2>, Tensor<1, Int>) -> (Tensor<1>, Tensor<1>)| {
                let (lp, mean) = f(hidden.clone(), weight.clone().transpose(), targets.clone());
                let grads = (lp.clone() * g.clone()).sum().backward();
                let four = |t: Tensor<2>| t.reshape([1, 1, n, h]);
                let mut results = vec![lp.detach().reshape([1, 1, 1, n]), mean.reshape([1, 1, 1, n]), four(hidden.grad(&grads).unwrap())];
                results.extend(weight.grad(&grads).map(|dw| dw.reshape([1, 1, v, h])));
                results
            };
            let names: &[&str] = if head_trained { &["logprobs", "mean logits", "dhidden", "dweight"] } else { &["logprobs", "mean logits", "dhidden"] };
            for ((fused, reference), name) in run(token_logprobs).into_iter().zip(run(token_logprobs_reference)).zip(names) {
                close(fused, reference, tol, name);
            }
        }
    }


    /// The fused embedding lookup equals `select`, its output and the table's gradient, also
    /// when the table is the LM head too (tied), where its gradient is the sum of the head's
    /// and the lookup's: repeated ids included, and a frozen table.
    #[test]
    fn fused_embedding_matches_select_tied_or_not() {
        let (v, h, n) = (40, 8, 12);
        let ids = |device: &Device| Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).map(|i| i * 7 % 9).collect(), [n]), device);
        for (tied, trained) in [(true, true), (false, true), (false, false)] {
            let device = Device::flex().autodiff();
            let mut table = Tensor::<2>::random([v, h], Distribution::Normal(0.0, 1.0), &device);
            if trained {
                table = table.require_grad();
            }
            let g = Tensor::<2>::random([n, h], Distribution::Normal(0.0, 1.0), &device);
            let targets = Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).map(|i| (i * 5 + 3) % v as i64).collect(), [n]), &device);
            let run = |lookup: fn(Tensor<2>, Tensor<1, Int>) -> Tensor<2>| {
                let x = lookup(table.clone(), ids(&device));
                let mut loss = (x.clone() * g.clone()).sum();
                if tied {
                    let (lp, _) = token_logprobs(x.clone().tanh(), table.clone().transpose(), targets.clone());
                    loss = loss + lp.sum();
                }
                let mut results = vec![x.detach().reshape([1, 1, n, h])];
                if trained {
                    results.push(table.grad(&loss.backward()).unwrap().reshape([1, 1, v, h]));
                }
                results
            };
            let (fused, reference) = (run(embedding), run(embedding_reference));
            assert_eq!(fused.len(), reference.len());
            for ((a, b), name) in fused.into_iter().zip(reference).zip(["rows", "table gradient"]) {
                close(a, b, 1e-5, &format!("{name} (tied {tied}, trained {trained})"));
            }
        }
    }

    /// The GPU path's blocked log-probabilities (a frozen head, blocks of 5 rows, the last one
    /// short) equal the reference composition, gradient included, and so does the untracked
    /// case (a DPO reference).
    #[test]
    fn blocked_token_logprobs_match_the_reference() {
        let device = Device::flex().autodiff();
        let (n, h, v) = (23, 16, 50);
        let hidden = Tensor::<2>::random([n, h], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weight = Tensor::<2>::random([h, v], Distribution::Normal(0.0, 1.0), &device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new((0..n as i64).map(|i| i * 7 % v as i64).collect(), [n]), &device);
        let g = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: &dyn Fn(Tensor<2>, Tensor<2>, Tensor<1, Int>) -> (Tensor<1>, Tensor<1>)| {
            let (lp, mean) = f(hidden.clone(), weight.clone(), targets.clone());
            let grads = (lp.clone() * g.clone()).sum().backward();
            vec![lp.detach().reshape([1, 1, 1, n]), mean.reshape([1, 1, 1, n]), hidden.grad(&grads).unwrap().reshape([1, 1, n, h])]
        };
        let blocked = |h: Tensor<2>, w: Tensor<2>, t: Tensor<1, Int>| token_logprobs_blocked(h, w, t, 5);
        close_each(run(&blocked), run(&token_logprobs_reference), &["logprobs", "mean logits", "dhidden"]);
        let (untracked, _) = token_logprobs_blocked(hidden.clone().detach(), weight.clone(), targets.clone(), 4);
        let (reference, _) = token_logprobs_reference(hidden.detach(), weight, targets);
        close(untracked.reshape([1, 1, 1, n]), reference.reshape([1, 1, 1, n]), 1e-5, "untracked logprobs");
    }
    #[test]
    fn fused_linear_layers_match_the_reference() {
        // Trained base weights (full fine-tuning), frozen ones (LoRA), LoRA with dropout; a
        // transposed input.
        for (base_trained, dropout) in [(true, false), (false, false), (false, true)] {
            let device = Device::flex().autodiff();
            let (n, d_in, d_out, r) = (45, 24, 40, 4);
            let normal = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let x = normal([d_in, n]).require_grad();
            let mut w = normal([d_in, d_out]);
            if base_trained {
                w = w.require_grad();
            }
            let (a, b) = (normal([d_in, r]).require_grad(), normal([r, d_out]).require_grad());
            let dout = normal([n, d_out]);
            let mask = dropout.then_some(Dropout { seed: 7, keep: 0.6 });
            let flat = |t: Tensor<2>| {
                let [rows, cols] = t.dims();
                t.reshape([1, 1, rows, cols])
            };
            let run = |lora: bool, fused: bool| {
                let xt = x.clone().transpose();
                let out = match (lora, fused) {
                    (false, true) => linear(xt, w.clone()),
                    (false, false) => xt.matmul(w.clone()),
                    (true, true) => lora_linear(xt, w.clone(), a.clone(), b.clone(), 0.7, mask),
                    (true, false) => lora_linear_reference(xt, w.clone(), a.clone(), b.clone(), 0.7, mask),
                };
                let grads = (out.clone() * dout.clone()).sum().backward();
                let mut results = vec![flat(out.detach()), flat(x.grad(&grads).unwrap())];
                results.extend(w.grad(&grads).map(flat));
                if lora {
                    results.extend([flat(a.grad(&grads).unwrap()), flat(b.grad(&grads).unwrap())]);
                }
                results
            };
            let names: &[&str] = match base_trained {
                true => &["output", "dx", "dw", "da", "db"],
                false => &["output", "dx", "da", "db"],
            };
            close_each(run(false, true), run(false, false), &names[..2 + base_trained as usize]);
            close_each(run(true, true), run(true, false), names);
        }
    }

    #[test]
    fn dropout_masks_keep_the_given_share_at_one_over_keep() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::zeros([300, 500], &device);
        let values = |seed: u64| {
            device.seed(seed);
            Dropout::draw(0.8, &device).mask(&x).into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        };
        let (a, b, again) = (values(1), values(2), values(1));
        assert_eq!(a, again, "the same seed gives the same mask");
        assert_ne!(a, b, "another seed gives another mask");
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.8));
        let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
        // 150,000 draws: the standard error of the share is 0.001.
        assert!((kept - 0.8).abs() < 0.005, "kept {kept}");
    }

    #[test]
    fn fused_adamw_matches_the_reference() {
        let device = Device::flex();
        let n = 40_000;
        let normal = |std: f64| Tensor::<1>::random([n], Distribution::Normal(0.0, std), &device);
        let (p, g, m) = (normal(1.0), normal(0.1), normal(0.01));
        let v = normal(0.001).abs();
        for decay in [1.0, 1.0 - 1e-3 * 0.1] {
            let s = AdamWStep { decay, beta1: 0.9, beta2: 0.999, eps: 1e-8, step_size: 1e-3 / 0.19, bias2_sqrt: 0.0199f64.sqrt(), grad_scale: 0.5 };
            let fused = adamw(p.clone(), g.clone(), m.clone(), v.clone(), s);
            let reference = adamw_reference(p.clone(), g.clone(), m.clone(), v.clone(), s);
            let four = |t: Tensor<1>| t.reshape([1, 1, 1, n]);
            close_each(
                vec![four(fused.0), four(fused.1), four(fused.2)],
                vec![four(reference.0), four(reference.1), four(reference.2)],
                &["p", "m", "v"],
            );
        }
    }

    #[test]
    fn fused_rope_matches_the_reference() {
        let device = Device::flex().autodiff();
        let (b, h, t, d) = (2, 3, 5, 8);
        // A swapped view, as the decoder passes its heads.
        let x = Tensor::<4>::random([b, t, h, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let cos = Tensor::<4>::random([b, 1, t, d], Distribution::Normal(0.0, 1.0), &device);
        let sin = Tensor::<4>::random([b, 1, t, d], Distribution::Normal(0.0, 1.0), &device);
        let dout = Tensor::<4>::random([b, h, t, d], Distribution::Normal(0.0, 1.0), &device);
        let run = |f: fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
            let out = f(x.clone().swap_dims(1, 2), cos.clone(), sin.clone());
            let grads = (out.clone() * dout.clone()).sum().backward();
            (out.detach(), x.grad(&grads).unwrap())
        };
        let (fused, reference) = (run(rope), run(rope_reference));
        close(fused.0, reference.0, 1e-6, "rope");
        close(fused.1, reference.1, 1e-6, "rope dx");
    }

    #[test]
    fn fused_swiglu_and_rms_norm_match_the_reference() {
        let device = Device::flex().autodiff();
        let shape = [2, 3, 5, 16];
        let (g, u) = (random(shape, &device), random(shape, &device));
        let w = Tensor::<1>::random([16], Distribution::Normal(1.0, 0.2), &device).require_grad();
        let dout = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);

        let fused = swiglu(g.clone(), u.clone());
        let reference = swiglu_reference(g.clone(), u.clone());
        let gf = (fused.clone() * dout.clone()).sum().backward();
        let gr = (reference.clone() * dout.clone()).sum().backward();
        close(fused.detach(), reference.detach(), 1e-6, "swiglu");
        close(g.grad(&gf).unwrap(), g.grad(&gr).unwrap(), 1e-5, "swiglu dgate");
        close(u.grad(&gf).unwrap(), u.grad(&gr).unwrap(), 1e-5, "swiglu dup");

        let fused = rms_norm(g.clone(), w.clone(), 1e-6);
        let reference = rms_norm_reference(g.clone(), w.clone(), 1e-6);
        let gf = (fused.clone() * dout.clone()).sum().backward();
        let gr = (reference.clone() * dout).sum().backward();
        close(fused.detach(), reference.detach(), 1e-5, "rms_norm");
        close(g.grad(&gf).unwrap(), g.grad(&gr).unwrap(), 1e-5, "rms_norm dx");
        let (dw_f, dw_r) = (w.grad(&gf).unwrap(), w.grad(&gr).unwrap());
        close(dw_f.reshape([1, 1, 1, 16]), dw_r.reshape([1, 1, 1, 16]), 1e-4, "rms_norm dweight");
    }
}
