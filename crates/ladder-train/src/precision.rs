//! `--precision f32|bf16|f16` (recipe key `precision`): the dtype a training stage computes in.
//! What each choice keeps in which dtype is [`ladder_model::precision`]'s to say; this is the
//! option and its default, bf16 on CUDA (tensor cores, f32's range) and f32 elsewhere (the CPU's
//! fused kernels are f32, and Vulkan drivers rarely have bf16).

use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// bf16 activations and frozen weights; f32 master weights, moments, norms and losses.
    Bf16,
    /// As bf16 with f16 (more mantissa, less range: for GPUs without bf16, e.g. Vulkan).
    F16,
}

impl Precision {
    /// The option as given, else the device's default. Refuses bf16 on `wgpu`: its kernels are
    /// compiled to WGSL, which has no bf16 type (cubecl would panic in its device thread with
    /// `UnsupportedType("cube.bf16")` at the first kernel).
    pub fn resolve(option: Option<Precision>, device: DeviceSpec) -> Result<Precision, String> {
        match (option, device) {
            (Some(Precision::Bf16), DeviceSpec::Wgpu) => {
                Err("bf16 on --device wgpu: its kernels are compiled to WGSL, which has no bf16 type; use f16 (GPUs with 16-bit floats) or f32".into())
            }
            (Some(p), _) => Ok(p),
            (None, DeviceSpec::Cuda(_)) => Ok(Precision::Bf16),
            (None, DeviceSpec::Cpu | DeviceSpec::Wgpu) => Ok(Precision::F32),
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// `model` computing in this precision (see [`ladder_model::precision::set_compute_dtype`]:
    /// call it once the trainable parameters are set); unchanged in f32.
    pub fn apply(self, model: ladder_model::Decoder) -> ladder_model::Decoder {
        if self.is_f32() {
            model
        } else {
            ladder_model::precision::set_compute_dtype(model, self.dtype())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_per_device_and_no_bf16_on_wgpu() {
        assert_eq!(Precision::resolve(None, DeviceSpec::Cuda(None)), Ok(Precision::Bf16));
        assert_eq!(Precision::resolve(None, DeviceSpec::Cpu), Ok(Precision::F32));
        assert_eq!(Precision::resolve(None, DeviceSpec::Wgpu), Ok(Precision::F32));
        assert_eq!(Precision::resolve(Some(Precision::F16), DeviceSpec::Wgpu), Ok(Precision::F16));
        assert!(Precision::resolve(Some(Precision::Bf16), DeviceSpec::Wgpu).unwrap_err().contains("WGSL"));
    }
}
