//! AdamW with PyTorch's semantics (`torch.optim.AdamW`): decoupled weight decay applied before
//! the moment update, bias-corrected moments, `eps` added after the square root — plus
//! global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_` does it (Burn's built-in
//! clipping is per tensor).
//!
//! Like Hugging Face's Trainer, biases and norm weights get no weight decay. State is keyed by
//! the parameter's module path, so a checkpoint can be reloaded into a freshly built model.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ladder_model::kernels;

/// Hyper-parameters, PyTorch defaults except `weight_decay` (HF Trainer's 0.0 is replaced by the
/// caller's choice).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Tensor<1>,
    pub v: Tensor<1>,
}

/// The optimizer: configuration, step count and per-parameter moments.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: usize,
    pub state: HashMap<String, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// Applies one update with learning rate `lr`, gradients multiplied by `grad_scale` (the
    /// clipping coefficient). Returns the updated module.
    pub fn apply<M: Module>(&mut self, module: M, grads: &mut GradientsParams, lr: f64, grad_scale: f64) -> M {
        self.step += 1;
        let mut mapper = Update {
            optim: self,
            grads,
            lr,
            grad_scale,
            path: Vec::new(),
        };
        module.map(&mut mapper)
    }

    /// Moments as host tensors keyed `<path>.m` / `<path>.v`, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out: Vec<_> = self
            .state
            .iter()
            .flat_map(|(path, mo)| {
                let n = mo.m.dims()[0];
                [
                    (format!("{path}.m"), vec![n], ladder_model::weights::host(mo.m.clone())),
                    (format!("{path}.v"), vec![n], ladder_model::weights::host(mo.v.clone())),
                ]
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`].
    pub fn load_state(&mut self, step: usize, tensors: HashMap<String, Vec<f32>>, device: &Device) {
        self.step = step;
        self.state.clear();
        for (key, data) in &tensors {
            if let Some(path) = key.strip_suffix(".m") {
                if let Some(v) = tensors.get(&format!("{path}.v")) {
                    let t = |d: &Vec<f32>| Tensor::from_data(TensorData::new(d.clone(), [d.len()]), device);
                    self.state.insert(path.to_string(), Moments { m: t(data), v: t(v) });
                }
            }
        }
    }
}

/// No decay for biases and norm weights, as HF Trainer's `get_decay_parameter_names`.
fn decays(path: &str) -> bool {
    !(path.ends_with("bias") || path.contains("norm"))
}

struct Update<'a> {
    optim: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
    path: Vec<String>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let c = self.optim.config;
        let t = self.optim.step as i32;
        let shape = tensor.shape();
        let n = shape.num_elements();
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let p = tensor.inner().reshape([n]);
        let device = p.device();
        let moments = self.optim.state.remove(&path).unwrap_or_else(|| Moments {
            m: Tensor::zeros([n], &device),
            v: Tensor::zeros([n], &device),
        });
        let decay = if c.weight_decay != 0.0 && decays(&path) { 1.0 - self.lr * c.weight_decay } else { 1.0 };
        let step = kernels::AdamWStep {
            decay,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            step_size: self.lr / (1.0 - c.beta1.powi(t)),
            bias2_sqrt: (1.0 - c.beta2.powi(t)).sqrt(),
            grad_scale: self.grad_scale,
        };
        let (p, m, v) = kernels::adamw(p, grad.reshape([n]), moments.m, moments.v, step);
        self.optim.state.insert(path, Moments { m, v });
        let mut updated = Tensor::from_inner(p.reshape(shape));
        // `from_inner` gives the default strategy; keep the parameter's (gradient
        // checkpointing), or the next forward would mix two strategies.
        if let Some(strategy) = checkpointing {
            updated = updated.with_gradient_checkpointing_strategy(strategy);
        }
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Elements squared at once by [`global_grad_norm`] (16 MiB of f32).
const NORM_CHUNK: usize = 1 << 22;

/// The global L2 norm of all gradients (`clip_grad_norm_`'s `total_norm`).
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let n = g.shape().num_elements();
                let flat = g.reshape([n]);
                // By chunks: squaring a whole vocabulary-sized gradient at once held a copy of
                // it (519 MiB at Qwen2.5-0.5B) on top of every gradient, the step's peak.
                for start in (0..n).step_by(NORM_CHUNK) {
                    let sq = flat.clone().slice(start..(start + NORM_CHUNK).min(n)).square().sum();
                    self.sum = Some(match self.sum.take() {
                        Some(s) => s + sq,
                        None => sq,
                    });
                }
            }
        }
    }
    let mut v = Norm { grads, sum: None };
    module.visit(&mut v);
    v.sum.map_or(0.0, |s| s.into_scalar::<f64>().sqrt())
}

/// `clip_grad_norm_`'s coefficient: `min(1, max_norm / (norm + 1e-6))`.
pub fn clip_coefficient(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) if max > 0.0 => (max / (norm + 1e-6)).min(1.0),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_excludes_bias_and_norms() {
        assert!(decays("layers.0.self_attn.q_proj.weight"));
        assert!(decays("layers.0.self_attn.q_proj.lora.a"));
        assert!(!decays("layers.0.self_attn.q_proj.bias"));
        assert!(!decays("layers.0.input_layernorm.weight"));
        assert!(!decays("norm.weight"));
    }

    #[test]
    fn clip_coefficient_matches_torch() {
        assert_eq!(clip_coefficient(0.5, Some(1.0)), 1.0);
        assert!((clip_coefficient(4.0, Some(1.0)) - 1.0 / (4.0 + 1e-6)).abs() < 1e-15);
        assert_eq!(clip_coefficient(4.0, None), 1.0);
    }
}
