//! GFLOP/s of the 135M layer products three ways: gemm on one thread, gemm's own rayon
//! parallelism (what `ladder` runs), and the rows split evenly across the pool's threads with
//! each slab on one thread (no synchronisation inside the product). Best of three rounds of 15.
//! Argument: threads (default 2).

use std::time::Instant;

/// `dst[m×n] = lhs[m×k]·rhs[k×n]`, `lhs` row-major, `rhs` stored as a row-major `[n, k]`
/// weight read through its transpose (as a linear layer's forward reads it).
///
/// # Safety
/// The pointers must hold `m·k`, `n·k` and `m·n` f32s, `dst` not overlapping the others.
unsafe fn product(m: usize, n: usize, k: usize, dst: *mut f32, lhs: *const f32, rhs: *const f32, par: gemm::Parallelism) {
    unsafe { gemm::gemm(m, n, k, dst, 1, n as isize, false, lhs, 1, k as isize, rhs, k as isize, 1, 0.0f32, 1.0f32, false, false, false, par) }
}

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(2, |s| s.parse().expect("threads: a number"));
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();
    // (m, k, n): the forward's [tokens × d_in]·[d_in × d_out] and the weight gradient's
    // [d_in × tokens]·[tokens × d_out], 2,048 tokens.
    let shapes = [
        (2048, 576, 1536, "forward gate/up"),
        (2048, 576, 576, "forward q/o"),
        (2048, 576, 192, "forward k/v"),
        (2048, 1536, 576, "forward down"),
        (576, 2048, 1536, "weight grad gate/up"),
        (1536, 2048, 576, "weight grad down"),
        (576, 2048, 576, "weight grad q/o"),
    ];
    for (m, k, n, name) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i * 7 % 13) as f32 * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i * 5 % 11) as f32 * 0.01).collect();
        let mut c = vec![0f32; m * n];
        let run = |mode: usize, c: &mut [f32]| match mode {
            // SAFETY: the buffers have exactly the sizes `product` needs.
            0 => unsafe { product(m, n, k, c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), gemm::Parallelism::None) },
            1 => unsafe { product(m, n, k, c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), gemm::Parallelism::Rayon(0)) },
            _ => {
                let rows = m.div_ceil(threads);
                rayon::scope(|s| {
                    for (slab, out) in c.chunks_mut(rows * n).enumerate() {
                        let (a, b) = (&a[slab * rows * k..], &b);
                        s.spawn(move |_| {
                            // SAFETY: `out` is this slab's rows of the output, `a` starts at its rows.
                            unsafe { product(out.len() / n, n, k, out.as_mut_ptr(), a.as_ptr(), b.as_ptr(), gemm::Parallelism::None) }
                        });
                    }
                });
            }
        };
        let mut best = [0f64; 3];
        for mode in 0..3 {
            run(mode, &mut c);
        }
        for _ in 0..3 {
            for (mode, best) in best.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..15 {
                    run(mode, &mut c);
                }
                let gflops = 2.0 * (m * n * k) as f64 * 15.0 / start.elapsed().as_secs_f64() / 1e9;
                *best = best.max(gflops);
            }
        }
        println!(
            "{name:20} [{m}×{k}]·[{k}×{n}]  one thread {:5.1}  gemm's rayon {:5.1}  rows split {:5.1} GFLOP/s",
            best[0], best[1], best[2]
        );
    }
}
