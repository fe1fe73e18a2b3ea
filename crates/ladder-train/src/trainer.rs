//! The training loop shared by every stage: ordered micro-batches, gradient accumulation,
//! global-norm clipping, AdamW, the LR schedule, `metrics.jsonl`, the progress bar and
//! periodic checkpoints. Stages differ only in their [`Objective`] and [`SaveModel`].
//!
//! Data-parallel across processes as PyTorch's DDP does it: every rank builds the same global
//! step (batch × grad-accum × world size items), runs its share of the micro-batches, and the
//! gradients are summed across ranks before clipping and AdamW, so every rank applies the same
//! update. One process is the world of one and runs exactly as before.

use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams};
use ladder_model::ForwardMode;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Resume, SaveModel, TrainerState};
use crate::dist::{self, World};
use crate::interrupt::Interrupt;
use crate::error::{Result, TrainError};
use crate::metrics::MetricsLog;
use crate::model::LanguageModel;
use crate::objective::Objective;
use crate::optim::{clip_coefficient, global_grad_norm, AdamW, AdamWConfig};
use crate::schedule::{Schedule, SchedulerKind};

/// Loop settings (the optimisation half of a stage's options).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopConfig {
    pub lr: f64,
    pub scheduler: SchedulerKind,
    pub warmup_steps: usize,
    pub adamw: AdamWConfig,
    /// Global-norm clipping threshold; `None` disables clipping.
    pub max_grad_norm: Option<f64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub epochs: usize,
    /// Overrides `epochs` when set (data is cycled, reshuffled each epoch).
    pub max_steps: Option<usize>,
    pub seed: u64,
    pub shuffle: bool,
    pub save_every: Option<usize>,
    /// Keep only the newest N checkpoints; `None` keeps all.
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// What a non-finite loss or gradient norm does.
    #[serde(default)]
    pub on_nonfinite: OnNonFinite,
    /// With [`OnNonFinite::Skip`], the most steps a run may drop before it stops.
    #[serde(default)]
    pub max_skipped_steps: usize,
    /// Set by signal handlers: save a checkpoint at the next step boundary and stop.
    #[serde(skip)]
    pub interrupt: Interrupt,
}

/// `--on-nonfinite`: a NaN/inf loss or gradient stops the run (with the rows of its batch), or
/// its step is dropped: no update, so no NaN ever reaches the weights or the moments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop, naming the step and its rows.
    #[default]
    Stop,
    /// Drop that step's update and log it.
    Skip,
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub steps: usize,
    pub final_loss: f64,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// Data order: which items each micro-batch of each step holds. A step has grad-accum ×
/// world-size micro-batches of `batch_size` items (the last of an epoch may be short or fewer);
/// each rank runs the ones it [`World::owns`].
struct Plan {
    n: usize,
    batch_size: usize,
    micro_per_step: usize,
    micro_per_epoch: usize,
    steps_per_epoch: usize,
    seed: u64,
    shuffle: bool,
}

impl Plan {
    fn new(n: usize, c: &LoopConfig, ranks: usize) -> Self {
        let micro_per_epoch = n.div_ceil(c.batch_size);
        let micro_per_step = c.grad_accum * ranks;
        Plan {
            n,
            batch_size: c.batch_size,
            micro_per_step,
            micro_per_epoch,
            steps_per_epoch: micro_per_epoch.div_ceil(micro_per_step),
            seed: c.seed,
            shuffle: c.shuffle,
        }
    }

    /// Item order of an epoch: file order, or a permutation fixed by (seed, epoch) so that a
    /// resumed run sees exactly the data the uninterrupted run would have.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n).collect();
        if self.shuffle {
            let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch as u64));
            order.shuffle(&mut rng);
        }
        order
    }

    /// Micro-batches (as item indices) of global step `step`, of every rank.
    fn step(&self, step: usize, order: &[usize]) -> Vec<Vec<usize>> {
        let k = step % self.steps_per_epoch;
        let first = k * self.micro_per_step;
        let last = ((k + 1) * self.micro_per_step).min(self.micro_per_epoch);
        (first..last)
            .map(|m| order[m * self.batch_size..((m + 1) * self.batch_size).min(self.n)].to_vec())
            .collect()
    }
}

/// Seed of the dropout masks of micro-batch `micro` (its index in the global step) of `step`:
/// a function of (seed, step, micro) only, so a resumed run, and a run on any number of ranks,
/// draws the same masks. Micro-batch 0 keeps the seed single-batch runs have always used.
fn dropout_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let base = seed.wrapping_add(step as u64);
    if micro == 0 {
        return base;
    }
    // splitmix64's finaliser over (base, micro).
    let mut z = base ^ (micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// This rank's forward and backward passes of one optimizer step, summed over its
/// micro-batches. `loss` is not finite when a micro-batch's loss was not (the rest of the share
/// is not run then).
struct Computed {
    loss: f64,
    extra: Vec<(&'static str, f64)>,
    grads: GradientsParams,
}

/// A step whose loss or gradient is not finite, with what is needed to report it.
struct Bad {
    what: &'static str,
    value: f64,
}

/// Runs this rank's micro-batches of step `step` (`micro`: every micro-batch of the step, by
/// its global index); stops at the first non-finite micro-batch loss.
#[allow(clippy::too_many_arguments)]
fn compute<M: LanguageModel, O: Objective<M>>(
    model: &M,
    objective: &O,
    items: &[O::Item],
    micro: &[Vec<usize>],
    norm: &O::Norm,
    mode: ForwardMode,
    (seed, step): (u64, usize),
    world: &World,
) -> Computed {
    let device = model.device();
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut loss = 0.0;
    let mut extra: Vec<(&'static str, f64)> = Vec::new();
    for (m, ids) in micro.iter().enumerate().filter(|&(m, _)| world.owns(m)) {
        device.seed(dropout_seed(seed, step, m));
        let batch: Vec<O::Item> = ids.iter().map(|&i| items[i].clone()).collect();
        let output = objective.loss(model, &batch, norm, mode);
        let mut value = output.loss.clone().into_scalar::<f64>();
        if dist::injected_nan(step + 1) {
            value = f64::NAN;
        }
        if !value.is_finite() {
            return Computed { loss: value, extra, grads: accumulator.grads() };
        }
        loss += value;
        for (name, v) in output.metrics {
            match extra.iter_mut().find(|(n, _)| *n == name) {
                Some((_, acc)) => *acc += v,
                None => extra.push((name, v)),
            }
        }
        let grads = output.loss.backward();
        accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    Computed { loss, extra, grads: accumulator.grads() }
}

/// Room for an objective's metrics in the per-step agreement (DPO logs 8).
const MAX_METRICS: usize = 16;

/// What every rank knows after the step's one small all-reduce: the step's loss and metrics
/// summed over the ranks (not finite if any rank's was not), and whether a signal reached any
/// rank, so that every rank skips, stops or checkpoints at the same step.
struct Agreed {
    loss: f64,
    extra: Vec<(&'static str, f64)>,
    interrupted: bool,
}

fn agree(world: &World, local: &Computed, interrupted: bool) -> Agreed {
    assert!(local.extra.len() <= MAX_METRICS, "an objective logs at most {MAX_METRICS} metrics");
    let mut buf = [0.0f64; 2 + MAX_METRICS];
    buf[0] = local.loss;
    buf[1] = interrupted as u8 as f64;
    for (slot, (_, v)) in buf[2..].iter_mut().zip(&local.extra) {
        *slot = *v;
    }
    world.sum_f64(&mut buf);
    // Rank 0 always runs micro-batch 0, so it knows the metrics' names; only it logs them.
    let extra = local.extra.iter().zip(&buf[2..]).map(|(&(name, _), &v)| (name, v)).collect();
    Agreed { loss: buf[0], extra, interrupted: buf[1] > 0.0 }
}

/// `file:line` of every item of a step, for messages about it.
fn origins<M: LanguageModel, O: Objective<M>>(objective: &O, items: &[O::Item], micro: &[Vec<usize>]) -> String {
    let rows: Vec<String> = micro
        .iter()
        .flatten()
        .map(|&i| objective.origin(&items[i]).unwrap_or_else(|| format!("item {i}")))
        .collect();
    rows.join(", ")
}

/// Trains `model` on `items` and returns it. `out` receives `metrics.jsonl` and checkpoints
/// (from rank 0 alone when several processes train together).
///
/// A run is exactly resumable: the data order is a function of (seed, epoch), dropout of
/// (seed, step, micro-batch), the schedule of the step, checkpoints hold f32 weights and
/// AdamW's moments and step, and they are only taken at step boundaries (no
/// gradient-accumulation phase to carry).
#[allow(clippy::too_many_arguments)]
pub fn train<M: LanguageModel, O: Objective<M>>(
    cfg: &LoopConfig,
    mut model: M,
    objective: &O,
    items: &[O::Item],
    out: &Path,
    saver: &dyn SaveModel<M>,
    resume: Option<Resume>,
    stage_config: serde_json::Value,
) -> Result<(M, Summary)> {
    if items.is_empty() {
        return Err(TrainError::Invalid("no training examples left after tokenisation".into()));
    }
    if cfg.batch_size == 0 || cfg.grad_accum == 0 {
        return Err(TrainError::Invalid("--batch-size and --grad-accum must be at least 1".into()));
    }
    let max_positions = model.decoder().config.max_position_embeddings;
    if let Some((i, n)) = items.iter().enumerate().find_map(|(i, item)| objective.positions(item).filter(|&n| n > max_positions).map(|n| (i, n))) {
        let origin = objective.origin(&items[i]).unwrap_or_else(|| format!("item {i}"));
        return Err(TrainError::Invalid(format!(
            "{origin}: {n} tokens, more than the model's max_position_embeddings ({max_positions}); pass --max-seq-len {max_positions} (or less) to cut such rows"
        )));
    }
    let world = dist::world();
    let plan = Plan::new(items.len(), cfg, world.size());
    let total = cfg.max_steps.unwrap_or(cfg.epochs * plan.steps_per_epoch);
    if total == 0 {
        // An untrained model saved as a result, with loss NaN, would pass for a trained one.
        let why = if cfg.max_steps.is_some() { "--max-steps is 0" } else { "--epochs is 0" };
        return Err(TrainError::Invalid(format!("{why}: this run would train no step; give at least 1")));
    }
    let schedule = Schedule {
        kind: cfg.scheduler,
        lr: cfg.lr,
        warmup: cfg.warmup_steps,
        total,
    };
    let (start, mut skipped, mut optimizer) = match resume {
        Some(r) => {
            if r.state.step > total {
                return Err(TrainError::Invalid(format!(
                    "checkpoint is at step {} but this run has only {total} steps",
                    r.state.step
                )));
            }
            (r.state.step, r.state.skipped_steps, r.optimizer)
        }
        None => (0, 0, AdamW::new(cfg.adamw)),
    };
    if world.size() > 1 {
        let hint = "every process must load the same model, adapter and checkpoint";
        world.check_same(dist::grads::trainable_checksum(&model), "starting trainable weights", hint)?;
    }
    let sync_bytes = if world.size() > 1 { dist::grads::gradient_bytes(&model) } else { 0 };
    let mut log = match world.is_root() {
        true => Some(MetricsLog::open(&out.join("metrics.jsonl"), start)?),
        false => None,
    };
    let bar = crate::progress::bar(total, start, "steps");
    bar.set_prefix("train");
    tracing::info!(examples = items.len(), steps = total, start, ranks = world.size(), "training");
    let mode = ForwardMode { adapters: true, train: true };
    let began = Instant::now();
    let (mut tokens_total, mut last_loss) = (0usize, f64::NAN);
    let mut epoch_order: Option<(usize, Vec<usize>)> = None;
    for step in start..total {
        let epoch = step / plan.steps_per_epoch;
        if epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            epoch_order = Some((epoch, plan.order(epoch)));
        }
        let micro = plan.step(step, &epoch_order.as_ref().expect("set above").1);
        let step_items: Vec<&O::Item> = micro.iter().flatten().map(|&i| &items[i]).collect();
        // Normalisers and token counts of the whole step, the same on every rank.
        let norm = objective.norm(&step_items);
        let step_tokens: usize = step_items.iter().map(|item| objective.tokens(item)).sum();
        let t0 = Instant::now();
        let lr = schedule.lr(step);
        let local = compute(&model, objective, items, &micro, &norm, mode, (cfg.seed, step), world);
        let agreed = agree(world, &local, cfg.interrupt.is_set());
        let mut sync_s = 0.0;
        let computed = if agreed.loss.is_finite() {
            let t_sync = Instant::now();
            let grads = dist::grads::sum_gradients(world, &model, local.grads);
            sync_s = t_sync.elapsed().as_secs_f64();
            // Computed from the summed gradients every rank holds: the same on every rank.
            let grad_norm = global_grad_norm(&model, &grads);
            if grad_norm.is_finite() {
                Ok((agreed.loss, agreed.extra, grads, grad_norm))
            } else {
                Err(Bad { what: "gradient norm", value: grad_norm })
            }
        } else {
            Err(Bad { what: "loss", value: agreed.loss })
        };
        let record = match computed {
            Ok((loss, extra, mut grads, grad_norm)) => {
                model = optimizer.apply(model, &mut grads, lr, clip_coefficient(grad_norm, cfg.max_grad_norm));
                let dt = t0.elapsed().as_secs_f64();
                tokens_total += step_tokens;
                last_loss = loss;
                bar.set_message(format!(
                    "loss {loss:.4}{} lr {lr:.2e} {:.0} tok/s",
                    objective.progress(&extra),
                    step_tokens as f64 / dt
                ));
                tracing::debug!(step = step + 1, loss, lr, grad_norm, "step");
                let mut record = serde_json::json!({
                    "step": step + 1,
                    "epoch": (step as f64 + 1.0) / plan.steps_per_epoch as f64,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": step_tokens,
                    "tokens_per_s": step_tokens as f64 / dt,
                    "step_s": dt,
                });
                for (name, v) in &extra {
                    record[*name] = serde_json::json!(v);
                }
                if world.size() > 1 {
                    // The gradient all-reduce with its host copies, and what it moved per rank.
                    record["allreduce_s"] = serde_json::json!(sync_s);
                    record["allreduce_bytes"] = serde_json::json!(sync_bytes);
                }
                record
            }
            Err(bad) => {
                let rows = origins::<M, O>(objective, items, &micro);
                if cfg.on_nonfinite == OnNonFinite::Stop {
                    return Err(TrainError::NonFinite { what: bad.what, step: step + 1, value: bad.value, rows });
                }
                skipped += 1;
                if skipped > cfg.max_skipped_steps {
                    return Err(TrainError::TooManySkipped { skipped, max: cfg.max_skipped_steps });
                }
                if world.is_root() {
                    tracing::warn!(step = step + 1, rows = %rows, "non-finite {} ({}): step skipped, no update", bad.what, bad.value);
                }
                serde_json::json!({"step": step + 1, "skipped": format!("non-finite {}", bad.what), "rows": rows, "lr": lr})
            }
        };
        if let Some(log) = log.as_mut() {
            log.write(&record)?;
        }
        bar.inc(1);
        let done = step + 1;
        let interrupted = agreed.interrupted && done < total;
        let periodic = cfg.save_every.is_some_and(|n| n > 0 && done % n == 0 && done < total);
        if periodic || interrupted {
            let state = TrainerState {
                step: done,
                total_steps: total,
                seed: cfg.seed,
                skipped_steps: skipped,
                world_size: world.size(),
                config: stage_config.clone(),
            };
            let dir = match world.is_root() {
                true => checkpoint::save(out, &model, &optimizer, &state, saver, cfg.keep_last)?,
                false => checkpoint::checkpoint_dir(out, done),
            };
            if world.is_root() {
                tracing::info!(path = %dir.display(), "checkpoint saved");
            }
            if interrupted {
                // No rank exits before rank 0's checkpoint is complete: a launcher ends the
                // whole job once one rank has exited with a non-zero code.
                world.barrier();
                bar.finish_and_clear();
                return Err(TrainError::Interrupted { step: done, checkpoint: dir, out: out.to_path_buf() });
            }
        }
    }
    bar.finish_and_clear();
    if world.size() > 1 {
        let hint = "the ranks' updates diverged although they summed the same gradients; please report this with the MPI library in use";
        world.check_same(dist::grads::trainable_checksum(&model), "trained weights", hint)?;
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok((
        model,
        Summary {
            steps: total,
            final_loss: last_loss,
            tokens: tokens_total,
            seconds,
            tokens_per_s: tokens_total as f64 / seconds.max(1e-9),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batch_size: usize, grad_accum: usize, shuffle: bool) -> LoopConfig {
        LoopConfig {
            lr: 1e-3,
            scheduler: SchedulerKind::Constant,
            warmup_steps: 0,
            adamw: AdamWConfig::default(),
            max_grad_norm: None,
            batch_size,
            grad_accum,
            epochs: 1,
            max_steps: None,
            seed: 7,
            shuffle,
            save_every: None,
            keep_last: None,
            on_nonfinite: OnNonFinite::Stop,
            max_skipped_steps: 0,
            interrupt: Interrupt::default(),
        }
    }

    #[test]
    fn plan_covers_every_item_once_per_epoch() {
        let plan = Plan::new(7, &cfg(2, 2, false), 1);
        assert_eq!((plan.micro_per_epoch, plan.steps_per_epoch), (4, 2));
        let order = plan.order(0);
        assert_eq!(plan.step(0, &order), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(plan.step(1, &order), vec![vec![4, 5], vec![6]]);
        // Step 2 is the first of epoch 1.
        assert_eq!(plan.step(2, &order), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let plan = Plan::new(50, &cfg(4, 1, true), 1);
        let (a, b) = (plan.order(0), plan.order(1));
        assert_ne!(a, b);
        assert_eq!(a, plan.order(0));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    /// Two ranks at grad-accum 1 see the micro-batches of one rank at grad-accum 2, step for
    /// step; 5 items at batch 2 leave a last step with one micro-batch (rank 1 gets none).
    #[test]
    fn a_step_of_two_ranks_is_a_step_of_one_rank_with_twice_the_accumulation() {
        let two = Plan::new(5, &cfg(2, 1, true), 2);
        let one = Plan::new(5, &cfg(2, 2, true), 1);
        assert_eq!((two.steps_per_epoch, one.steps_per_epoch), (2, 2));
        for step in 0..4 {
            let order = two.order(step / 2);
            assert_eq!(two.step(step, &order), one.step(step, &one.order(step / 2)));
        }
        assert_eq!(two.step(1, &two.order(0)).len(), 1);
    }

    #[test]
    fn dropout_seeds_keep_the_single_batch_seed_and_differ_per_micro_batch() {
        assert_eq!(dropout_seed(7, 3, 0), 10);
        let seeds: std::collections::HashSet<u64> = (0..4).flat_map(|s| (0..4).map(move |m| dropout_seed(7, s, m))).collect();
        assert_eq!(seeds.len(), 16);
    }
}
