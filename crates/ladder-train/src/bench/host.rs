//! The machine a benchmark ran on, written into its JSON line. These machines differ between
//! sessions (AMD EPYCs with AVX2 only, Intel Xeons with AVX-512), and the matrix kernels differ
//! with them by about 2×: a tokens/s figure without its host cannot be compared with another.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// The CPU's model name (`/proc/cpuinfo`), or "unknown".
    pub cpu: String,
    /// The widest vector instructions the matrix and element-wise kernels dispatch to here:
    /// "avx512" (AVX-512 F/BW/CD/DQ/VL, as gemm's and pulp's AVX-512 paths require), "avx2"
    /// (AVX2 + FMA), "neon", or "baseline".
    pub simd: &'static str,
    /// Logical CPUs the process may run on.
    pub cpus: usize,
}

pub fn host() -> Host {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Host { cpu, simd: simd(), cpus }
}

#[cfg(target_arch = "x86_64")]
fn simd() -> &'static str {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512bw") && has!("avx512cd") && has!("avx512dq") && has!("avx512vl") {
        "avx512"
    } else if has!("avx2") && has!("fma") {
        "avx2"
    } else {
        "baseline"
    }
}

#[cfg(target_arch = "aarch64")]
fn simd() -> &'static str {
    "neon"
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd() -> &'static str {
    "baseline"
}
