//! The DPO objective the shared loop minimises: policy and reference log-ratios of each pair,
//! the preference loss, and TRL's metrics.

use burn::tensor::{Tensor, TensorData};
use ladder_model::{Decoder, ForwardMode};

use crate::loss::pair_losses;
use crate::model::LanguageModel;
use crate::objective::{LossOutput, Objective};

use super::batch::{sequence_logps, Layout};
use super::{DpoSettings, Pair};

/// The reference the objective compares against during training.
pub enum Reference<M = Decoder> {
    /// The policy itself with adapters off.
    AdapterOff,
    /// A frozen model, forwarded with its adapters on.
    Frozen(Box<M>),
    /// Values stored in each [`Pair`].
    Precomputed,
}

/// The DPO objective, for text and vision-language models alike.
pub struct Dpo<M = Decoder> {
    pub settings: DpoSettings,
    pub reference: Reference<M>,
    pub pad_id: u32,
}

/// The normalisers of one optimizer step.
pub struct DpoNorm {
    pairs: f64,
    chosen_tokens: f64,
    rejected_tokens: f64,
}

pub(super) fn host(t: Tensor<1>) -> Vec<f64> {
    ladder_model::weights::host(t).into_iter().map(f64::from).collect()
}

impl<M: LanguageModel> Objective<M> for Dpo<M> {
    type Item = Pair;
    type Norm = DpoNorm;

    fn norm(&self, items: &[&Pair]) -> DpoNorm {
        DpoNorm {
            pairs: items.len().max(1) as f64,
            chosen_tokens: items.iter().map(|p| p.chosen.len()).sum::<usize>().max(1) as f64,
            rejected_tokens: items.iter().map(|p| p.rejected.len()).sum::<usize>().max(1) as f64,
        }
    }

    fn tokens(&self, item: &Pair) -> usize {
        item.prompt.len() + item.chosen.len() + item.rejected.len()
    }

    fn origin(&self, item: &Pair) -> Option<String> {
        Some(item.origin.clone())
    }

    fn positions(&self, item: &Pair) -> Option<usize> {
        item.images.is_empty().then(|| item.prompt.len() + item.chosen.len().max(item.rejected.len()))
    }

    fn loss(&self, model: &M, pairs: &[Pair], norm: &DpoNorm, mode: ForwardMode) -> LossOutput {
        let n = pairs.len();
        let device = model.device();
        let layout = Layout::new(pairs, self.pad_id);
        let (policy, token_logps, mean_logits) = sequence_logps(model, &layout, mode);
        let reference = match &self.reference {
            Reference::AdapterOff => sequence_logps(model, &layout, ForwardMode { adapters: false, train: false }).0.detach(),
            Reference::Frozen(frozen) => sequence_logps(frozen.as_ref(), &layout, ForwardMode { adapters: true, train: false }).0.detach(),
            Reference::Precomputed => {
                let values: Vec<f32> = pairs
                    .iter()
                    .map(|p| p.reference.expect("precomputed before training").0 as f32)
                    .chain(pairs.iter().map(|p| p.reference.expect("precomputed before training").1 as f32))
                    .collect();
                Tensor::from_data(TensorData::new(values, [2 * n]), &device)
            }
        };
        let logratio = policy.clone() - reference.clone();
        let lengths = |f: fn(&Pair) -> usize| {
            Tensor::<1>::from_data(TensorData::new(pairs.iter().map(|p| f(p) as f32).collect(), [n]), &device)
        };
        let s = &self.settings;
        let per_pair = pair_losses(
            s.loss,
            s.beta,
            s.label_smoothing,
            logratio.clone().narrow(0, 0, n),
            logratio.narrow(0, n, n),
            lengths(|p| p.chosen.len()),
            lengths(|p| p.rejected.len()),
        );
        let mut loss = per_pair.sum() / norm.pairs;
        // Host-side metrics, TRL's names, already divided by the step's normalisers.
        let (pol, refs, logits) = (host(policy), host(reference), host(mean_logits));
        let chosen_mask: Vec<f32> = layout.chosen.iter().map(|&c| c as u8 as f32).collect();
        if s.sft_weight > 0.0 {
            let mask = Tensor::<1>::from_data(TensorData::new(chosen_mask, [layout.targets.len()]), &device);
            let nll = (token_logps * mask).sum().neg() / norm.chosen_tokens;
            loss = loss + nll * s.sft_weight;
        }
        let (mut rc, mut rr, mut acc, mut lc, mut lr) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            let (reward_c, reward_r) = (s.beta * (pol[i] - refs[i]), s.beta * (pol[n + i] - refs[n + i]));
            rc += reward_c;
            rr += reward_r;
            acc += (reward_c > reward_r) as u8 as f64;
            lc += pol[i];
            lr += pol[n + i];
        }
        let (mut logits_c, mut logits_r) = (0.0, 0.0);
        for (k, &is_chosen) in layout.chosen.iter().enumerate() {
            if is_chosen {
                logits_c += logits[k];
            } else {
                logits_r += logits[k];
            }
        }
        let p = norm.pairs;
        LossOutput {
            loss,
            metrics: vec![
                ("rewards/chosen", rc / p),
                ("rewards/rejected", rr / p),
                ("rewards/accuracies", acc / p),
                ("rewards/margins", (rc - rr) / p),
                ("logps/chosen", lc / p),
                ("logps/rejected", lr / p),
                ("logits/chosen", logits_c / norm.chosen_tokens),
                ("logits/rejected", logits_r / norm.rejected_tokens),
            ],
        }
    }

    fn progress(&self, metrics: &[(&'static str, f64)]) -> String {
        let get = |name: &str| metrics.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |m| m.1);
        format!(" acc {:.2} margin {:.3}", get("rewards/accuracies"), get("rewards/margins"))
    }
}

