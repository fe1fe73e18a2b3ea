//! A linear layer with an optional LoRA adapter, as PEFT's `lora.Linear` computes it:
//! `y = x·W + b + s·(dropout(x)·A)·B` with the base frozen. No dense `W + s·A·B` is ever
//! formed, so training an adapter never pays for a full-size weight gradient.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::kernels;

/// A dense layer; `weight` is `[d_in, d_out]` (Burn's layout, transposed from HF's `[out, in]`).
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<Lora>,
}

/// Low-rank factors: `a: [d_in, r]`, `b: [r, d_out]`; `scale` is α/r (α/√r with rsLoRA).
#[derive(Module, Debug)]
pub struct Lora {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: f64,
}

/// What a forward pass should do beyond the base computation.
#[derive(Clone, Copy, Debug)]
pub struct ForwardMode {
    /// Apply LoRA adapters (off: the frozen base, e.g. as a DPO reference).
    pub adapters: bool,
    /// Training: LoRA dropout is active.
    pub train: bool,
}

impl Default for ForwardMode {
    fn default() -> Self {
        ForwardMode {
            adapters: true,
            train: false,
        }
    }
}

impl Linear {
    pub fn d_in(&self) -> usize {
        self.weight.shape().dims::<2>()[0]
    }

    pub fn d_out(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    /// # Shapes
    /// - input: `[batch, seq, d_in]`
    /// - output: `[batch, seq, d_out]`
    ///
    /// Weights are cast to `x`'s dtype where they are used (a no-op in f32): under mixed
    /// precision an f32 weight that trains is a master copy, and autodiff carries its gradient
    /// back through the cast in f32, as PyTorch's autocast does.
    pub fn forward(&self, x: Tensor<3>, mode: ForwardMode) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let dtype = x.dtype();
        let x = x.reshape([b * t, d_in]);
        let weight = self.weight.val().cast(dtype);
        let mut y = match (&self.lora, mode.adapters) {
            (Some(lora), true) => {
                // Dropout reaches the adapter's input only.
                let dropout = (mode.train && lora.dropout > 0.0).then(|| kernels::Dropout::draw(1.0 - lora.dropout, &x.device()));
                kernels::lora_linear(x, weight, lora.a.val().cast(dtype), lora.b.val().cast(dtype), lora.scale, dropout)
            }
            _ => kernels::linear(x, weight),
        };
        if let Some(bias) = &self.bias {
            y = y + bias.val().cast(dtype).unsqueeze_dim(0);
        }
        let d_out = y.dims()[1];
        y.reshape([b, t, d_out])
    }
}
