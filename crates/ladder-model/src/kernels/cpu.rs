//! The fused kernels on f32 slices (row-parallel with rayon), and the `Flex` backend's forward
//! and backward passes built from them and from flex's own matrix multiply. Over 600 lines:
//! each kernel's forward and backward sit together so that the two can be read against each
//! other; the composed reference each is tested against lives in `kernels.rs`.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::gemm::{self, View};
use super::profile;
use super::{AdamWStep, FusedOps};

/// Elements handed to one rayon task: enough work to amortise the task, small enough to
/// balance.
const TASK_ELEMENTS: usize = 16_384;

/// Whole rows of `cols` elements per rayon task (see [`TASK_ELEMENTS`]).
fn rows_per_task(rows: usize, cols: usize) -> usize {
    (TASK_ELEMENTS / cols.max(1)).clamp(1, rows.max(1))
}

/// The contiguous f32 values of `t` (copied only when `t` is a strided view).
pub(super) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
    }
}

pub(super) fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// Runs `f` compiled for the best vector instructions this CPU has (AVX-512 where it has them,
/// else AVX2 + FMA, on x86-64), so the element loops inside, and the [`exp`] they call,
/// vectorise.
///
/// Only code inlined into pulp's dispatched functions gets their instruction sets, so every
/// closure passed here is marked `#[inline(always)]`. Without it LLVM kept each kernel's
/// closure as one function compiled for baseline x86-64: SSE2, four lanes (disassembly of
/// stop 27's binary: the kernels' `vectorised` closures had no AVX instruction in them; a
/// `mul_add` in such a closure compiles to a call to `fmaf`).
#[inline(always)]
pub(super) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// The vector instructions [`vectorised`] dispatches to on this CPU, by the same detection
/// (gemm's kernels are picked by the same feature sets): "avx512", "avx2" (AVX2 + FMA), "neon"
/// or "baseline". Benchmarks record it, since it changes the matrix products' speed about 2×.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    return match pulp::Arch::new() {
        pulp::Arch::V4(_) => "avx512",
        pulp::Arch::V3(_) => "avx2",
        _ => "baseline",
    };
    #[cfg(target_arch = "aarch64")]
    return match pulp::Arch::new() {
        pulp::Arch::Neon(_) => "neon",
        _ => "baseline",
    };
    #[allow(unreachable_code)]
    "baseline"
}

/// `e^x` in f32 without branches or library calls, so loops calling it vectorise: Cephes'
/// `expf` (`x = n·ln 2 + r`, a degree-7 polynomial for `e^r`, `2^n` from exponent bits),
/// within 2 ulp of the libm value; `e^x` is 0 below −87.3 (so −∞ gives 0) and saturates
/// at `e^88`.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let c = x.clamp(-87.3, 88.0);
    // Round to nearest by adding and subtracting 1.5·2²³ (no `floor` call, which would not
    // vectorise without SSE4.1).
    let n = (c * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = c - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let e = (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.3 {
        0.0
    } else {
        e
    }
}

/// `Σ a·b` with eight running sums, which vectorises (a single running sum would have to be
/// added in order, one element at a time).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a` with eight running sums.
#[inline(always)]
pub(super) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

pub fn swiglu_forward(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    let _timer = profile::kernel("swiglu forward");
    let (g, u) = (values(gate), values(up));
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(TASK_ELEMENTS).enumerate().for_each(|(c, o)| {
        let (g, u) = (&g[c * TASK_ELEMENTS..], &u[c * TASK_ELEMENTS..]);
        vectorised(#[inline(always)] || {
            for ((o, &x), &y) in o.iter_mut().zip(g).zip(u) {
                *o = x * sigmoid(x) * y;
            }
        })
    });
    tensor(out, gate.layout().shape().clone())
}

/// Gradients of `silu(gate) * up` for the output gradient `dout`: `(dgate, dup)`.
pub fn swiglu_backward(gate: &FlexTensor, up: &FlexTensor, dout: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let _timer = profile::kernel("swiglu backward");
    let (g, u, d) = (values(gate), values(up), values(dout));
    let mut dg = vec![0.0f32; g.len()];
    let mut du = vec![0.0f32; g.len()];
    dg.par_chunks_mut(TASK_ELEMENTS).zip(du.par_chunks_mut(TASK_ELEMENTS)).enumerate().for_each(|(c, (dg, du))| {
        let base = c * TASK_ELEMENTS;
        let (g, u, d) = (&g[base..base + dg.len()], &u[base..base + dg.len()], &d[base..base + dg.len()]);
        vectorised(#[inline(always)] || {
            for i in 0..dg.len() {
                let (x, y, dy) = (g[i], u[i], d[i]);
                let s = sigmoid(x);
                du[i] = dy * x * s;
                dg[i] = dy * y * s * (1.0 + x * (1.0 - s));
            }
        })
    });
    let shape = gate.layout().shape().clone();
    (tensor(dg, shape.clone()), tensor(du, shape))
}

/// RMSNorm of each row; also returns each row's `1 / rms` for the backward pass.
pub fn rms_norm_forward(x: &FlexTensor, weight: &FlexTensor, eps: f32) -> (FlexTensor, Vec<f32>) {
    let _timer = profile::kernel("rms_norm forward");
    let (xs, w) = (values(x), values(weight));
    let d = w.len();
    let rows = xs.len() / d;
    let mut out = vec![0.0f32; xs.len()];
    let mut inv = vec![0.0f32; rows];
    let per = rows_per_task(rows, d);
    out.par_chunks_mut(per * d).zip(inv.par_chunks_mut(per)).enumerate().for_each(|(c, (o, inv))| vectorised(#[inline(always)] || {
        for (r, (o, inv)) in o.chunks_mut(d).zip(inv.iter_mut()).enumerate() {
            let row = &xs[(c * per + r) * d..(c * per + r + 1) * d];
            let mean_sq = dot(row, row) / d as f32;
            *inv = 1.0 / (mean_sq + eps).sqrt();
            for ((o, &v), &w) in o.iter_mut().zip(row).zip(w.iter()) {
                *o = v * *inv * w;
            }
        }
    }));
    (tensor(out, x.layout().shape().clone()), inv)
}

/// Gradients of RMSNorm: `(dx, dweight)`.
pub fn rms_norm_backward(x: &FlexTensor, weight: &FlexTensor, inv: &[f32], dout: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let _timer = profile::kernel("rms_norm backward");
    let (xs, w, dy) = (values(x), values(weight), values(dout));
    let d = w.len();
    let rows = xs.len() / d;
    let per = rows_per_task(rows, d);
    let mut dx = vec![0.0f32; xs.len()];
    // Each task sums its rows' weight gradient; the partial sums are added at the end, in
    // order, so that a run is bit-for-bit repeatable (rayon's `reduce` pairs them up in an
    // order that depends on scheduling).
    let dw = dx
        .par_chunks_mut(per * d)
        .enumerate()
        .map(|(c, dx)| vectorised(#[inline(always)] || {
            let mut dw = vec![0.0f32; d];
            for (r, dx) in dx.chunks_mut(d).enumerate() {
                let row = c * per + r;
                let (x, dy, inv) = (&xs[row * d..(row + 1) * d], &dy[row * d..(row + 1) * d], inv[row]);
                // dx = inv·(dy∘w) − x·inv³·mean(x∘dy∘w); dx holds dy∘w first.
                for j in 0..d {
                    dx[j] = dy[j] * w[j];
                    dw[j] += dy[j] * x[j] * inv;
                }
                let k = inv * inv * inv * dot(x, dx) / d as f32;
                for j in 0..d {
                    dx[j] = inv * dx[j] - x[j] * k;
                }
            }
            dw
        }))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(vec![0.0f32; d], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        });
    (tensor(dx, x.layout().shape().clone()), tensor(dw, weight.layout().shape().clone()))
}

/// `x·cos + rotate_half(x)·sin` (`inverse`: its transpose, `x·cos + rotate_halfᵀ(x·sin)`, the
/// backward pass) for `x` `[batch, heads, seq, d]` and tables `[batch, 1, seq, d]`.
///
/// `x` is read where it lies: in the forward pass it is the projection's output viewed with
/// heads and positions swapped, and copying it contiguous first took three times as long as
/// the rotation itself.
pub fn rope(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, inverse: bool) -> FlexTensor {
    let _timer = profile::kernel(if inverse { "rope backward" } else { "rope forward" });
    let shape = x.layout().shape().clone();
    let (h, t, d) = (shape[1], shape[2], shape[3]);
    let readable = x.layout().strides().iter().all(|&s| s >= 0) && (x.layout().strides()[3] == 1 || d == 1);
    let x = if readable { std::borrow::Cow::Borrowed(x) } else { std::borrow::Cow::Owned(x.to_contiguous()) };
    let (layout, xs) = (x.layout(), x.storage::<f32>());
    let stride = |i: usize| layout.strides()[i] as usize;
    let (base, s0, s1, s2) = (layout.start_offset(), stride(0), stride(1), stride(2));
    let (c, s) = (values(cos), values(sin));
    let half = d / 2;
    let mut out = vec![0.0f32; shape.num_elements()];
    out.par_chunks_mut(t * d).enumerate().for_each(|(bh, o)| vectorised(#[inline(always)] || {
        let (b, head) = (bh / h, bh % h);
        let (c, s) = (&c[b * t * d..(b + 1) * t * d], &s[b * t * d..(b + 1) * t * d]);
        for (i, (o, (c, s))) in o.chunks_mut(d).zip(c.chunks(d).zip(s.chunks(d))).enumerate() {
            let at = base + b * s0 + head * s1 + i * s2;
            let x = &xs[at..at + d];
            for j in 0..half {
                let (x1, x2) = (x[j], x[j + half]);
                if inverse {
                    o[j] = x1 * c[j] + x2 * s[j + half];
                    o[j + half] = x2 * c[j + half] - x1 * s[j];
                } else {
                    o[j] = x1 * c[j] - x2 * s[j];
                    o[j + half] = x2 * c[j + half] + x1 * s[j + half];
                }
            }
        }
    }));
    tensor(out, shape)
}

/// Rows per block of the token log-prob kernels. Each block's product streams the head's whole
/// weight (`hidden × vocab`: 113 MB at SmolLM2's 49152 × 576) through gemm's packing, so tall
/// blocks are what makes it fast: at that shape, one thread, 42-row blocks (8 MiB of logits)
/// ran at 57 GFLOP/s and 256-row blocks at 91, against 100 for the layers' products. A block
/// holds at least 256 rows (155 MB of logits at Qwen2.5's 151 936 vocabulary: a quarter of
/// what the full logits of a 4 × 256 batch take), more while its logits stay within 64 MiB,
/// and the rows split evenly (no thin last block, whose product would run at a tenth of the
/// speed).
fn logit_rows(rows: usize, vocab: usize) -> usize {
    let most = ((64 << 20) / (4 * vocab.max(1))).max(256);
    rows.div_ceil(rows.div_ceil(most).max(1)).max(1)
}

/// The blocks of [`logit_rows`] rows over `n` rows, as `(start, rows)`, and one logits buffer
/// they all reuse (allocated once per call: a buffer this size is mapped and faulted in anew
/// at each allocation).
fn logit_blocks(n: usize, vocab: usize) -> (Vec<(usize, usize)>, Vec<f32>) {
    let block = logit_rows(n, vocab);
    let blocks = (0..n).step_by(block).map(|start| (start, block.min(n - start))).collect();
    (blocks, vec![0.0; block.min(n) * vocab])
}

/// `[rows, 2]`: each row's target log-probability and mean logit, plus each row's log-sum-exp.
///
/// With `direction`, also each row's gradient of its log-probability with respect to its
/// hidden state, `(onehot(target) − softmax)·weightᵀ`: `[rows, hidden]`. When the head is
/// frozen that is all the backward pass needs, so it scales these rows instead of computing the
/// logits a second time (one of three vocabulary-sized matrix products saved).
pub fn token_logprobs_forward(hidden: &FlexTensor, weight: &FlexTensor, targets: &[i64], direction: bool) -> (FlexTensor, Vec<f32>, Option<FlexTensor>) {
    let _timer = profile::kernel("lm head log-probs forward");
    let (hidden, weight) = (readable(hidden), readable(weight));
    let (hv, wv) = (view(&hidden), view(&weight));
    let (n, vocab) = (hv.rows(), wv.cols());
    let mut out = vec![0.0f32; 2 * n];
    let mut lse = vec![0.0f32; n];
    let mut directions = Vec::with_capacity(if direction { n * hv.cols() } else { 0 });
    let (blocks, mut buffer) = logit_blocks(n, vocab);
    for (start, rows) in blocks {
        let l = &mut buffer[..rows * vocab];
        gemm::matmul_into(l, hv.rows_range(start, rows), wv, 1.0, false);
        let (out, lse) = (&mut out[2 * start..2 * (start + rows)], &mut lse[start..start + rows]);
        l.par_chunks_mut(vocab).zip(out.par_chunks_mut(2)).zip(lse.par_iter_mut()).enumerate().for_each(|(r, ((row, out), lse))| vectorised(#[inline(always)] || {
            let target = targets[start + r] as usize;
            let mean = sum(row) / vocab as f32;
            let picked = row[target];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            let total = sum(row);
            *lse = max + total.ln();
            out[0] = picked - *lse;
            out[1] = mean;
            if direction {
                let inv = -1.0 / total;
                for x in row.iter_mut() {
                    *x *= inv;
                }
                row[target] += 1.0;
            }
        }));
        if direction {
            directions.extend(gemm::matmul(View::new(l, rows, vocab), wv.t(), 1.0));
        }
    }
    let directions = direction.then(|| tensor(directions, Shape::from([n, hv.cols()])));
    (tensor(out, Shape::from([n, 2])), lse, directions)
}

/// [`token_logprobs_backward`] from the directions [`token_logprobs_forward`] kept: each row
/// times its gradient (`dout`'s first column), scaled in place (the backward pass owns them).
pub fn token_logprobs_backward_from_directions(directions: FlexTensor, dout: &FlexTensor) -> FlexTensor {
    let _timer = profile::kernel("lm head log-probs backward");
    let hidden = directions.layout().shape()[1];
    let g = values(dout);
    let mut dh = dense(directions);
    dh.storage_mut::<f32>().par_chunks_mut(hidden).enumerate().for_each(|(r, row)| vectorised(#[inline(always)] || {
        let gr = g[2 * r];
        for x in row.iter_mut() {
            *x *= gr;
        }
    }));
    dh
}

/// Gradients of the target log-probabilities (`dout`'s first column) with respect to
/// `(hidden, weight)`, recomputing each block's logits; `weight`'s is skipped when not needed.
///
/// The weight's gradient lies in memory as the weight does. A tied head is the embedding's
/// transpose, so its gradient is computed as `[vocab, hidden]` rows and returned as a
/// transposed view: autodiff then adds the embedding lookup's gradient to it in place. Given
/// as a `[hidden, vocab]` matrix, the sum needed a third vocabulary-sized buffer at the end of
/// the backward pass, the step's peak (519 MiB at Qwen2.5-0.5B's 151,936 × 896).
pub fn token_logprobs_backward(hidden: &FlexTensor, weight: &FlexTensor, targets: &[i64], lse: &[f32], dout: &FlexTensor, weight_grad: bool) -> (FlexTensor, Option<FlexTensor>) {
    let _timer = profile::kernel("lm head log-probs backward");
    let (hidden, weight) = (readable(hidden), readable(weight));
    let (hv, wv) = (view(&hidden), view(&weight));
    let (n, d, vocab) = (hv.rows(), hv.cols(), wv.cols());
    let rows_of_vocab = wv.transposed();
    let g = values(dout);
    let mut dh = Vec::with_capacity(n * d);
    let mut dw = weight_grad.then(|| vec![0.0f32; d * vocab]);
    let (blocks, mut buffer) = logit_blocks(n, vocab);
    for (start, rows) in blocks {
        let l = &mut buffer[..rows * vocab];
        let h = hv.rows_range(start, rows);
        gemm::matmul_into(l, h, wv, 1.0, false);
        // d log p[target] / d logits = onehot(target) − softmax, times the row's gradient.
        l.par_chunks_mut(vocab).enumerate().for_each(|(r, row)| vectorised(#[inline(always)] || {
            let (gr, l) = (g[2 * (start + r)], lse[start + r]);
            for x in row.iter_mut() {
                *x = -gr * exp(*x - l);
            }
            row[targets[start + r] as usize] += gr;
        }));
        let dlogits = View::new(l, rows, vocab);
        dh.extend(gemm::matmul(dlogits, wv.t(), 1.0));
        if let Some(dw) = dw.as_mut() {
            match rows_of_vocab {
                true => gemm::matmul_into(dw, dlogits.t(), h, 1.0, true),
                false => gemm::matmul_into(dw, h.t(), dlogits, 1.0, true),
            }
        }
    }
    let dw = dw.map(|dw| match rows_of_vocab {
        true => tensor(dw, Shape::from([vocab, d])).transpose(0, 1),
        false => tensor(dw, Shape::from([d, vocab])),
    });
    (tensor(dh, Shape::from([n, d])), dw)
}

/// A 2-D tensor as it lies in memory, copied first only when gemm cannot read its layout.
fn readable(t: &FlexTensor) -> std::borrow::Cow<'_, FlexTensor> {
    if View::of(t).is_some() {
        std::borrow::Cow::Borrowed(t)
    } else {
        std::borrow::Cow::Owned(t.to_contiguous())
    }
}

fn view(t: &FlexTensor) -> View<'_> {
    View::of(t).expect("a readable layout")
}

/// The `[rows, cols]` matrices of a 4-D tensor `[b1, b2, rows, cols]` (any non-negative
/// strides), in order.
pub(super) fn matrices(t: &FlexTensor) -> Vec<View<'_>> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    assert!(layout.num_dims() == 4 && strides.iter().all(|&s| s >= 0), "a 4-D tensor with non-negative strides");
    let data = t.storage::<f32>();
    let stride = |i: usize| strides[i] as usize;
    let mut out = Vec::with_capacity(shape[0] * shape[1]);
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            let at = layout.start_offset() + i * stride(0) + j * stride(1);
            out.push(View::strided(data.get(at..).unwrap_or(&[]), shape[2], shape[3], stride(2), stride(3)));
        }
    }
    out
}

/// A LoRA adapter's factors, `a: [d_in, r]` and `b: [r, d_out]`, its scale, and in training
/// with dropout the `(seed, keep)` of its input's mask (see [`super::Dropout`]).
pub struct LoraFactors<'a> {
    pub a: &'a FlexTensor,
    pub b: &'a FlexTensor,
    pub scale: f32,
    pub dropout: Option<(u64, f32)>,
}

/// Multiplies `values` (element `i` the `i`-th of its tensor) by the dropout mask of
/// `(seed, keep)`: `1/keep` where the SplitMix64 hash of `(seed, i)` falls below `keep`, else 0.
/// The same for any number of threads.
pub fn apply_dropout(values: &mut [f32], seed: u64, keep: f32) {
    let threshold = (f64::from(keep).clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
    let scale = 1.0 / keep;
    values.par_chunks_mut(TASK_ELEMENTS).enumerate().for_each(|(c, chunk)| {
        for (i, x) in chunk.iter_mut().enumerate() {
            let mut z = seed.wrapping_add(((c * TASK_ELEMENTS + i) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            *x = if z >> 32 < threshold { *x * scale } else { 0.0 };
        }
    });
}

/// The dropout mask of `(seed, keep)` itself, `len` values (see [`apply_dropout`]).
pub fn dropout_mask(len: usize, seed: u64, keep: f32) -> Vec<f32> {
    let mut mask = vec![1.0f32; len];
    apply_dropout(&mut mask, seed, keep);
    mask
}

/// The adapter's input with dropout: a masked copy of `x` (`None` without dropout).
fn adapter_input(x: &FlexTensor, dropout: Option<(u64, f32)>) -> Option<Vec<f32>> {
    dropout.map(|(seed, keep)| {
        let mut masked = values(x).into_owned();
        apply_dropout(&mut masked, seed, keep);
        masked
    })
}

/// `x·w`, plus `scale·(x·a)·b` with an adapter (`x` masked first with dropout), added into the
/// same output. Returns the output `[n, d_out]` and, with an adapter, the product at the
/// adapter's rank `[n, r]`, which the backward pass reuses.
pub fn linear_forward(x: &FlexTensor, w: &FlexTensor, lora: Option<&LoraFactors>) -> (FlexTensor, Option<FlexTensor>) {
    let _timer = profile::kernel("linear forward");
    let (x, w) = (readable(x), readable(w));
    let (xv, wv) = (view(&x), view(&w));
    // With an adapter, its share is written first and the base product added into it: the
    // big product reads the output tile by tile in cache, where adding the rank-r share after
    // it would be one more pass over the whole output.
    let (y, xa) = match lora {
        None => (gemm::matmul(xv, wv, 1.0), None),
        Some(l) => {
            let (a, b) = (readable(l.a), readable(l.b));
            let av = view(&a);
            let (n, r) = (xv.rows(), av.cols());
            let masked = adapter_input(&x, l.dropout);
            let input = masked.as_deref().map_or(xv, |m| View::new(m, n, xv.cols()));
            let xa = gemm::matmul(input, av, 1.0);
            let mut y = gemm::matmul(View::new(&xa, n, r), view(&b), l.scale);
            gemm::matmul_into(&mut y, xv, wv, 1.0, true);
            (y, Some(tensor(xa, Shape::from([n, r]))))
        }
    };
    (tensor(y, Shape::from([xv.rows(), wv.cols()])), xa)
}

/// Which inputs of a linear layer need a gradient: `x`, `w`, and the adapter's `a` and `b`.
#[derive(Clone, Copy, Debug)]
pub struct LinearNeeds {
    pub x: bool,
    pub w: bool,
    pub a: bool,
    pub b: bool,
}

/// Gradients of [`linear_forward`]'s output with respect to `(x, w, a, b)`, those needed only.
/// The adapter's share of `x`'s gradient is added into the base share in place.
pub fn linear_backward(
    x: &FlexTensor,
    w: &FlexTensor,
    lora: Option<(&LoraFactors, &FlexTensor)>,
    dy: &FlexTensor,
    needs: LinearNeeds,
) -> [Option<FlexTensor>; 4] {
    let _timer = profile::kernel("linear backward");
    let (x, w, dy) = (readable(x), readable(w), readable(dy));
    let (xv, wv, dyv) = (view(&x), view(&w), view(&dy));
    let (n, d_in, d_out) = (xv.rows(), xv.cols(), wv.cols());
    let dw = needs.w.then(|| tensor(gemm::matmul(xv.t(), dyv, 1.0), Shape::from([d_in, d_out])));
    let (mut dx, mut da, mut db) = (None, None, None);
    if let Some((l, xa)) = lora {
        let (a, b, xa) = (readable(l.a), readable(l.b), readable(xa));
        let (av, bv, xav) = (view(&a), view(&b), view(&xa));
        let r = av.cols();
        // The gradient at x·a: scale·dy·bᵀ, `[n, r]`.
        let dxa = (needs.x || needs.a).then(|| gemm::matmul(dyv, bv.t(), l.scale));
        if let (true, Some(dxa)) = (needs.x, &dxa) {
            // The adapter's share of x's gradient first (the mask, regenerated from its seed,
            // applies to it alone); the base share is added into it below, as in the forward.
            let mut part = gemm::matmul(View::new(dxa, n, r), av.t(), 1.0);
            if let Some((seed, keep)) = l.dropout {
                apply_dropout(&mut part, seed, keep);
            }
            dx = Some(part);
        }
        if let (true, Some(dxa)) = (needs.a, &dxa) {
            let masked = adapter_input(&x, l.dropout);
            let input = masked.as_deref().map_or(xv, |m| View::new(m, n, d_in));
            da = Some(tensor(gemm::matmul(input.t(), View::new(dxa, n, r), 1.0), Shape::from([d_in, r])));
        }
        db = needs.b.then(|| tensor(gemm::matmul(xav.t(), dyv, l.scale), Shape::from([r, d_out])));
    }
    if needs.x {
        match dx.as_mut() {
            Some(dx) => gemm::matmul_into(dx, dyv, wv.t(), 1.0, true),
            None => dx = Some(gemm::matmul(dyv, wv.t(), 1.0)),
        }
    }
    [dx.map(|dx| tensor(dx, Shape::from([n, d_in]))), dw, da, db]
}

/// `t` as a contiguous tensor whose storage holds exactly its elements, for writing in place
/// (copied only when it is a view).
fn dense(t: FlexTensor) -> FlexTensor {
    let layout = t.layout();
    let exact = layout.is_contiguous() && layout.start_offset() == 0 && t.storage::<f32>().len() == layout.num_elements();
    if exact {
        t
    } else {
        t.to_contiguous()
    }
}

/// [`super::adamw`] on slices: one parallel pass that updates `p`, `m` and `v` in place (their
/// buffers are copied first only if shared), so a step allocates nothing.
pub fn adamw(p: FlexTensor, g: &FlexTensor, m: FlexTensor, v: FlexTensor, s: AdamWStep) -> (FlexTensor, FlexTensor, FlexTensor) {
    let _timer = profile::kernel("adamw");
    let f = |x: f64| x as f32;
    let (decay, beta1, beta2, eps, step_size, bias2_sqrt, grad_scale) =
        (f(s.decay), f(s.beta1), f(s.beta2), f(s.eps), f(s.step_size), f(s.bias2_sqrt), f(s.grad_scale));
    let (mut p, mut m, mut v) = (dense(p), dense(m), dense(v));
    let g = values(g);
    p.storage_mut::<f32>()
        .par_chunks_mut(TASK_ELEMENTS)
        .zip(m.storage_mut::<f32>().par_chunks_mut(TASK_ELEMENTS))
        .zip(v.storage_mut::<f32>().par_chunks_mut(TASK_ELEMENTS))
        .zip(g.par_chunks(TASK_ELEMENTS))
        .for_each(|(((p, m), v), g)| vectorised(#[inline(always)] || {
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                let g = g * grad_scale;
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *p = *p * decay - *m / (v.sqrt() / bias2_sqrt + eps) * step_size;
            }
        }));
    (p, m, v)
}

impl FusedOps for Flex {
    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu_forward(&gate, &up)
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f32) -> FlexTensor {
        rms_norm_forward(&x, &weight, eps).0
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor, scale: f32) -> FlexTensor {
        super::attention::forward(&q, &k, &v, &bias, scale).0
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        rope(&x, &cos, &sin, false)
    }

    fn fused_linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        linear_forward(&x, &w, None).0
    }

    fn fused_lora_linear(x: FlexTensor, w: FlexTensor, a: FlexTensor, b: FlexTensor, scale: f32) -> FlexTensor {
        linear_forward(&x, &w, Some(&LoraFactors { a: &a, b: &b, scale, dropout: None })).0
    }

    fn fused_lora_dropout_linear(x: FlexTensor, w: FlexTensor, a: FlexTensor, b: FlexTensor, scale: f32, seed: u64, keep: f32) -> FlexTensor {
        linear_forward(&x, &w, Some(&LoraFactors { a: &a, b: &b, scale, dropout: Some((seed, keep)) })).0
    }

    fn fused_adamw(p: FlexTensor, g: FlexTensor, m: FlexTensor, v: FlexTensor, step: AdamWStep) -> (FlexTensor, FlexTensor, FlexTensor) {
        adamw(p, &g, m, v, step)
    }

    fn fused_token_logprobs(hidden: FlexTensor, weight: FlexTensor, targets: FlexTensor) -> FlexTensor {
        token_logprobs_forward(&hidden, &weight, &int_values(&targets), false).0
    }

    fn fused_embedding(table: FlexTensor, ids: FlexTensor) -> FlexTensor {
        embedding_forward(&table, &int_values(&ids))
    }
}

/// Rows `ids` of `table` (`[vocab, hidden]`), as `[ids.len(), hidden]`.
///
/// # Panics
/// If an id is past the table's last row.
pub fn embedding_forward(table: &FlexTensor, ids: &[i64]) -> FlexTensor {
    let table = readable(table);
    let tv = view(&table);
    let (vocab, hidden) = (tv.rows(), tv.cols());
    let mut out = Vec::with_capacity(ids.len() * hidden);
    for &id in ids {
        assert!((0..vocab as i64).contains(&id), "token id {id} past the embedding's {vocab} rows");
        match tv.transposed() {
            false => out.extend_from_slice(tv.row(id as usize)),
            true => out.extend((0..hidden).map(|j| tv.at(id as usize, j))),
        }
    }
    tensor(out, Shape::from([ids.len(), hidden]))
}

/// The table's gradient of [`embedding_forward`]: `dout`'s rows summed into the rows they were
/// looked up from, in a zeroed `[vocab, hidden]` buffer. Only those rows are written, so the
/// operating system maps the rest to no memory until something else writes them.
pub fn embedding_backward(ids: &[i64], dout: &FlexTensor, vocab: usize) -> FlexTensor {
    let g = values(dout);
    let hidden = if ids.is_empty() { 0 } else { g.len() / ids.len() };
    let mut grad = vec![0.0f32; vocab * hidden];
    for (&id, row) in ids.iter().zip(g.chunks_exact(hidden.max(1))) {
        for (x, &d) in grad[id as usize * hidden..][..hidden].iter_mut().zip(row) {
            *x += d;
        }
    }
    tensor(grad, Shape::from([vocab, hidden]))
}

/// Token ids of an int tensor.
pub fn int_values(t: &FlexTensor) -> Vec<i64> {
    t.clone().into_data().convert::<i64>().try_into_vec::<i64>().expect("int tensor")
}

#[cfg(test)]
mod tests {
    #[test]
    fn logit_blocks_are_tall_even_and_bounded() {
        // SmolLM2's vocabulary: 1024 rows in four blocks of 256 (64 MiB would hold 341).
        assert_eq!(super::logit_rows(1024, 49152), 256);
        assert_eq!(super::logit_rows(1025, 49152), 257);
        // Qwen2.5's: 64 MiB holds 110 rows, so blocks take 256, the least that runs fast.
        assert_eq!(super::logit_rows(1024, 151_936), 256);
        assert_eq!(super::logit_rows(37, 50), 37);
        // A small vocabulary: as many rows as 64 MiB holds (335 544), evenly.
        assert_eq!(super::logit_rows(1_000_000, 50), 333_334);
        for (rows, vocab) in [(1024, 49152), (1025, 151_936), (37, 50), (1_000_000, 50), (9000, 1000)] {
            let block = super::logit_rows(rows, vocab);
            assert!(block * vocab * 4 <= 64 << 20 || block <= 256, "{rows} × {vocab}: blocks of {block}");
            let blocks = rows.div_ceil(block);
            assert!(blocks * block - rows < blocks, "uneven: {rows} rows in blocks of {block}");
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_zero_at_minus_infinity() {
        let mut worst = 0.0f32;
        for i in -87_000..88_000 {
            let x = i as f32 * 1e-3 + 1.7e-4;
            let (ours, libm) = (super::exp(x), x.exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(-100.0), 0.0);
        assert!(super::exp(f32::NAN).is_nan());
    }
}
