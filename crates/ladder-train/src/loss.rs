//! Token log-probabilities and the causal-LM loss, as transformers' `ForCausalLMLoss`: logits at
//! position t predict token t+1; non-target positions contribute nothing.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

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
}
