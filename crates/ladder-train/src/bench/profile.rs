//! `ladder bench --profile`: where a step's time goes, from the fused kernels' timers
//! ([`ladder_model::kernels::profile`]), with each matrix product replayed alone, and the
//! process's page faults and kernel time.

use ladder_model::kernels::profile as timers;
use serde::Serialize;

/// Where a step's time goes (`ladder bench --profile`): per step, averaged over the timed steps.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub steps: usize,
    /// Mean wall time of a step.
    pub step_s: f64,
    /// Page faults (minor) and kernel time of the whole process, per step: memory the allocator
    /// handed back and faulted in again shows here.
    pub minor_faults_per_step: f64,
    pub system_s_per_step: f64,
    /// The step's matrix products at their standalone speed: the time a step would take if
    /// it were nothing but its products, each as fast as on its own with its operands hot in
    /// the caches (the GEMM-bound limit), and with them cold.
    pub gemm_bound_s: f64,
    pub gemm_bound_cold_s: f64,
    pub rows: Vec<ProfileRow>,
}

/// A fused kernel (inclusive of its products), or one product shape inside one.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    pub kernel: &'static str,
    /// `[m×k]·[k×n]`, `ᵀ` where an operand is read transposed, `B ×` for B products at once,
    /// "on each thread" for products a kernel runs on every thread at once (their time is the
    /// threads' total over the thread count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gemm: Option<String>,
    pub calls_per_step: f64,
    pub ms_per_step: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// The same product on its own, on fresh buffers ([`ladder_model::kernels::profile::replay`]):
    /// with its operands hot in the caches, and cold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standalone_gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_gflops: Option<f64>,
}

impl Profile {
    pub(super) fn new(rows: Vec<timers::Row>, steps: usize, step_s: f64, faults: f64, system_s: f64) -> Profile {
        let per_step = |x: f64| x / steps.max(1) as f64;
        let rows = rows
            .into_iter()
            .map(|r| {
                let flops = r.key.gemm.map(|g| g.flops() * r.calls as f64);
                let replay = r.key.gemm.map(|g| (g.flops(), timers::replay(&g, r.key.per_thread)));
                ProfileRow {
                    kernel: r.key.kernel,
                    gemm: r.key.gemm.map(|g| if r.key.per_thread { format!("{g} on each thread") } else { g.to_string() }),
                    calls_per_step: per_step(r.calls as f64),
                    ms_per_step: per_step(r.seconds) * 1e3,
                    gflops: flops.map(|f| f / r.seconds / 1e9),
                    standalone_gflops: replay.map(|(f, t)| f / t.hot_s / 1e9),
                    cold_gflops: replay.map(|(f, t)| f / t.cold_s / 1e9),
                }
            })
            .collect::<Vec<ProfileRow>>();
        let bound = |speed: fn(&ProfileRow) -> Option<f64>| rows.iter().filter_map(|r| Some(r.gflops? * r.ms_per_step / 1e3 / speed(r)?)).sum();
        let (gemm_bound_s, gemm_bound_cold_s) = (bound(|r| r.standalone_gflops), bound(|r| r.cold_gflops));
        Profile { steps, step_s, minor_faults_per_step: per_step(faults), system_s_per_step: per_step(system_s), gemm_bound_s, gemm_bound_cold_s, rows }
    }

    /// The breakdown as a Markdown table: kernels with their share of the step, each followed by
    /// its products' speed in the step and on their own.
    pub fn markdown(&self) -> String {
        let ms = self.step_s * 1e3;
        let kernels: f64 = self.rows.iter().filter(|r| r.gemm.is_none()).map(|r| r.ms_per_step).sum();
        let mut out = format!(
            "Per step, mean of {} timed steps (the warm-up run apart): {:.0} ms; {:.0} minor page faults and {:.0} ms of kernel (system) time. \
             Its matrix products alone would take {:.0} ms with their operands hot in the caches (the \
             GEMM-bound limit: the step runs at {:.0}% of it), {:.0} ms with them cold.\n\n\
             | kernel / product | calls | ms | share | GFLOP/s in the step | alone, caches hot | alone, caches cold |\n|---|---|---|---|---|---|---|\n",
            self.steps,
            ms,
            self.minor_faults_per_step,
            self.system_s_per_step * 1e3,
            self.gemm_bound_s * 1e3,
            100.0 * self.gemm_bound_s * 1e3 / ms,
            self.gemm_bound_cold_s * 1e3
        );
        let f = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.0}"));
        for r in &self.rows {
            let name = match &r.gemm {
                Some(g) => format!("  ↳ {g}"),
                None => r.kernel.to_string(),
            };
            out += &format!(
                "| {name} | {:.0} | {:.1} | {:.1}% | {} | {} | {} |\n",
                r.calls_per_step,
                r.ms_per_step,
                100.0 * r.ms_per_step / ms,
                f(r.gflops),
                f(r.standalone_gflops),
                f(r.cold_gflops)
            );
        }
        out += &format!(
            "| everything else (Burn's own operations, autodiff, allocation) | | {:.1} | {:.1}% | | | |\n",
            ms - kernels,
            100.0 * (ms - kernels) / ms
        );
        out
    }
}

/// This process's minor page faults and system CPU seconds so far (Linux `/proc/self/stat`;
/// zeros elsewhere). Clock ticks are taken as 100 per second, Linux's `USER_HZ`.
pub(super) fn faults_and_system_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its closing paren):
    // state is field 3; minflt is field 10 and stime field 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(10), field(15) / 100.0)
}

