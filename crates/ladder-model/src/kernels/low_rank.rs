//! Matrix products with one side of LoRA-rank size (at most [`MAX_RANK`]) and a long inner
//! dimension (the tokens of a step, or a layer's width): `x·a` and `dy·bᵀ` down to the rank,
//! and the factor gradients `(x·a)ᵀ·dy` and `xᵀ·(dy·bᵀ)`, which sum one outer product per token.
//!
//! gemm runs these at 23–60 GFLOP/s where it runs a layer's own products at 110–190: its
//! micro-kernel tiles are sized for big outputs, and an output of 16 × 576 has too few of them
//! to fill the registers and the threads (profile of a 135M LoRA step, AVX-512, 2 threads).
//! These kernels keep a whole `rank × width` tile of the output in registers for the length of
//! the inner dimension, read each operand element once per tile, and split the tiles across
//! threads: 27–74 GFLOP/s in the same step, 39–106 alone (README, "Vector code that was not").
//! Only the order of the additions differs from gemm's (a running sum per output over each block
//! of [`BLOCK`] inner indices, added to the output's total).
//!
//! Each rayon task enters pulp's dispatch itself: pulp's instruction sets apply only to code
//! inlined into the function it dispatches to, and a rayon closure is called from rayon's.

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

use super::gemm::View;
use crate::weights::transpose;

/// The largest rank side these kernels take; wider products go to gemm.
pub const MAX_RANK: usize = 32;

/// Inner indices summed in registers before the sum is added to the tile's total: one running
/// sum over a 70,000-long inner dimension (an LM head's vocabulary) drifted 1e-4 from the
/// reference, where gemm, which blocks its inner dimension too, stays within it.
const BLOCK: usize = 256;

/// Inner dimensions shorter than this go to gemm: the kernels' set-up (packing the rank side)
/// is not worth it on short sums.
const MIN_INNER: usize = 128;

/// `alpha·lhs·rhs` as a new row-major buffer when one side is of rank size and the product is
/// one of those this module runs faster than gemm; `None` otherwise.
pub(super) fn product(lhs: View, rhs: View, alpha: f32) -> Option<Vec<f32>> {
    let (m, k, n) = (lhs.rows(), lhs.cols(), rhs.cols());
    if k < MIN_INNER || m == 0 || n == 0 {
        return None;
    }
    let wide = |len: usize| len > MAX_RANK;
    if m <= MAX_RANK && wide(n) && !rhs.transposed() {
        // `(x·a)ᵀ·dy`: rank rows, each a sum over k of rank-1 updates.
        return Some(rank_by_wide(lhs.t(), rhs, alpha, None));
    }
    if n <= MAX_RANK && wide(m) && !lhs.t().transposed() {
        // `xᵀ·(dy·bᵀ)`: the same sum with the sides swapped, transposed back.
        let t = rank_by_wide(rhs, lhs.t(), alpha, None);
        return Some(transpose(&t, n, m));
    }
    if n <= MAX_RANK && wide(m) && !lhs.transposed() {
        // `x·a`: each row of `x` down to the rank.
        return Some(wide_by_rank(lhs, rhs, alpha, None));
    }
    None
}

/// The rank side `[k, r]` copied into a contiguous `[k, padded]` buffer (zeros past `r`),
/// multiplied by `alpha`: the kernels then read `padded` values per inner index from one place.
fn pack(small: View, padded: usize, alpha: f32) -> Vec<f32> {
    let (k, r) = (small.rows(), small.cols());
    let mut out = vec![0.0f32; k * padded];
    for (p, row) in out.chunks_exact_mut(padded).enumerate() {
        for (i, x) in row[..r].iter_mut().enumerate() {
            *x = alpha * small.at(p, i);
        }
    }
    out
}

/// f32 lanes in the vectors pulp dispatches to on this CPU (16 with AVX-512, 8 with AVX2).
fn lanes() -> usize {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    Arch::new().dispatch(Lanes)
}

/// Vectors of columns in one tile of [`rank_by_wide`].
const TILE_VECTORS: usize = 3;

/// `alpha·smallᵀ·big` for `small: [k, r]`, `big: [k, n]` (rows contiguous): a `[r, n]` buffer.
///
/// The output is cut into strips [`TILE_VECTORS`] vectors wide; each strip is summed over all
/// `k` a tile of `ranks` by the strip at a time, the tile held in registers (8 ranks with
/// AVX-512's 32 registers, 4 with AVX2's 16), and written once. Threads take whole strips, so
/// no two write the same output and no partial sums are added. `ranks` is forced only by the
/// tests of each tile size.
fn rank_by_wide(small: View, big: View, alpha: f32, ranks: Option<usize>) -> Vec<f32> {
    let (r, n) = (small.cols(), big.cols());
    let padded = r.div_ceil(8) * 8;
    let s = pack(small, padded, alpha);
    let lanes = lanes();
    let ranks = ranks.unwrap_or(if lanes >= 16 { 8 } else { 4 });
    let w = TILE_VECTORS * lanes;
    let strips: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(w))
        .into_par_iter()
        .map(|strip| {
            let c0 = strip * w;
            // Each task enters the vector code itself: pulp's instruction sets apply only to
            // code inlined into the function it dispatches to, which a rayon closure is not.
            let op = Strip { s: &s, padded, ranks, big, c0, width: w.min(n - c0) };
            (c0, Arch::new().dispatch(op))
        })
        .collect();
    let mut out = vec![0.0f32; r * n];
    for (c0, block) in strips {
        let width = block.len() / padded;
        for (i, row) in out.chunks_exact_mut(n).enumerate() {
            row[c0..c0 + width].copy_from_slice(&block[i * width..][..width]);
        }
    }
    out
}

/// One strip of [`rank_by_wide`]: columns `c0..c0+width` of every (padded) rank, `[padded, width]`.
struct Strip<'a> {
    s: &'a [f32],
    padded: usize,
    ranks: usize,
    big: View<'a>,
    c0: usize,
    width: usize,
}

impl WithSimd for Strip<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f32> {
        match self.ranks {
            8 => strip_tiled::<S, 8>(simd, self),
            4 => strip_tiled::<S, 4>(simd, self),
            other => unreachable!("no tile of {other} ranks"),
        }
    }
}

#[inline(always)]
fn strip_tiled<S: Simd, const R: usize>(simd: S, op: Strip) -> Vec<f32> {
    let Strip { s, padded, big, c0, width, .. } = op;
    let k = big.rows();
    let mut block = vec![0.0f32; padded * width];
    for r0 in (0..padded).step_by(R) {
        if width == TILE_VECTORS * S::F32_LANES {
            let acc = outer_sum_tile::<S, R>(simd, s, padded, r0, big, c0);
            for (i, row) in acc.iter().enumerate() {
                store(simd, &mut block[(r0 + i) * width..][..width], row);
            }
        } else {
            // The last, narrower strip: the same sums, element by element.
            let mut acc = vec![0.0f32; R * width];
            for p0 in (0..k).step_by(BLOCK) {
                acc.fill(0.0);
                for p in p0..(p0 + BLOCK).min(k) {
                    let b = &big.row(p)[c0..c0 + width];
                    for (i, acc) in acc.chunks_exact_mut(width).enumerate() {
                        let a = s[p * padded + r0 + i];
                        for (o, &x) in acc.iter_mut().zip(b) {
                            *o += a * x;
                        }
                    }
                }
                for (o, &x) in block[r0 * width..][..R * width].iter_mut().zip(&acc) {
                    *o += x;
                }
            }
        }
    }
    block
}

/// One tile of `sᵀ·big`: ranks `r0..r0+R` by [`TILE_VECTORS`] vectors of columns from `c0`,
/// in registers.
#[inline(always)]
fn outer_sum_tile<S: Simd, const R: usize>(simd: S, s: &[f32], padded: usize, r0: usize, big: View, c0: usize) -> [[S::f32s; TILE_VECTORS]; R] {
    let w = TILE_VECTORS * S::F32_LANES;
    let k = big.rows();
    let mut total = [[simd.splat_f32s(0.0); TILE_VECTORS]; R];
    for p0 in (0..k).step_by(BLOCK) {
        let mut acc = [[simd.splat_f32s(0.0); TILE_VECTORS]; R];
        for p in p0..(p0 + BLOCK).min(k) {
            let b: &[S::f32s; TILE_VECTORS] = S::as_simd_f32s(&big.row(p)[c0..c0 + w]).0.try_into().expect("a full tile");
            let a: &[f32; R] = s[p * padded + r0..][..R].try_into().expect("a rank tile");
            for i in 0..R {
                let ai = simd.splat_f32s(a[i]);
                for v in 0..TILE_VECTORS {
                    acc[i][v] = simd.mul_add_e_f32s(ai, b[v], acc[i][v]);
                }
            }
        }
        add_into(simd, &mut total, &acc);
    }
    total
}

/// `total += acc`, tile by tile.
#[inline(always)]
fn add_into<S: Simd, const M: usize, const P: usize>(simd: S, total: &mut [[S::f32s; P]; M], acc: &[[S::f32s; P]; M]) {
    for (t, a) in total.iter_mut().zip(acc) {
        for (t, &a) in t.iter_mut().zip(a) {
            *t = simd.add_f32s(*t, a);
        }
    }
}

/// The first `dst.len()` lanes of `row`.
#[inline(always)]
fn store<S: Simd>(simd: S, dst: &mut [f32], row: &[S::f32s]) {
    for (part, &v) in dst.chunks_mut(S::F32_LANES).zip(row) {
        simd.partial_store_f32s(part, v);
    }
}

/// Rows of the output handed to one rayon task by [`wide_by_rank`].
const BAND_ROWS: usize = 64;

/// `alpha·big·small` for `big: [m, k]` (rows contiguous), `small: [k, r]`: a `[m, r]` buffer.
///
/// Threads take bands of rows; a band is summed over all `k` a tile of `rows` rows by the
/// whole rank (padded to whole vectors) at a time, about 12 accumulators in registers.
/// `rows` is forced only by the tests of each tile size.
fn wide_by_rank(big: View, small: View, alpha: f32, rows: Option<usize>) -> Vec<f32> {
    let (m, r) = (big.rows(), small.cols());
    let lanes = lanes();
    let vectors = r.div_ceil(lanes);
    let s = pack(small, vectors * lanes, alpha);
    let rows = rows.unwrap_or(12 / vectors);
    let mut out = vec![0.0f32; m * r];
    out.par_chunks_mut(BAND_ROWS * r).enumerate().for_each(|(band, dst)| {
        let first = band * BAND_ROWS;
        Arch::new().dispatch(Band { s: &s, vectors, rows, big, first, dst });
    });
    out
}

/// One band of [`wide_by_rank`]: rows `first..` of the output, written into `dst`.
struct Band<'a> {
    s: &'a [f32],
    vectors: usize,
    rows: usize,
    big: View<'a>,
    first: usize,
    dst: &'a mut [f32],
}

impl WithSimd for Band<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        match (self.vectors, self.rows) {
            (1, 12) => band_tiled::<S, 12, 1>(simd, self),
            (1, 6) => band_tiled::<S, 6, 1>(simd, self),
            (2, 6) => band_tiled::<S, 6, 2>(simd, self),
            (2, 3) => band_tiled::<S, 3, 2>(simd, self),
            (3, 4) => band_tiled::<S, 4, 3>(simd, self),
            (4, 3) => band_tiled::<S, 3, 4>(simd, self),
            // Other vector widths and tiles: one output at a time.
            _ => band_plain(self),
        }
    }
}

/// [`Band`] without a register tile, for tile shapes no instruction set here uses.
fn band_plain(op: Band) {
    let Band { s, big, first, dst, .. } = op;
    let k = big.cols();
    let padded = s.len() / k;
    let r = dst.len() / BAND_ROWS.min(big.rows() - first);
    for (t, out) in dst.chunks_exact_mut(r).enumerate() {
        let row = big.row(first + t);
        for (j, o) in out.iter_mut().enumerate() {
            let part = |p0: usize| (p0..(p0 + BLOCK).min(k)).map(|p| row[p] * s[p * padded + j]).sum::<f32>();
            *o = (0..k).step_by(BLOCK).map(part).sum();
        }
    }
}

#[inline(always)]
fn band_tiled<S: Simd, const M: usize, const P: usize>(simd: S, op: Band) {
    let Band { s, big, first, dst, .. } = op;
    let k = big.cols();
    let rows = BAND_ROWS.min(big.rows() - first);
    let r = dst.len() / rows;
    let mut t = 0;
    while t < rows {
        if t + M <= rows {
            let acc = dot_tile::<S, M, P>(simd, s, big, first + t, k);
            for (i, row) in acc.iter().enumerate() {
                store(simd, &mut dst[(t + i) * r..][..r], row);
            }
            t += M;
        } else {
            let acc = dot_tile::<S, 1, P>(simd, s, big, first + t, k);
            store(simd, &mut dst[t * r..][..r], &acc[0]);
            t += 1;
        }
    }
}

/// Inner indices [`dot_tile`] takes per bounds check of its rows.
const CHUNK: usize = 16;

/// Rows `t0..t0+M` of `big·s`, all `P` vectors of ranks, in registers. The rows are read
/// [`CHUNK`] elements at a time, so the loop inside has no bounds checks (one per element
/// and row cost a third of this kernel's time in `perf annotate`).
#[inline(always)]
fn dot_tile<S: Simd, const M: usize, const P: usize>(simd: S, s: &[f32], big: View, t0: usize, k: usize) -> [[S::f32s; P]; M] {
    let mut total = [[simd.splat_f32s(0.0); P]; M];
    let rows: [&[f32]; M] = std::array::from_fn(|i| big.row(t0 + i));
    let packed = S::as_simd_f32s(&s[..k * P * S::F32_LANES]).0;
    for start in (0..k).step_by(BLOCK) {
        let end = (start + BLOCK).min(k);
        let mut acc = [[simd.splat_f32s(0.0); P]; M];
        let whole = start + (end - start) / CHUNK * CHUNK;
        for p0 in (start..whole).step_by(CHUNK) {
            let a: [&[f32; CHUNK]; M] = std::array::from_fn(|i| rows[i][p0..p0 + CHUNK].try_into().expect("a chunk"));
            let b = &packed[p0 * P..(p0 + CHUNK) * P];
            for q in 0..CHUNK {
                rank_one(simd, &mut acc, std::array::from_fn(|i| a[i][q]), &b[q * P..][..P]);
            }
        }
        for p in whole..end {
            rank_one(simd, &mut acc, std::array::from_fn(|i| rows[i][p]), &packed[p * P..][..P]);
        }
        add_into(simd, &mut total, &acc);
    }
    total
}

/// `acc[i] += a[i]·b` for each of the tile's rows.
#[inline(always)]
fn rank_one<S: Simd, const M: usize, const P: usize>(simd: S, acc: &mut [[S::f32s; P]; M], a: [f32; M], b: &[S::f32s]) {
    for i in 0..M {
        let ai = simd.splat_f32s(a[i]);
        for v in 0..P {
            acc[i][v] = simd.mul_add_e_f32s(ai, b[v], acc[i][v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product as three nested loops, summed in f64.
    fn naive(l: View, r: View, alpha: f32) -> Vec<f32> {
        let (m, k, n) = (l.rows(), l.cols(), r.cols());
        (0..m * n)
            .map(|i| alpha * (0..k).map(|p| f64::from(l.at(i / n, p)) * f64::from(r.at(p, i % n))).sum::<f64>() as f32)
            .collect()
    }

    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7 + salt) % 23) as f32 - 11.0) / 11.0).collect()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: {g} against {w}");
        }
    }

    /// Every LoRA product this module takes, at ranks that fill, pad and overflow a register
    /// tile, and widths that end in a full strip and in a narrower one.
    #[test]
    fn rank_sized_products_match_a_naive_product() {
        let k = 300;
        for r in [1, 8, 13, 16, 32] {
            for d in [192, 200] {
                let x = values(k * d, 1); // [k, d]: the layer's input or output gradient
                let xa = values(k * r, 2); // [k, r]
                let a = values(d * r, 3); // [d, r]
                let bt = values(r * d, 4); // [r, d], read transposed
                let (xv, xav) = (View::new(&x, k, d), View::new(&xa, k, r));
                // (x·a)ᵀ·dy
                let got = product(xav.t(), xv, 0.5).expect("taken");
                assert_close(&got, &naive(xav.t(), xv, 0.5));
                // xᵀ·(dy·bᵀ)
                let got = product(xv.t(), xav, 1.0).expect("taken");
                assert_close(&got, &naive(xv.t(), xav, 1.0));
                // x·a, and dy·bᵀ through a transposed view
                let (av, btv) = (View::new(&a, d, r), View::new(&bt, r, d).t());
                let x2 = values(d * k, 5);
                let x2v = View::new(&x2, k, d);
                assert_close(&product(x2v, av, 2.0).expect("taken"), &naive(x2v, av, 2.0));
                assert_close(&product(x2v, btv, 1.0).expect("taken"), &naive(x2v, btv, 1.0));
            }
        }
    }

    /// The tile sizes of the other instruction sets, whichever this machine dispatches to.
    #[test]
    fn every_tile_size_matches_a_naive_product() {
        let (k, d) = (300, 200);
        for r in [5, 16, 29] {
            let x = values(k * d, 1);
            let s = values(k * r, 2);
            let (xv, sv) = (View::new(&x, k, d), View::new(&s, k, r));
            let want = naive(sv.t(), xv, 1.5);
            for ranks in [8, 4] {
                assert_close(&rank_by_wide(sv, xv, 1.5, Some(ranks)), &want);
            }
            let a = values(d * r, 3);
            let av = View::new(&a, d, r);
            let want = naive(xv, av, 0.5);
            // The last is no tile shape: the plain loop.
            for rows in [12, 6, 4, 3, 5] {
                assert_close(&wide_by_rank(xv, av, 0.5, Some(rows)), &want);
            }
        }
    }

    /// A 70,000-long inner dimension (an LM head's vocabulary with a narrow hidden size), where
    /// one unblocked running sum drifted past the log-prob kernel's test tolerance.
    #[test]
    fn long_inner_dimensions_stay_close_to_an_exact_sum() {
        let (k, d, r) = (70_000, 64, 8);
        let x = values(k * d, 1);
        let s = values(k * r, 2);
        let (xv, sv) = (View::new(&x, k, d), View::new(&s, k, r));
        // Bound: 1e-6 of the sum of the terms' magnitudes (f32 on 70,000 terms unblocked is ~4e-3).
        let bound = |l: View, rt: View| -> Vec<f32> {
            let (m, n) = (l.rows(), rt.cols());
            (0..m * n).map(|i| (0..l.cols()).map(|p| (l.at(i / n, p) * rt.at(p, i % n)).abs()).sum::<f32>() * 1e-6).collect()
        };
        let check = |got: Vec<f32>, l: View, rt: View| {
            for ((g, w), b) in got.iter().zip(naive(l, rt, 1.0)).zip(bound(l, rt)) {
                assert!((g - w).abs() <= b, "{g} against {w}, bound {b}");
            }
        };
        check(product(sv.t(), xv, 1.0).expect("taken"), sv.t(), xv);
        let a = values(k * r, 3);
        let x2 = values(d * k, 4);
        let (av, x2v) = (View::new(&a, k, r), View::new(&x2, d, k));
        check(product(x2v, av, 1.0).expect("taken"), x2v, av);
    }

    #[test]
    fn other_products_are_left_to_gemm() {
        let a = values(128 * 128, 1);
        let v = View::new(&a, 128, 128);
        assert!(product(v, v, 1.0).is_none(), "no rank-sized side");
        let short = View::new(&a, 64, 16);
        assert!(product(short.t(), View::new(&a, 64, 64), 1.0).is_none(), "short inner dimension");
    }
}
