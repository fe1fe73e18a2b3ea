//! Softmax attention on the CPU, fused flash-style: every work item is one query tile of one
//! batch row and key/value head, and runs on one thread from its queries to its output.
//!
//! A tile holds the 64 queries of each query head that shares the key/value head (grouped-query
//! attention reads the keys and values where they lie, never copied per query head), and its
//! scores span only the keys some query of the tile can see, so causal attention skips most of
//! the masked half. The scores, the probabilities and, in the backward pass, their gradients
//! (at 135M's shape 192 × 256 floats, 192 KiB) stay in the core's cache between the two
//! products and the softmax that use them. The version before this one ran each of those
//! passes over every tile of the batch at once, with a thread synchronisation and a buffer of
//! several MiB between passes: the passes outside the products took about 45% of attention's
//! time in a 135M LoRA step (README, "Where a step's time goes").
//!
//! Only one f32 per query (the log-sum-exp of its scores) is kept for the backward pass, which
//! recomputes each tile's probabilities from it. The backward pass gives each item the key and
//! value gradients of its own batch row and head; where there are fewer than [`MIN_TASKS`]
//! such pairs (a long single row), each pair's tiles are cut into parts whose key and value
//! gradients are added up in order afterwards. The cut depends on the shape only, never on the
//! thread count, so the gradients are the same on any number of threads.

use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

use super::cpu::{dot, exp, matrices, sum, tensor, values, vectorised};
use super::gemm::{self, View};
use super::profile;

/// Queries per tile, per query head.
const QUERY_TILE: usize = 64;

/// Work items the backward pass is cut into at the least, where the shape allows.
const MIN_TASKS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

impl Dims {
    fn of(q: &FlexTensor, k: &FlexTensor) -> Dims {
        let (qs, ks) = (q.layout().shape(), k.layout().shape());
        Dims { batch: qs[0], heads: qs[1], kv_heads: ks[1], queries: qs[2], keys: ks[2], head_dim: qs[3] }
    }

    /// Query heads per key/value head.
    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// One work item: queries `q0..q0 + len` of each query head of key/value head `kv` in batch
/// row `b`, which see keys `..keys` at most.
#[derive(Clone, Copy, Debug)]
struct Tile {
    b: usize,
    kv: usize,
    q0: usize,
    len: usize,
    keys: usize,
}

impl Tile {
    /// Every tile, ordered by batch row, then key/value head, then queries.
    fn all(dims: &Dims, bias: &[f32]) -> Vec<Tile> {
        // The last key each query can see, from its bias row.
        let last: Vec<usize> = bias.par_chunks(dims.keys).map(|row| row.iter().rposition(|&m| m > f32::NEG_INFINITY).unwrap_or(0)).collect();
        let mut tiles = Vec::new();
        for b in 0..dims.batch {
            for kv in 0..dims.kv_heads {
                for q0 in (0..dims.queries).step_by(QUERY_TILE) {
                    let len = QUERY_TILE.min(dims.queries - q0);
                    let keys = (q0..q0 + len).map(|i| last[b * dims.queries + i] + 1).max().unwrap_or(1);
                    tiles.push(Tile { b, kv, q0, len, keys });
                }
            }
        }
        tiles
    }

    /// Rows of the tile's scores: `len` queries of each of the group's query heads.
    fn rows(&self, dims: &Dims) -> usize {
        dims.groups() * self.len
    }

    /// Row `r`'s query head and query position.
    fn query(&self, r: usize, dims: &Dims) -> (usize, usize) {
        (self.kv * dims.groups() + r / self.len, self.q0 + r % self.len)
    }

    /// The tile's rows of `x` (`[batch · heads]` matrices `[queries, head_dim]`), gathered into
    /// a row-major `[rows, head_dim]` buffer.
    fn gather(&self, x: &[View], dims: &Dims) -> Vec<f32> {
        let d = dims.head_dim;
        let mut out = vec![0.0f32; self.rows(dims) * d];
        for (r, row) in out.chunks_exact_mut(d).enumerate() {
            let (h, i) = self.query(r, dims);
            let m = &x[self.b * dims.heads + h];
            match m.transposed() {
                false => row.copy_from_slice(m.row(i)),
                true => row.iter_mut().enumerate().for_each(|(j, y)| *y = m.at(i, j)),
            }
        }
        out
    }

    /// This tile's keys (or values): the first `keys` rows of its head's matrix.
    fn keys_of<'a>(&self, x: &[View<'a>], dims: &Dims) -> View<'a> {
        x[self.b * dims.kv_heads + self.kv].rows_range(0, self.keys)
    }

    /// Where row `r`'s values go in a `[batch, heads, queries, …]` buffer (in units of rows).
    fn out_row(&self, r: usize, dims: &Dims) -> usize {
        let (h, i) = self.query(r, dims);
        (self.b * dims.heads + h) * dims.queries + i
    }

    /// Row `r`'s bias over the tile's keys.
    fn bias<'a>(&self, r: usize, bias: &'a [f32], dims: &Dims) -> &'a [f32] {
        let (_, i) = self.query(r, dims);
        &bias[(self.b * dims.queries + i) * dims.keys..][..self.keys]
    }
}

/// What every tile of one call shares: its shapes, its bias rows, the scores' scale, and the
/// kernel name its products are profiled under.
struct Call<'a> {
    dims: Dims,
    bias: &'a [f32],
    scale: f32,
    kernel: &'static str,
}

/// `dst (+)= alpha·lhs·rhs` on this thread, timed under `kernel` when profiling.
fn product(kernel: &'static str, dst: &mut [f32], lhs: View, rhs: View, alpha: f32, accumulate: bool) {
    let _timer = profile::product_on_thread(kernel, &lhs, &rhs);
    gemm::matmul_into_on_this_thread(dst, lhs, rhs, alpha, accumulate);
}

/// The tile's probabilities `[rows, keys]`: scaled scores plus bias, turned into probabilities
/// with each row's log-sum-exp, computed (`lse` `None`, returned) or read from `lse` (indexed
/// like the output's rows).
fn probabilities(call: &Call, tile: &Tile, q: &[f32], k: View, lse: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let Call { dims, bias, scale, kernel } = *call;
    let dims = &dims;
    let (rows, keys) = (tile.rows(dims), tile.keys);
    let mut p = vec![0.0f32; rows * keys];
    product(kernel, &mut p, View::new(q, rows, dims.head_dim), k.t(), scale, false);
    let mut sums = Vec::with_capacity(if lse.is_some() { 0 } else { rows });
    vectorised(#[inline(always)] || {
        for (r, row) in p.chunks_exact_mut(keys).enumerate() {
            for (x, &m) in row.iter_mut().zip(tile.bias(r, bias, dims)) {
                *x += m;
            }
            match lse {
                Some(lse) => {
                    let l = lse[tile.out_row(r, dims)];
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
                    sums.push(max + total.ln());
                }
            }
        }
    });
    (p, sums)
}

/// Writes each tile's rows (`[rows, width]` each, in [`Tile::all`]'s order) to their places in
/// a new `[batch, heads, queries, width]` buffer.
fn scatter(tiles: &[Tile], parts: &[Vec<f32>], dims: &Dims, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; dims.batch * dims.heads * dims.queries * width];
    // One (batch row, key/value head) owns `groups` consecutive heads: a contiguous block.
    let block = dims.groups() * dims.queries * width;
    let per_pair = dims.queries.div_ceil(QUERY_TILE);
    out.par_chunks_mut(block.max(1)).zip(tiles.par_chunks(per_pair.max(1)).zip(parts.par_chunks(per_pair.max(1)))).for_each(|(out, (tiles, parts))| {
        for (tile, part) in tiles.iter().zip(parts) {
            for (r, row) in part.chunks_exact(width).enumerate() {
                let at = tile.out_row(r, dims) % (dims.groups() * dims.queries);
                out[at * width..][..width].copy_from_slice(row);
            }
        }
    });
    out
}

/// Attention output `[batch, heads, queries, head_dim]` and each query's log-sum-exp
/// (`[batch, heads, queries]`), for `q` `[batch, heads, queries, d]`, `k` and `v`
/// `[batch, kv_heads, keys, d]` (any strides) and the additive `bias` `[batch, 1, queries, keys]`.
pub fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, bias: &FlexTensor, scale: f32) -> (FlexTensor, Vec<f32>) {
    const KERNEL: &str = "attention forward";
    let _timer = profile::kernel(KERNEL);
    let dims = Dims::of(q, k);
    let bias = values(bias);
    let call = Call { dims, bias: &bias, scale, kernel: KERNEL };
    let tiles = Tile::all(&dims, &bias);
    let (qs, ks, vs) = (matrices(q), matrices(k), matrices(v));
    let d = dims.head_dim;
    let results: Vec<(Vec<f32>, Vec<f32>)> = tiles
        .par_iter()
        .map(|tile| {
            let qt = tile.gather(&qs, &dims);
            let (p, lse) = probabilities(&call, tile, &qt, tile.keys_of(&ks, &dims), None);
            let mut out = vec![0.0f32; tile.rows(&dims) * d];
            product(KERNEL, &mut out, View::new(&p, tile.rows(&dims), tile.keys), tile.keys_of(&vs, &dims), 1.0, false);
            (out, lse)
        })
        .collect();
    let (outs, lses): (Vec<Vec<f32>>, Vec<Vec<f32>>) = results.into_iter().unzip();
    let out = scatter(&tiles, &outs, &dims, d);
    let lse = scatter(&tiles, &lses, &dims, 1);
    (tensor(out, Shape::from([dims.batch, dims.heads, dims.queries, d])), lse)
}

/// Gradients of [`forward`] with respect to `(q, k, v)`, recomputing each tile's probabilities
/// from the saved log-sum-exp.
#[allow(clippy::too_many_arguments)]
pub fn backward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, bias: &FlexTensor, scale: f32, lse: &[f32], dout: &FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
    const KERNEL: &str = "attention backward";
    let _timer = profile::kernel(KERNEL);
    let dims = Dims::of(q, k);
    let bias = values(bias);
    let call = Call { dims, bias: &bias, scale, kernel: KERNEL };
    let tiles = Tile::all(&dims, &bias);
    let (qs, ks, vs, dos) = (matrices(q), matrices(k), matrices(v), matrices(dout));
    let d = dims.head_dim;
    let per_pair = dims.queries.div_ceil(QUERY_TILE).max(1);
    let pairs = dims.batch * dims.kv_heads;
    let parts = MIN_TASKS.div_ceil(pairs.max(1)).clamp(1, per_pair);
    let items: Vec<&[Tile]> = tiles.chunks(per_pair).flat_map(|pair| split_by_work(pair, parts)).collect();
    let results: Vec<ItemGrads> = items
        .par_iter()
        .map(|tiles| {
            let seen = tiles.iter().map(|t| t.keys).max().unwrap_or(0);
            let (mut dk, mut dv) = (vec![0.0f32; seen * d], vec![0.0f32; seen * d]);
            let dqs = tiles
                .iter()
                .map(|tile| {
                    let (rows, keys) = (tile.rows(&dims), tile.keys);
                    let (qt, dot_) = (tile.gather(&qs, &dims), tile.gather(&dos, &dims));
                    let (kt, vt) = (tile.keys_of(&ks, &dims), tile.keys_of(&vs, &dims));
                    let (p, _) = probabilities(&call, tile, &qt, kt, Some(lse));
                    let (pv, qv, dov) = (View::new(&p, rows, keys), View::new(&qt, rows, d), View::new(&dot_, rows, d));
                    product(KERNEL, &mut dv[..keys * d], pv.t(), dov, 1.0, true);
                    // dS = P ∘ (dP − rowsum(P ∘ dP)) · scale, written over dP.
                    let mut ds = vec![0.0f32; rows * keys];
                    product(KERNEL, &mut ds, dov, vt.t(), 1.0, false);
                    vectorised(#[inline(always)] || {
                        for (row, p) in ds.chunks_exact_mut(keys).zip(p.chunks_exact(keys)) {
                            let rowsum = dot(row, p);
                            for (x, &p) in row.iter_mut().zip(p) {
                                *x = p * (*x - rowsum) * scale;
                            }
                        }
                    });
                    let dsv = View::new(&ds, rows, keys);
                    product(KERNEL, &mut dk[..keys * d], dsv.t(), qv, 1.0, true);
                    let mut dq = vec![0.0f32; rows * d];
                    product(KERNEL, &mut dq, dsv, kt, 1.0, false);
                    dq
                })
                .collect();
            ItemGrads { dqs, dk, dv }
        })
        .collect();
    // The query gradients in place; each pair's key and value gradients summed over its parts,
    // in order.
    let mut dq_parts = Vec::with_capacity(tiles.len());
    let (mut dk_parts, mut dv_parts) = (Vec::with_capacity(items.len()), Vec::with_capacity(items.len()));
    for ItemGrads { dqs, dk, dv } in results {
        dq_parts.extend(dqs);
        dk_parts.push(dk);
        dv_parts.push(dv);
    }
    let dq = scatter(&tiles, &dq_parts, &dims, d);
    let per_item = items.len() / pairs.max(1);
    let gather_keys = |parts: &[Vec<f32>]| {
        let mut out = vec![0.0f32; pairs * dims.keys * d];
        out.par_chunks_mut((dims.keys * d).max(1)).zip(parts.par_chunks(per_item.max(1))).for_each(|(out, parts)| {
            for part in parts {
                for (o, x) in out.iter_mut().zip(part) {
                    *o += x;
                }
            }
        });
        out
    };
    let kv_shape = Shape::from([dims.batch, dims.kv_heads, dims.keys, d]);
    (
        tensor(dq, Shape::from([dims.batch, dims.heads, dims.queries, d])),
        tensor(gather_keys(&dk_parts), kv_shape.clone()),
        tensor(gather_keys(&dv_parts), kv_shape),
    )
}

/// What one backward item computes: the query gradients of its tiles (`[rows, d]` each), and its
/// share of its pair's key and value gradients (`[keys, d]`, over the keys its tiles see).
struct ItemGrads {
    dqs: Vec<Vec<f32>>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// `tiles` cut into `parts` consecutive runs of about equal work (a tile's work grows with the
/// keys it sees), none empty; fewer when there are fewer tiles.
fn split_by_work(tiles: &[Tile], parts: usize) -> Vec<&[Tile]> {
    let work = |t: &Tile| (t.len * t.keys) as f64;
    let total: f64 = tiles.iter().map(work).sum();
    let mut out = Vec::with_capacity(parts);
    let (mut start, mut done) = (0, 0.0);
    for (i, tile) in tiles.iter().enumerate() {
        let after = parts.saturating_sub(out.len() + 1); // parts still to come after the current one
        let share = total * (out.len() + 1) as f64 / parts as f64;
        // Cut before this tile when the current run is nearer its share without it, or when the
        // tiles left are just enough for one per part to come.
        if i > start && after > 0 && (done + work(tile) / 2.0 > share || tiles.len() - i == after) {
            out.push(&tiles[start..i]);
            start = i;
        }
        done += work(tile);
    }
    if start < tiles.len() {
        out.push(&tiles[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_split_into_runs_of_about_equal_work_and_none_empty() {
        let tiles: Vec<Tile> = (0..8).map(|i| Tile { b: 0, kv: 0, q0: 64 * i, len: 64, keys: 64 * (i + 1) }).collect();
        for parts in 1..=8 {
            let runs = split_by_work(&tiles, parts);
            assert_eq!(runs.len(), parts, "{parts} parts");
            assert!(runs.iter().all(|r| !r.is_empty()));
            assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 8);
        }
        // Causal work grows with the tile (1, 2, …, 8 units): halves of 21 and 15 units.
        assert_eq!(split_by_work(&tiles, 2).iter().map(|r| r.len()).collect::<Vec<_>>(), [6, 2]);
        assert_eq!(split_by_work(&tiles[..3], 5).len(), 3);
    }
}
