//! `ladder bench`: tokens/s and peak memory of the real training loop ([`crate::trainer::train`]
//! with the [`Sft`] and [`Dpo`] objectives) on a named model shape, set up exactly as
//! `shared/bench/torch_anchor.py` sets up PyTorch + PEFT: random weights and tokens, batch 8 of
//! 256 tokens, loss on the second half of each row, LoRA r 16 α 32 on every linear layer, DPO
//! on 4 pairs whose prompt is the first half, 2 warm-up then 5 timed optimizer steps.
//!
//! Throughput counts tokens as the anchor does (every row it feeds the model: for DPO, prompt +
//! chosen and prompt + rejected), so the ratio compares work done, although `ladder` feeds the
//! shared prompt once.

use std::path::Path;

use ladder_data::Packed;
use ladder_model::{peft, Architecture, Decoder, DecoderConfig, LoraSettings};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checkpoint::SaveModel;
use crate::dpo::{Dpo, DpoLoss, DpoSettings, Pair, Reference, ReferenceKind};
use crate::error::{io, Result, TrainError};
use crate::objective::{Objective, Sft};
use crate::optim::AdamWConfig;
use crate::schedule::SchedulerKind;
use crate::trainer::{train, LoopConfig};

mod host;
mod profile;

pub use host::{host, Host};
pub use profile::{Profile, ProfileRow};
use profile::faults_and_system_s;

/// What to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Full fine-tuning, SFT.
    Full,
    /// LoRA SFT.
    Lora,
    /// LoRA DPO.
    Dpo,
}

/// A benchmark run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub mode: BenchMode,
    /// A named shape ([`SHAPES`]).
    pub shape: String,
    pub device: crate::device::DeviceSpec,
    /// The compute dtype, as `--precision` in training.
    pub precision: crate::precision::Precision,
    /// Burn's gradient checkpointing, as `--gradient-checkpointing` in training.
    pub gradient_checkpointing: bool,
    pub batch_size: usize,
    pub seq_len: usize,
    pub warmup_steps: usize,
    pub timed_steps: usize,
    /// AdamW's moments in f32 or 8-bit (`--optimizer`).
    pub optimizer: crate::OptimizerKind,
    /// Time every fused kernel and matrix product ([`Profile`]).
    pub profile: bool,
}

/// One JSON line of results.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub mode: BenchMode,
    pub shape: String,
    pub device: crate::device::DeviceSpec,
    pub precision: crate::precision::Precision,
    pub params: usize,
    pub trainable_params: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub gradient_checkpointing: bool,
    pub optimizer: crate::OptimizerKind,
    pub tokens_per_s: f64,
    pub step_s: f64,
    pub peak_rss_mib: f64,
    /// Processes training together (`mpirun -np`); `batch_size` is per process.
    pub processes: usize,
    /// The machine: CPU model, vector instructions, logical CPUs.
    pub host: Host,
    /// Per step, with several processes: the gradient all-reduce's time (host copies
    /// included) and the bytes each rank contributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allreduce_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allreduce_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// Mean step time and, with several processes, mean all-reduce time and bytes, over the timed
/// steps (rank 0's `metrics.jsonl`; other ranks write none and get NaN).
struct Timing {
    step_s: f64,
    profile: Option<Profile>,
    allreduce_s: Option<f64>,
    allreduce_bytes: Option<u64>,
}

/// The model shapes the bench knows, as Qwen2 configs.
pub fn shape(name: &str, seq_len: usize) -> Result<DecoderConfig> {
    // The shapes of shared/bench/torch_anchor.py's `--shape`, with its architectures and RoPE bases.
    let (architecture, vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, rope_theta) = match name {
        "bench-30m" => (Architecture::Qwen2, 8192, 512, 1536, 8, 8, 2, 1e4),
        "tiny" => (Architecture::Qwen2, 512, 64, 128, 2, 4, 2, 1e4),
        // SmolLM2-135M.
        "smollm2-135m" => (Architecture::Llama, 49152, 576, 1536, 30, 9, 3, 1e5),
        // Qwen2.5-0.5B.
        "qwen2.5-0.5b" => (Architecture::Qwen2, 151936, 896, 4864, 24, 14, 2, 1e6),
        _ => return Err(TrainError::Invalid(format!("--shape: unknown shape {name:?}; expected {}", SHAPES.join(", ")))),
    };
    Ok(DecoderConfig {
        max_position_embeddings: seq_len.max(1024),
        tie_word_embeddings: true,
        rope_theta,
        ..DecoderConfig::new(architecture, vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads)
    })
}

/// The names [`shape`] knows.
pub const SHAPES: [&str; 4] = ["bench-30m", "tiny", "smollm2-135m", "qwen2.5-0.5b"];

struct NoSave;

impl SaveModel for NoSave {
    fn save(&self, _model: &Decoder, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn loop_config(batch_size: usize, steps: usize, optimizer: crate::OptimizerKind) -> LoopConfig {
    LoopConfig {
        lr: 1e-4,
        scheduler: SchedulerKind::Constant,
        warmup_steps: 0,
        adamw: AdamWConfig { weight_decay: 0.01, optimizer, ..AdamWConfig::default() },
        max_grad_norm: None,
        batch_size,
        grad_accum: 1,
        epochs: 1,
        max_steps: Some(steps),
        seed: 0,
        shuffle: false,
        save_every: None,
        keep_last: None,
        on_nonfinite: Default::default(),
        max_skipped_steps: 0,
        interrupt: Default::default(),
    }
}

/// Runs `objective` through the real loop and returns the mean time of the timed steps.
///
/// With `--profile`, the warm-up runs first as a loop of its own, so that the profile covers
/// the timed steps alone: not the first step's first touch of every buffer, nor one-off costs.
fn timed<O: Objective>(cfg: &BenchConfig, mut model: Decoder, objective: &O, items: &[O::Item], batch: usize) -> Result<Timing> {
    let run = |model: Decoder, steps: usize, dir: &Path| {
        train(&loop_config(batch, steps, cfg.optimizer), model, objective, items, dir, &NoSave, None, serde_json::Value::Null).map(|(model, _)| model)
    };
    let temporary = || tempfile::tempdir().map_err(io(Path::new("a temporary folder")));
    let mut warmup = cfg.warmup_steps;
    if cfg.profile && warmup > 0 {
        model = run(model, warmup, temporary()?.path())?;
        warmup = 0;
    }
    let dir = temporary()?;
    if cfg.profile {
        ladder_model::kernels::profile::enable();
    }
    let before = faults_and_system_s();
    run(model, warmup + cfg.timed_steps, dir.path())?;
    let after = faults_and_system_s();
    let rows = if cfg.profile { ladder_model::kernels::profile::take() } else { Vec::new() };
    if !crate::dist::world().is_root() {
        return Ok(Timing { step_s: f64::NAN, allreduce_s: None, allreduce_bytes: None, profile: None });
    }
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).map_err(io(dir.path()))?;
    let records: Vec<serde_json::Value> = metrics.lines().skip(warmup).filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mean = |key: &str| {
        let values: Vec<f64> = records.iter().filter_map(|r| r[key].as_f64()).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let step_s = mean("step_s").unwrap_or(f64::NAN);
    Ok(Timing {
        step_s,
        allreduce_s: mean("allreduce_s"),
        allreduce_bytes: records.first().and_then(|r| r["allreduce_bytes"].as_u64()),
        profile: cfg.profile.then(|| Profile::new(rows, records.len(), step_s, after.0 - before.0, after.1 - before.1)),
    })
}

/// Builds the model and data of `cfg`, trains, and reports.
pub fn run(cfg: &BenchConfig) -> Result<BenchResult> {
    use burn::module::Module;
    let min_batch = if cfg.mode == BenchMode::Dpo { 2 } else { 1 };
    if cfg.batch_size < min_batch || cfg.seq_len < 4 || cfg.timed_steps == 0 {
        return Err(crate::TrainError::Invalid(format!(
            "ladder bench needs --batch-size ≥ {min_batch} (DPO: 2, one pair), --seq-len ≥ 4 and --steps ≥ 1"
        )));
    }
    let device = crate::device::training_device(cfg.device, cfg.gradient_checkpointing)?;
    let config = shape(&cfg.shape, cfg.seq_len)?;
    let mut model = ladder_model::random_decoder(&config, 0.02, 0, &device);
    let params = model.num_params();
    if cfg.mode != BenchMode::Full {
        model = model.no_grad();
        let lora = LoraSettings {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: peft::ALL_LINEAR.iter().map(|s| s.to_string()).collect(),
            rslora: false,
        };
        peft::attach_new(&mut model, &lora, 0, &device);
    }
    let model = cfg.precision.apply(model);
    let trainable = trainable_params(&model);
    let (b, t) = (cfg.batch_size, cfg.seq_len);
    // One batch per process: each step of N processes trains on N × batch rows.
    let processes = crate::dist::world().size();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let rows: Vec<Vec<u32>> = (0..b * processes).map(|_| (0..t).map(|_| rng.random_range(0..config.vocab_size as u32)).collect()).collect();
    let half = t / 2;
    let timing = match cfg.mode {
        BenchMode::Full | BenchMode::Lora => {
            let items: Vec<Packed> = rows
                .iter()
                .map(|r| Packed::from(ladder_data::Example { input_ids: r.clone(), targets: (0..t).map(|i| i >= half).collect(), images: Vec::new() }))
                .collect();
            timed(cfg, model, &Sft { pad_id: 0 }, &items, b)?
        }
        BenchMode::Dpo => {
            let n = b * processes / 2;
            let pairs: Vec<Pair> = (0..n)
                .map(|i| Pair {
                    origin: format!("pair {i}"),
                    prompt: rows[i][..half].to_vec(),
                    chosen: rows[i][half..].to_vec(),
                    rejected: rows[n + i][half..].to_vec(),
                    reference: None,
                    images: Vec::new(),
                })
                .collect();
            let settings = DpoSettings {
                beta: 0.1,
                loss: DpoLoss::Sigmoid,
                label_smoothing: 0.0,
                sft_weight: 0.0,
                reference: ReferenceKind::AdapterOff,
                reference_cache: std::env::temp_dir(),
                max_prompt_len: None,
                truncate_prompts: false,
            };
            let objective = Dpo { settings, reference: Reference::AdapterOff, pad_id: 0 };
            timed(cfg, model, &objective, &pairs, b / 2)?
        }
    };
    Ok(BenchResult {
        mode: cfg.mode,
        shape: cfg.shape.clone(),
        device: cfg.device,
        precision: cfg.precision,
        params,
        trainable_params: trainable,
        batch_size: b,
        seq_len: t,
        gradient_checkpointing: cfg.gradient_checkpointing,
        optimizer: cfg.optimizer,
        tokens_per_s: (b * t * processes) as f64 / timing.step_s,
        step_s: timing.step_s,
        peak_rss_mib: peak_rss_mib(),
        processes,
        host: host(),
        allreduce_ms: timing.allreduce_s.map(|s| s * 1e3),
        allreduce_bytes: timing.allreduce_bytes,
        profile: timing.profile,
    })
}

fn trainable_params(model: &Decoder) -> usize {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0 += param.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}
