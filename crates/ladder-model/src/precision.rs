//! Mixed precision (`--precision bf16|f16`): activations and frozen weights in 16 bits, while
//! what trains stays f32.
//!
//! The scheme is PyTorch autocast's, on Burn's runtime dtypes: a weight that trains (an
//! adapter's factors, or every weight in full fine-tuning) is kept in f32, the master copy the
//! optimizer updates with f32 moments, and is cast to the activations' dtype where a layer uses
//! it, so its gradient comes back through the cast in f32. A frozen weight (the base under
//! LoRA, every weight at inference) is stored in the compute dtype, which halves its memory.
//! Norms, softmax, logits and losses run in f32 ([`crate::kernels::rms_norm_reference`],
//! [`crate::kernels::attention_reference`], [`crate::Decoder::logits`]).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Tensor};

use crate::Decoder;

/// Makes `model` compute in `dtype` and stores its frozen weights in it; weights that require
/// a gradient are left in f32. Call it after the trainable parameters are set (adapters
/// attached, the base frozen).
pub fn set_compute_dtype(model: Decoder, dtype: DType) -> Decoder {
    struct Frozen(DType);
    impl ModuleMapper for Frozen {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| if t.is_require_grad() { t } else { t.cast(dtype) })
        }
    }
    let mut model = model.map(&mut Frozen(dtype));
    model.compute = dtype;
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Tokens;
    use crate::linear::ForwardMode;
    use burn::tensor::Device;

    /// bf16 logits stay near the f32 ones, f16 nearer (10 mantissa bits against 7), and come
    /// back in f32: a check that every layer takes the compute dtype on the CPU's reference
    /// path, with the frozen weights stored in it.
    #[test]
    fn half_precision_logits_follow_f32() {
        let config = crate::DecoderConfig::new(crate::Architecture::Qwen2, 96, 32, 64, 2, 4, 2);
        let device = Device::flex();
        let ids: Vec<u32> = (0..2 * 12).map(|i| (i * 5 % config.vocab_size) as u32).collect();
        let tokens = Tokens::new(&ids, 2, 12);
        let logits = |dtype: DType| {
            let model = set_compute_dtype(crate::random_decoder(&config, 0.05, 3, &device), dtype);
            assert_eq!(model.layers[0].mlp.up_proj.weight.val().dtype(), dtype, "frozen weights are stored in {dtype:?}");
            let out = model.forward(&tokens, ForwardMode::default());
            assert_eq!(out.dtype(), DType::F32);
            out.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        };
        let reference = logits(DType::F32);
        for (dtype, tol) in [(DType::F16, 0.01), (DType::BF16, 0.06)] {
            let half = logits(dtype);
            let worst = reference.iter().zip(&half).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst > 0.0, "{dtype:?}: logits identical to f32, so the model did not compute in it");
            assert!(worst < tol, "{dtype:?}: logits differ from f32 by {worst}");
        }
    }
}
