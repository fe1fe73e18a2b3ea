//! Per-operation timers for `ladder bench --profile`: the wall time of every fused kernel
//! (inclusive of the matrix products inside it) and of every matrix product by shape, keyed
//! by the kernel that ran it. A step's time then splits into GEMMs by shape, attention, the
//! norms, the LM head's log-probs, the optimizer, and what ran outside the kernels (Burn's
//! own operations, autodiff's bookkeeping, allocation).
//!
//! [`replay`] runs each recorded product again on its own, on fresh buffers of the same shape
//! and layout: the speed the product reaches outside the step, to compare with its speed in
//! the step.
//!
//! Off unless [`enable`]d; then each timed call costs a lock of a small map. Kernels run on
//! the thread that calls them (their rayon tasks are inside), so a kernel's products are
//! attributed to it through a thread-local. Products that a fused kernel runs inside its own
//! parallel tasks, one per thread at a time (attention's), name their kernel themselves
//! ([`product_on_thread`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::gemm::{self, View};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<Key, Total>> = Mutex::new(BTreeMap::new());

/// The kernel name of products run outside every fused kernel.
pub const OUTSIDE: &str = "outside the fused kernels";

thread_local! {
    /// The kernel running on this thread, which products are attributed to.
    static CURRENT: Cell<&'static str> = const { Cell::new(OUTSIDE) };
}

/// A matrix product's shape, `[m, k]·[k, n]`, `batch` of them, and whether each operand is
/// read transposed (its rows strided), which changes how gemm packs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub batch: usize,
    pub lhs_transposed: bool,
    pub rhs_transposed: bool,
}

impl Gemm {
    pub(super) fn of(lhs: &View, rhs: &View, batch: usize) -> Gemm {
        Gemm { m: lhs.rows(), k: lhs.cols(), n: rhs.cols(), batch, lhs_transposed: lhs.transposed(), rhs_transposed: rhs.transposed() }
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n * self.batch) as f64
    }
}

impl std::fmt::Display for Gemm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |x: bool| if x { "ᵀ" } else { "" };
        if self.batch > 1 {
            write!(f, "{} × ", self.batch)?;
        }
        write!(f, "[{}×{}]{}·[{}×{}]{}", self.m, self.k, t(self.lhs_transposed), self.k, self.n, t(self.rhs_transposed))
    }
}

/// What a row of the profile times: a kernel, or one product shape inside a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kernel: &'static str,
    pub gemm: Option<Gemm>,
    /// A product run on one thread while the other threads run others like it
    /// ([`product_on_thread`]).
    pub per_thread: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Total {
    calls: u64,
    seconds: f64,
}

/// One row of [`take`]: calls and seconds summed over everything timed since [`enable`].
#[derive(Clone, Debug)]
pub struct Row {
    pub key: Key,
    pub calls: u64,
    pub seconds: f64,
}

/// Starts timing (and clears what was timed before).
pub fn enable() {
    TABLE.lock().expect("profile table").clear();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Stops timing and returns the rows, kernels first, each followed by its products.
pub fn take() -> Vec<Row> {
    ENABLED.store(false, Ordering::Relaxed);
    let table = std::mem::take(&mut *TABLE.lock().expect("profile table"));
    table.into_iter().map(|(key, t)| Row { key, calls: t.calls, seconds: t.seconds }).collect()
}

/// Times from now until dropped.
pub(super) struct Timer {
    key: Key,
    start: Instant,
    outer: Option<&'static str>,
    /// The share of the elapsed time filed: 1, or one over the thread count for products
    /// timed on each thread at once.
    share: f64,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64() * self.share;
        if let Some(outer) = self.outer {
            CURRENT.with(|c| c.set(outer));
        }
        let mut table = TABLE.lock().expect("profile table");
        let total = table.entry(self.key).or_default();
        total.calls += 1;
        total.seconds += seconds;
    }
}

/// Times the kernel `name`; products it runs are attributed to it. `None` when not profiling.
pub(super) fn kernel(name: &'static str) -> Option<Timer> {
    ENABLED.load(Ordering::Relaxed).then(|| {
        let outer = CURRENT.with(|c| c.replace(name));
        Timer { key: Key { kernel: name, gemm: None, per_thread: false }, start: Instant::now(), outer: Some(outer), share: 1.0 }
    })
}

/// Times one product, attributed to the kernel running on this thread.
pub(super) fn product(gemm: impl FnOnce() -> Gemm) -> Option<Timer> {
    ENABLED.load(Ordering::Relaxed).then(|| {
        let kernel = CURRENT.with(Cell::get);
        Timer { key: Key { kernel, gemm: Some(gemm()), per_thread: false }, start: Instant::now(), outer: None, share: 1.0 }
    })
}

/// Times one product that runs on this thread inside `kernel`'s parallel tasks, while the other
/// threads run products like it. Each is filed at its time over the thread count, so that
/// their sum is the wall time the kernel spent in them when the threads are all busy, and
/// [`replay`] runs as many at once as there are threads.
pub(super) fn product_on_thread(kernel: &'static str, lhs: &View, rhs: &View) -> Option<Timer> {
    ENABLED.load(Ordering::Relaxed).then(|| Timer {
        key: Key { kernel, gemm: Some(Gemm::of(lhs, rhs, 1)), per_thread: true },
        start: Instant::now(),
        outer: None,
        share: 1.0 / rayon::current_num_threads() as f64,
    })
}

/// Seconds one product of `shape` takes on its own (the best of a few runs), on fresh buffers
/// laid out as in the step; the thread count is rayon's, as in the step. Twice: with its
/// operands hot in the caches (run after run on the same buffers), and cold (the caches
/// flushed before each run by writing [`EVICT`] bytes), as a product in a step mostly finds
/// them after the rest of the layer has passed through. With `per_thread`
/// ([`product_on_thread`]), as many run at once as there are threads, each on one, and the time
/// is their wall time over their number.
pub fn replay(shape: &Gemm, per_thread: bool) -> Replay {
    let copies = if per_thread { rayon::current_num_threads() } else { 1 };
    let shape = &Gemm { batch: shape.batch * copies, ..*shape };
    let lhs = operand(shape.m, shape.k, shape.batch, 1);
    let rhs = operand(shape.k, shape.n, shape.batch, 2);
    let l = views(&lhs, shape.m, shape.k, shape.lhs_transposed);
    let r = views(&rhs, shape.k, shape.n, shape.rhs_transposed);
    let mut evict = vec![0u8; EVICT];
    let mut run = |cold: bool| {
        if cold {
            evict.iter_mut().for_each(|b| *b = b.wrapping_add(1));
            std::hint::black_box(&evict);
        }
        let start = Instant::now();
        if shape.batch > 1 {
            let pairs: Vec<(View, View)> = l.iter().copied().zip(r.iter().copied()).collect();
            std::hint::black_box(gemm::matmul_batched(&pairs));
        } else {
            std::hint::black_box(gemm::matmul(l[0], r[0], 1.0));
        }
        start.elapsed().as_secs_f64()
    };
    run(false);
    let hot_s = (0..3).map(|_| run(false)).fold(f64::INFINITY, f64::min) / copies as f64;
    let cold_s = (0..3).map(|_| run(true)).fold(f64::INFINITY, f64::min) / copies as f64;
    Replay { hot_s, cold_s }
}

/// Bytes written to flush the caches: twice the 32 MiB last-level cache of the machines the
/// README measures on.
pub const EVICT: usize = 64 << 20;

/// [`replay`]'s seconds, with the operands hot in the caches and cold.
#[derive(Clone, Copy, Debug)]
pub struct Replay {
    pub hot_s: f64,
    pub cold_s: f64,
}

/// `data` as consecutive `rows × cols` matrices, each stored transposed when `transposed`.
fn views(data: &[f32], rows: usize, cols: usize, transposed: bool) -> Vec<View<'_>> {
    data.chunks(rows * cols).map(|d| if transposed { View::new(d, cols, rows).t() } else { View::new(d, rows, cols) }).collect()
}

/// `batch` matrices of `rows × cols` small, varied values.
fn operand(rows: usize, cols: usize, batch: usize, salt: usize) -> Vec<f32> {
    (0..rows * cols * batch).map(|i| ((i * 7 + salt) % 13) as f32 / 13.0 - 0.5).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_filed_under_the_kernel_that_runs_them() {
        let (a, b) = (vec![1.0f32; 6 * 4], vec![1.0f32; 4 * 5]);
        enable();
        {
            let _outer = kernel("test kernel");
            gemm::matmul(View::new(&a, 6, 4), View::new(&b, 4, 5).t().t(), 1.0);
        }
        // After the kernel, products are filed outside it again.
        gemm::matmul(View::new(&a, 4, 6).t(), View::new(&b, 4, 5), 1.0);
        // A product in a kernel's own parallel task names its kernel, whatever runs on this thread.
        drop(product_on_thread("test kernel", &View::new(&a, 6, 4), &View::new(&b, 4, 5)));
        let rows = take();
        let find = |kernel: &str, gemm: Option<Gemm>| rows.iter().find(|r| r.key.kernel == kernel && r.key.gemm == gemm && !r.key.per_thread).map(|r| r.calls);
        let plain = Gemm { m: 6, k: 4, n: 5, batch: 1, lhs_transposed: false, rhs_transposed: false };
        assert_eq!(find("test kernel", None), Some(1));
        assert_eq!(find("test kernel", Some(plain)), Some(1));
        assert_eq!(find(OUTSIDE, Some(Gemm { lhs_transposed: true, ..plain })), Some(1));
        // (Other tests may run kernels meanwhile: only this test's kernel name is looked at.)
        let on_thread = rows.iter().filter(|r| r.key.kernel == "test kernel" && r.key.per_thread).collect::<Vec<_>>();
        assert_eq!(on_thread.len(), 1);
        assert_eq!((on_thread[0].key.gemm, on_thread[0].calls), (Some(plain), 1));
        assert!(rows.iter().all(|r| r.seconds >= 0.0));
        // Off again: nothing more is recorded.
        gemm::matmul(View::new(&a, 6, 4), View::new(&b, 4, 5), 1.0);
        assert!(take().is_empty());
    }
}
