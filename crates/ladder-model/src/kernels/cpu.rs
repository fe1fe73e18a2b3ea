//! The fused kernels on f32 slices (row-parallel with rayon), and the `Flex` backend's forward
//! and backward passes built from them and from flex's own matrix multiply.

use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::Flex;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::FusedOps;

/// Rows handed to one rayon task: enough work to amortise the task, small enough to balance.
fn rows_per_task(rows: usize, cols: usize) -> usize {
    (16_384 / cols.max(1)).clamp(1, rows.max(1))
}

/// The contiguous f32 values of `t` (copied only when `t` is a strided view).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
    }
}

fn tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// Runs `f` compiled for the best vector instructions this CPU has (AVX2 + FMA on x86-64),
/// so the element loops inside, and the [`exp`] they call, vectorise.
#[inline(always)]
fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `e^x` in f32 without branches or library calls, so loops calling it vectorise: Cephes'
/// `expf` (`x = n·ln 2 + r`, a degree-7 polynomial for `e^r`, `2^n` from exponent bits),
/// within 2 ulp of the libm value; `e^x` is 0 below −87.3 (so −∞ gives 0) and saturates
/// at `e^88`.
#[inline(always)]
fn exp(x: f32) -> f32 {
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
fn dot(a: &[f32], b: &[f32]) -> f32 {
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
fn sum(a: &[f32]) -> f32 {
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
    let (g, u) = (values(gate), values(up));
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(16_384).enumerate().for_each(|(c, o)| {
        let (g, u) = (&g[c * 16_384..], &u[c * 16_384..]);
        vectorised(|| {
            for ((o, &x), &y) in o.iter_mut().zip(g).zip(u) {
                *o = x * sigmoid(x) * y;
            }
        })
    });
    tensor(out, gate.layout().shape().clone())
}

/// Gradients of `silu(gate) * up` for the output gradient `dout`: `(dgate, dup)`.
pub fn swiglu_backward(gate: &FlexTensor, up: &FlexTensor, dout: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let (g, u, d) = (values(gate), values(up), values(dout));
    let mut dg = vec![0.0f32; g.len()];
    let mut du = vec![0.0f32; g.len()];
    dg.par_chunks_mut(16_384).zip(du.par_chunks_mut(16_384)).enumerate().for_each(|(c, (dg, du))| {
        let base = c * 16_384;
        let (g, u, d) = (&g[base..base + dg.len()], &u[base..base + dg.len()], &d[base..base + dg.len()]);
        vectorised(|| {
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
    let (xs, w) = (values(x), values(weight));
    let d = w.len();
    let rows = xs.len() / d;
    let mut out = vec![0.0f32; xs.len()];
    let mut inv = vec![0.0f32; rows];
    let per = rows_per_task(rows, d);
    out.par_chunks_mut(per * d).zip(inv.par_chunks_mut(per)).enumerate().for_each(|(c, (o, inv))| vectorised(|| {
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
    let (xs, w, dy) = (values(x), values(weight), values(dout));
    let d = w.len();
    let rows = xs.len() / d;
    let per = rows_per_task(rows, d);
    let mut dx = vec![0.0f32; xs.len()];
    // Each task sums its rows' weight gradient; the partial sums are added at the end.
    let dw = dx
        .par_chunks_mut(per * d)
        .enumerate()
        .map(|(c, dx)| vectorised(|| {
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
        .reduce(|| vec![0.0f32; d], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        });
    (tensor(dx, x.layout().shape().clone()), tensor(dw, weight.layout().shape().clone()))
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

impl Dims {
    pub fn of(q: &FlexTensor, k: &FlexTensor) -> Dims {
        let (qs, ks) = (q.layout().shape(), k.layout().shape());
        Dims { batch: qs[0], heads: qs[1], kv_heads: ks[1], queries: qs[2], keys: ks[2], head_dim: qs[3] }
    }

    /// Query rows per key/value head: its query heads end to end.
    fn group_rows(&self) -> usize {
        self.heads / self.kv_heads * self.queries
    }

    /// Batch rows per chunk, so that one chunk's scores stay within about 64 MiB.
    fn chunk(&self) -> usize {
        let per_row = self.heads * self.queries * self.keys * 4;
        ((64 << 20) / per_row.max(1)).clamp(1, self.batch)
    }
}

/// `[rows, kv, group_rows, head_dim]`: query heads of one key/value head stacked, a free
/// reshape of contiguous `[rows, heads, queries, head_dim]`.
fn grouped(x: &FlexTensor, dims: &Dims, start: usize, rows: usize) -> FlexTensor {
    let x = x.narrow(0, start, rows).to_contiguous();
    x.reshape(Shape::from([rows, dims.kv_heads, dims.group_rows(), dims.head_dim]))
}

/// Scaled, biased scores of rows `start..start + rows`, turned into probabilities in place;
/// with `lse` given (backward) the probabilities are recomputed from it, otherwise each query's
/// log-sum-exp is written to `lse_out`.
fn probabilities(q: &FlexTensor, k: &FlexTensor, bias: &[f32], scale: f32, dims: &Dims, start: usize, rows: usize, lse: Option<&[f32]>, lse_out: &mut [f32]) -> FlexTensor {
    let qg = grouped(q, dims, start, rows);
    let kt = k.narrow(0, start, rows).transpose(2, 3);
    let mut scores = Flex::float_matmul(qg, kt);
    let (tq, tk) = (dims.queries, dims.keys);
    let s = scores.storage_mut::<f32>();
    let per = rows_per_task(s.len() / tk, tk);
    let rows_per_batch = dims.kv_heads * dims.group_rows();
    s.par_chunks_mut(per * tk).zip(lse_out.par_chunks_mut(per)).enumerate().for_each(|(c, (s, lse_out))| vectorised(|| {
        for (r, row) in s.chunks_mut(tk).enumerate() {
            let flat = c * per + r;
            let (b, i) = (start + flat / rows_per_batch, flat % tq);
            let bias = &bias[(b * tq + i) * tk..(b * tq + i + 1) * tk];
            for (x, &m) in row.iter_mut().zip(bias) {
                *x = *x * scale + m;
            }
            match lse {
                Some(lse) => {
                    let l = lse[flat];
                    for x in row.iter_mut() {
                        *x = exp(*x - l);
                    }
                }
                None => {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for x in row.iter_mut() {
                        *x = exp(*x - max);
                    }
                    let total = sum(row);
                    let norm = 1.0 / total;
                    for x in row.iter_mut() {
                        *x *= norm;
                    }
                    lse_out[r] = max + total.ln();
                }
            }
        }
    }));
    scores
}

/// Attention output `[batch, heads, queries, head_dim]` and each query's log-sum-exp.
pub fn attention_forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, bias: &FlexTensor, scale: f32) -> (FlexTensor, Vec<f32>) {
    let dims = Dims::of(q, k);
    let bias = values(bias);
    let rows_per_batch = dims.kv_heads * dims.group_rows();
    let mut lse = vec![0.0f32; dims.batch * rows_per_batch];
    let mut outs = Vec::new();
    let chunk = dims.chunk();
    for start in (0..dims.batch).step_by(chunk) {
        let rows = chunk.min(dims.batch - start);
        let lse_chunk = &mut lse[start * rows_per_batch..(start + rows) * rows_per_batch];
        let p = probabilities(q, k, &bias, scale, &dims, start, rows, None, lse_chunk);
        let out = Flex::float_matmul(p, v.narrow(0, start, rows));
        outs.push(out.reshape(Shape::from([rows, dims.heads, dims.queries, dims.head_dim])));
    }
    (cat(outs), lse)
}

/// Gradients of attention with respect to `(q, k, v)`, recomputing the probabilities from the
/// saved log-sum-exp one chunk of batch rows at a time.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, bias: &FlexTensor, scale: f32, lse: &[f32], dout: &FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dims = Dims::of(q, k);
    let bias = values(bias);
    let rows_per_batch = dims.kv_heads * dims.group_rows();
    let tk = dims.keys;
    let (mut dqs, mut dks, mut dvs) = (Vec::new(), Vec::new(), Vec::new());
    let chunk = dims.chunk();
    for start in (0..dims.batch).step_by(chunk) {
        let rows = chunk.min(dims.batch - start);
        let lse_chunk = &lse[start * rows_per_batch..(start + rows) * rows_per_batch];
        let p = probabilities(q, k, &bias, scale, &dims, start, rows, Some(lse_chunk), &mut vec![0.0; lse_chunk.len()]);
        let dog = grouped(dout, &dims, start, rows);
        let (kc, vc) = (k.narrow(0, start, rows), v.narrow(0, start, rows));
        dvs.push(Flex::float_matmul(p.transpose(2, 3), dog.clone()));
        // dS = P ∘ (dP − rowsum(P ∘ dP)) · scale, written over dP.
        let mut ds = Flex::float_matmul(dog, vc.transpose(2, 3));
        let probs = p.as_slice::<f32>().expect("fresh scores are contiguous");
        let d = ds.storage_mut::<f32>();
        let per = rows_per_task(d.len() / tk, tk);
        d.par_chunks_mut(per * tk).enumerate().for_each(|(c, d)| vectorised(|| {
            for (r, row) in d.chunks_mut(tk).enumerate() {
                let at = (c * per + r) * tk;
                let p = &probs[at..at + tk];
                let rowsum = dot(row, p);
                for (d, &p) in row.iter_mut().zip(p) {
                    *d = p * (*d - rowsum) * scale;
                }
            }
        }));
        let qg = grouped(q, &dims, start, rows);
        dks.push(Flex::float_matmul(ds.transpose(2, 3), qg));
        let dq = Flex::float_matmul(ds, kc);
        dqs.push(dq.reshape(Shape::from([rows, dims.heads, dims.queries, dims.head_dim])));
    }
    (cat(dqs), cat(dks), cat(dvs))
}

/// Rows per block of the token log-prob kernel: one block's logits stay within about 8 MiB.
fn logit_rows(rows: usize, vocab: usize) -> usize {
    ((8 << 20) / (4 * vocab.max(1))).clamp(1, rows.max(1))
}

/// `[rows, 2]`: each row's target log-probability and mean logit, plus each row's log-sum-exp.
pub fn token_logprobs_forward(hidden: &FlexTensor, weight: &FlexTensor, targets: &[i64]) -> (FlexTensor, Vec<f32>) {
    let n = hidden.layout().shape()[0];
    let vocab = weight.layout().shape()[1];
    let mut out = vec![0.0f32; 2 * n];
    let mut lse = vec![0.0f32; n];
    let block = logit_rows(n, vocab);
    for start in (0..n).step_by(block) {
        let rows = block.min(n - start);
        let mut logits = Flex::float_matmul(hidden.narrow(0, start, rows), weight.clone());
        let l = logits.storage_mut::<f32>();
        let (out, lse) = (&mut out[2 * start..2 * (start + rows)], &mut lse[start..start + rows]);
        l.par_chunks_mut(vocab).zip(out.par_chunks_mut(2)).zip(lse.par_iter_mut()).enumerate().for_each(|(r, ((row, out), lse))| vectorised(|| {
            let target = row[targets[start + r] as usize];
            let mean = sum(row) / vocab as f32;
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            *lse = max + sum(row).ln();
            out[0] = target - *lse;
            out[1] = mean;
        }));
    }
    (tensor(out, Shape::from([n, 2])), lse)
}

/// Gradients of the target log-probabilities (`dout`'s first column) with respect to
/// `(hidden, weight)`, recomputing each block's logits; `weight`'s is skipped when not needed.
pub fn token_logprobs_backward(hidden: &FlexTensor, weight: &FlexTensor, targets: &[i64], lse: &[f32], dout: &FlexTensor, weight_grad: bool) -> (FlexTensor, Option<FlexTensor>) {
    let n = hidden.layout().shape()[0];
    let vocab = weight.layout().shape()[1];
    let g = values(dout);
    let block = logit_rows(n, vocab);
    let (mut dh, mut dw) = (Vec::new(), None);
    for start in (0..n).step_by(block) {
        let rows = block.min(n - start);
        let h = hidden.narrow(0, start, rows);
        let mut logits = Flex::float_matmul(h.clone(), weight.clone());
        // d log p[target] / d logits = onehot(target) − softmax, times the row's gradient.
        logits.storage_mut::<f32>().par_chunks_mut(vocab).enumerate().for_each(|(r, row)| vectorised(|| {
            let (gr, l) = (g[2 * (start + r)], lse[start + r]);
            for x in row.iter_mut() {
                *x = -gr * exp(*x - l);
            }
            row[targets[start + r] as usize] += gr;
        }));
        dh.push(Flex::float_matmul(logits.clone(), weight.transpose(0, 1)));
        if weight_grad {
            let part = Flex::float_matmul(h.transpose(0, 1), logits);
            dw = Some(match dw {
                None => part,
                Some(acc) => Flex::float_add(acc, part),
            });
        }
    }
    (cat(dh), dw)
}

fn cat(mut parts: Vec<FlexTensor>) -> FlexTensor {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Flex::float_cat(parts, 0)
    }
}

impl FusedOps for Flex {
    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu_forward(&gate, &up)
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f32) -> FlexTensor {
        rms_norm_forward(&x, &weight, eps).0
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor, scale: f32) -> FlexTensor {
        attention_forward(&q, &k, &v, &bias, scale).0
    }

    fn fused_token_logprobs(hidden: FlexTensor, weight: FlexTensor, targets: FlexTensor) -> FlexTensor {
        token_logprobs_forward(&hidden, &weight, &int_values(&targets)).0
    }
}

/// Token ids of an int tensor.
pub fn int_values(t: &FlexTensor) -> Vec<i64> {
    t.clone().into_data().convert::<i64>().try_into_vec::<i64>().expect("int tensor")
}

#[cfg(test)]
mod tests {
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
