//! Token log-probabilities and the causal-LM loss, as transformers' `ForCausalLMLoss`: logits at
//! position t predict token t+1; non-target positions contribute nothing.

use burn::tensor::activation::{log_sigmoid, log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ladder_model::{kernels, Decoder, ForwardMode};
use serde::{Deserialize, Serialize};

/// Log-probability of every next token, masked to the targets.
///
/// `ids` and `targets` are host-side row-major `[batch, seq]`; `targets[t]` marks token t as a
/// loss target (predicted from position t − 1).
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - output: `[batch, seq - 1]` (entry t is for token t + 1; 0 where it is not a target)
pub fn target_logprobs(logits: Tensor<3>, ids: &[u32], targets: &[bool], device: &Device) -> Tensor<2> {
    let [b, t, v] = logits.dims();
    let next: Vec<i64> = (0..b)
        .flat_map(|r| (1..t).map(move |i| (r, i)))
        .map(|(r, i)| ids[r * t + i] as i64)
        .collect();
    let mask: Vec<f32> = (0..b)
        .flat_map(|r| (1..t).map(move |i| (r, i)))
        .map(|(r, i)| if targets[r * t + i] { 1.0 } else { 0.0 })
        .collect();
    let next = Tensor::<3, Int>::from_data(TensorData::new(next, [b, t - 1, 1]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t - 1]), device);
    let logp = log_softmax(logits.slice([0..b, 0..t - 1, 0..v]), 2);
    logp.gather(2, next).reshape([b, t - 1]) * mask
}

/// Log-probabilities of selected next tokens, with the vocabulary projection computed only at
/// the positions that predict them: prompt positions never reach the LM head, which on a
/// long-prompt DPO batch saves most of the `[tokens, vocab]` logits and their gradient.
///
/// `sources[k]` is the flat index (`row * seq + position`) of the hidden state that predicts
/// `tokens[k]`. Also returns each position's mean logit over the vocabulary (TRL's
/// `logits/chosen` metric), detached.
///
/// # Shapes
/// - hidden: `[batch, seq, hidden]`
/// - outputs: `[n]` each, `n = sources.len()`
pub fn selected_logprobs(model: &Decoder, hidden: Tensor<3>, sources: &[usize], tokens: &[u32], mode: ForwardMode) -> (Tensor<1>, Tensor<1>) {
    let [b, t, h] = hidden.dims();
    let n = sources.len();
    let device = hidden.device();
    let index = Tensor::<1, Int>::from_data(TensorData::new(sources.iter().map(|&s| s as i64).collect(), [n]), &device);
    let picked = hidden.reshape([b * t, h]).select(0, index);
    let next = Tensor::<1, Int>::from_data(TensorData::new(tokens.iter().map(|&i| i as i64).collect(), [n]), &device);
    if let Some(weight) = model.head_weight(mode) {
        return kernels::token_logprobs(picked, weight, next);
    }
    let logits = model.logits(picked.reshape([1, n, h]), mode);
    let v = logits.dims()[2];
    kernels::logprobs_of_logits(logits.reshape([n, v]), next)
}

/// Sums `values` by group: output `g` is the sum of `values[k]` over `groups[k] == g`.
///
/// # Shapes
/// - values: `[n]`, output: `[n_groups]`
pub fn group_sums(values: Tensor<1>, groups: &[usize], n_groups: usize) -> Tensor<1> {
    let n = groups.len();
    let mut onehot = vec![0.0f32; n_groups * n];
    for (k, &g) in groups.iter().enumerate() {
        onehot[g * n + k] = 1.0;
    }
    let device = values.device();
    let m = Tensor::<2>::from_data(TensorData::new(onehot, [n_groups, n]), &device);
    m.matmul(values.reshape([n, 1])).reshape([n_groups])
}

/// The preference loss (TRL's `loss_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// DPO: `−log σ(βΔ)`; with label smoothing ε, cDPO's `−(1−ε) log σ(βΔ) − ε log σ(−βΔ)`.
    Sigmoid,
    /// IPO: `(Δ̄ − 1/(2β))²` on length-normalised log-ratios.
    Ipo,
    /// SLiC's hinge: `relu(1 − βΔ)`.
    Hinge,
    /// Robust DPO, for noisy labels (with `label_smoothing` ε): `(−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε)`.
    Robust,
}

impl std::fmt::Display for DpoLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            DpoLoss::Sigmoid => "sigmoid",
            DpoLoss::Ipo => "ipo",
            DpoLoss::Hinge => "hinge",
            DpoLoss::Robust => "robust",
        };
        f.write_str(name)
    }
}

/// Per-pair loss from the policy-minus-reference log-ratios of chosen and rejected.
///
/// # Shapes
/// - inputs: `[n]`, output: `[n]`
pub fn pair_losses(
    loss: DpoLoss,
    beta: f64,
    label_smoothing: f64,
    chosen_logratio: Tensor<1>,
    rejected_logratio: Tensor<1>,
    chosen_len: Tensor<1>,
    rejected_len: Tensor<1>,
) -> Tensor<1> {
    let eps = label_smoothing;
    match loss {
        DpoLoss::Sigmoid | DpoLoss::Robust => {
            let z = (chosen_logratio - rejected_logratio) * beta;
            let clean = log_sigmoid(z.clone()) * -(1.0 - eps);
            let flipped = log_sigmoid(z.neg()) * eps;
            match loss {
                DpoLoss::Sigmoid => clean - flipped,
                _ => (clean + flipped) / (1.0 - 2.0 * eps),
            }
        }
        DpoLoss::Hinge => relu(((chosen_logratio - rejected_logratio) * beta).neg() + 1.0),
        DpoLoss::Ipo => {
            let delta = chosen_logratio / chosen_len - rejected_logratio / rejected_len;
            (delta - 1.0 / (2.0 * beta)).square()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_next_token_logprobs_under_the_mask() {
        let device = Device::flex();
        // One row, 3 positions, vocab 2; uniform logits except position 1.
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 2.0, 0.0, 0.0, 0.0], [1, 3, 2]),
            &device,
        );
        let lp = target_logprobs(logits, &[1, 1, 0], &[false, true, true], &device);
        let v: Vec<f32> = lp.into_data().try_to_vec().unwrap();
        // token 1 from uniform: ln(1/2); token 0 from [2, 0]: 2 - ln(e^2 + 1).
        assert!((v[0] - (0.5f32).ln()).abs() < 1e-6);
        assert!((v[1] - (2.0 - (2.0f32.exp() + 1.0).ln())).abs() < 1e-6);
    }

    #[test]
    fn group_sums_add_by_group() {
        let device = Device::flex();
        let values = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 4.0, 8.0], [4]), &device);
        let sums: Vec<f32> = group_sums(values, &[1, 0, 1, 2], 3).into_data().try_to_vec().unwrap();
        assert_eq!(sums, vec![2.0, 5.0, 8.0]);
    }

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    fn losses(loss: DpoLoss, eps: f64) -> Vec<f32> {
        // Two pairs: log-ratio differences Δ = 2 - (-1) = 3 and 0.5 - 1.5 = -1; lengths 4/2, 1/5.
        let out = pair_losses(loss, 0.5, eps, t(&[2.0, 0.5]), t(&[-1.0, 1.5]), t(&[4.0, 1.0]), t(&[2.0, 5.0]));
        ladder_model::weights::host(out)
    }

    fn log_sigmoid(x: f64) -> f64 {
        -(1.0 + (-x).exp()).ln()
    }

    fn close(a: &[f32], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sigmoid_hinge_ipo_and_robust_by_hand() {
        // βΔ = 1.5 and -0.5.
        close(&losses(DpoLoss::Sigmoid, 0.0), &[-log_sigmoid(1.5), -log_sigmoid(-0.5)]);
        let eps = 0.1;
        let cdpo = |z: f64| -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
        close(&losses(DpoLoss::Sigmoid, eps), &[cdpo(1.5), cdpo(-0.5)]);
        let robust = |z: f64| (-(1.0 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1.0 - 2.0 * eps);
        close(&losses(DpoLoss::Robust, eps), &[robust(1.5), robust(-0.5)]);
        close(&losses(DpoLoss::Hinge, 0.0), &[0.0, 1.5]);
        // IPO: (2/4 - (-1)/2 - 1)² = 0 and (0.5/1 - 1.5/5 - 1)² = 0.64.
        close(&losses(DpoLoss::Ipo, 0.0), &[0.0, 0.64]);
    }
}
