//! The machine a benchmark ran on, written into its JSON line. These machines differ between
//! sessions (AMD EPYCs with AVX2 only, Intel Xeons with AVX-512), and the matrix kernels differ
//! with them by about 2×: a tokens/s figure without its host cannot be compared with another.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// The CPU's model name (`/proc/cpuinfo`), or "unknown".
    pub cpu: String,
    /// The vector instructions the matrix and element-wise kernels dispatch to here
    /// ([`ladder_model::kernels::simd_level`]).
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
    Host { cpu, simd: ladder_model::kernels::simd_level(), cpus }
}
