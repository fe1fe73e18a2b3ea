//! Matrix products through the `gemm` crate (the kernel flex's own `matmul` runs), called
//! directly for two things flex's `matmul` cannot do: add a product into an existing buffer
//! (a LoRA update into the base layer's output, a LoRA input gradient into the base one), and
//! write a new product into memory that was never zeroed or copied (flex allocates every
//! output zeroed, then copies it once more to align it: two extra passes over each output).
//!
//! This is the only `unsafe` in `ladder`: `gemm::gemm` takes raw pointers and strides. The
//! safe [`View`] checks, when it is made, that every element its shape and strides reach lies
//! inside its slice, and [`matmul_into`] checks that the shapes agree, so the call cannot read
//! or write out of bounds.
#![allow(unsafe_code)]

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::low_rank;
use crate::weights::transpose;
use super::profile::{self, Gemm};

/// Products with fewer multiply-adds than this run on one thread, as in flex (threads cost
/// more than they save on small products).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// A read-only matrix over a slice: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// # Panics
    /// If an element the shape and strides reach lies outside `data`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(last < data.len(), "matrix view past its buffer: element {last} of {}", data.len());
        }
        View { data, rows, cols, row_stride, col_stride }
    }

    /// A 2-D f32 flex tensor as it lies in memory (transposed and narrowed views included).
    /// `None` for other layouts (negative strides).
    pub fn of(tensor: &'a FlexTensor) -> Option<Self> {
        let layout = tensor.layout();
        let (rows, cols, rs, cs) = layout.as_2d_strides()?;
        if rs < 0 || cs < 0 {
            return None;
        }
        let data = &tensor.storage::<f32>()[layout.start_offset()..];
        Some(Self::strided(data, rows, cols, rs as usize, cs as usize))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The transpose, without moving anything.
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Rows `start..start + len`, without moving anything.
    ///
    /// # Panics
    /// If they pass the last row.
    pub fn rows_range(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.rows, "rows {start}..{} of {}", start + len, self.rows);
        let data = if len == 0 { &self.data[..0] } else { &self.data[start * self.row_stride..] };
        View { data, rows: len, ..self }
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// Row `i` as a slice of `cols` elements.
    ///
    /// # Panics
    /// If rows are strided (see [`View::transposed`]) or `i` is past the last row.
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(!self.transposed() && i < self.rows, "row {i} of a {}-row view", self.rows);
        &self.data[i * self.row_stride..][..self.cols]
    }

    /// Whether a row's elements are strided (a transposed row-major matrix), not contiguous.
    pub fn transposed(&self) -> bool {
        self.col_stride != 1 && self.cols > 1
    }
}

/// `dst = alpha·lhs·rhs`, or `dst += alpha·lhs·rhs` when `accumulate`; `dst` is row-major
/// `[lhs.rows, rhs.cols]`.
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul_into(dst: &mut [f32], lhs: View, rhs: View, alpha: f32, accumulate: bool) {
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "matmul: output size");
    let _timer = profile::product(|| Gemm::of(&lhs, &rhs, 1));
    if lhs.cols == 0 && !accumulate {
        dst.fill(0.0);
    }
    // SAFETY: `dst` is a live, initialised buffer of exactly rows·cols elements.
    unsafe { gemm_raw(dst.as_mut_ptr(), lhs, rhs, alpha, accumulate, true) }
}

/// [`matmul_into`] on the calling thread alone, untimed: for the fused kernels' own parallel
/// tasks, which time their products themselves ([`profile::product_on_thread`]).
///
/// # Panics
/// If the shapes do not agree.
pub fn matmul_into_on_this_thread(dst: &mut [f32], lhs: View, rhs: View, alpha: f32, accumulate: bool) {
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "matmul: output size");
    if lhs.cols == 0 && !accumulate {
        dst.fill(0.0);
    }
    // SAFETY: `dst` is a live, initialised buffer of exactly rows·cols elements.
    unsafe { gemm_raw(dst.as_mut_ptr(), lhs, rhs, alpha, accumulate, false) }
}

/// `alpha·lhs·rhs` in a new row-major buffer that is written once, never zeroed first.
/// Products with a LoRA-rank side and a long inner dimension go to [`low_rank`]'s kernels.
pub fn matmul(lhs: View, rhs: View, alpha: f32) -> Vec<f32> {
    let len = lhs.rows * rhs.cols;
    if lhs.cols == 0 {
        return vec![0.0; len];
    }
    let _timer = profile::product(|| Gemm::of(&lhs, &rhs, 1));
    if let Some(out) = low_rank::product(lhs, rhs, alpha) {
        return out;
    }
    if wide(lhs.rows, rhs.cols) {
        // The transposed product, `rhsᵀ·lhsᵀ`, transposed back (a few rows: cheap).
        let (m, n) = (lhs.rows, rhs.cols);
        // SAFETY: with `accumulate` false and a non-empty inner dimension, gemm writes every
        // one of the product's `len` elements without reading any (see [`written`]).
        let t = unsafe { written(len, |dst| gemm_raw(dst, rhs.t(), lhs.t(), alpha, false, true)) };
        return transpose(&t, n, m);
    }
    // SAFETY: as above.
    unsafe { written(len, |dst| gemm_raw(dst, lhs, rhs, alpha, false, true)) }
}

/// Whether a product with `m` output rows and `n` columns is one gemm runs far slower than its
/// transpose: a few rows, many columns (a LoRA factor's gradient, `[r, d_out]`). Measured at
/// one thread: `[16×2048]ᵀ·[2048×1536]` ran at 45 GFLOP/s, its transpose
/// `[1536×2048]ᵀ·[2048×16]` at 95.
fn wide(m: usize, n: usize) -> bool {
    m < 32 && n >= 8 * m
}

/// A new buffer of `len` f32s that `write` fills through a raw pointer, never zeroed first.
///
/// # Safety
/// `write` must initialise all `len` elements behind the pointer, and read none of them.
unsafe fn written(len: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    write(out.as_mut_ptr());
    // SAFETY: the capacity holds `len` elements, all initialised by `write` (the caller's promise).
    unsafe { out.set_len(len) };
    out
}

/// `lhs[i]·rhs[i]` for every pair, as one row-major buffer `[pairs, m, n]` written once; the
/// pairs run in parallel, each product on one thread.
///
/// # Panics
/// If the pairs' shapes differ or do not agree.
pub fn matmul_batched(pairs: &[(View, View)]) -> Vec<f32> {
    let Some((l0, r0)) = pairs.first() else { return Vec::new() };
    let (m, n) = (l0.rows, r0.cols);
    for (l, r) in pairs {
        assert!(l.rows == m && r.cols == n && l.cols == r.rows, "batched matmul: shapes differ");
    }
    let len = pairs.len() * m * n;
    if l0.cols == 0 || m * n == 0 {
        return vec![0.0; len];
    }
    let _timer = profile::product(|| Gemm::of(l0, r0, pairs.len()));
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(m * n).zip(pairs).for_each(|(dst, (l, r))| {
        // SAFETY: `dst` is this pair's own m·n elements of the spare capacity; gemm writes
        // all of them (see [`matmul`]).
        unsafe { gemm_raw(dst.as_mut_ptr().cast::<f32>(), *l, *r, 1.0, false, false) }
    });
    // SAFETY: every chunk was written above.
    unsafe { out.set_len(len) };
    out
}

/// # Safety
/// `dst` must be valid for writes (and, with `accumulate`, reads) of `lhs.rows · rhs.cols`
/// f32s, row-major, and must not overlap either view.
unsafe fn gemm_raw(dst: *mut f32, lhs: View, rhs: View, alpha: f32, accumulate: bool, threads: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(k, rhs.rows, "matmul: inner dimensions differ");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let parallelism = if threads && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: each view was checked on construction to keep every element it reaches inside
    // its slice; `dst` is the caller's promise above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        (0..m * n).map(|i| (0..k).map(|p| a[i / n * k + p] * b[p * n + i % n]).sum()).collect()
    }

    #[test]
    fn products_transposes_and_accumulation_match_a_naive_product() {
        // The second shape is wide (few rows, many columns): computed through its transpose.
        for (m, k, n) in [(37, 300, 29), (3, 300, 29)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let want = naive(&a, &b, m, k, n);
            let close = |got: &[f32], want: &[f32]| got.iter().zip(want).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()));

            assert!(close(&matmul(View::new(&a, m, k), View::new(&b, k, n), 1.0), &want));
            // bᵀ stored transposed, read through a transposed view.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            assert!(close(&matmul(View::new(&a, m, k), View::new(&bt, n, k).t(), 1.0), &want));
            let mut acc = want.clone();
            matmul_into(&mut acc, View::new(&a, m, k), View::new(&b, k, n), -2.0, true);
            assert!(close(&acc, &want.iter().map(|x| -x).collect::<Vec<_>>()));
            // A band of rows, as the log-prob kernels take them.
            let rows = matmul(View::new(&a, m, k).rows_range(1, m - 2), View::new(&b, k, n), 1.0);
            assert!(close(&rows, &want[n..(m - 1) * n]));
        }
    }

    #[test]
    #[should_panic(expected = "past its buffer")]
    fn a_view_past_its_buffer_is_refused() {
        View::new(&[0.0; 5], 2, 3);
    }
}
