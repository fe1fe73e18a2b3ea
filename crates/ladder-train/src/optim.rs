//! AdamW with PyTorch's semantics (`torch.optim.AdamW`): decoupled weight decay applied before
//! the moment update, bias-corrected moments, `eps` added after the square root — plus
//! global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_` does it (Burn's built-in
//! clipping is per tensor).
//!
//! Like Hugging Face's Trainer, biases and norm weights get no weight decay. State is keyed by
//! the parameter's module path, so a checkpoint can be reloaded into a freshly built model.
//!
//! `--optimizer adamw-8bit` keeps the moments in 8 bits per element, as torchao's `AdamW8bit`
//! (`ladder_model::kernels::adamw_8bit`): a quarter of the state, which is what full
//! fine-tuning's memory is mostly made of (weights, gradients and two moments, all f32).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ladder_model::kernels;
use ladder_model::kernels::adamw_8bit::{self, Moments8bit, Quantized};

/// Hyper-parameters, PyTorch defaults except `weight_decay` (HF Trainer's 0.0 is replaced by the
/// caller's choice).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// How the moments are stored. Absent from runs before it existed: f32.
    #[serde(default)]
    pub optimizer: OptimizerKind,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            optimizer: OptimizerKind::default(),
        }
    }
}

/// `--optimizer`: AdamW's moments in f32, or in 8 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum OptimizerKind {
    /// AdamW with f32 moments, as `torch.optim.AdamW` (HF's `adamw_torch`).
    #[default]
    #[serde(rename = "adamw")]
    #[value(name = "adamw")]
    AdamW,
    /// AdamW with 8-bit block-wise moments, as torchao's `AdamW8bit` (HF's `adamw_torch_8bit`):
    /// a quarter of the optimizer's memory. Parameters under 4,096 elements keep f32 moments.
    #[serde(rename = "adamw-8bit")]
    #[value(name = "adamw-8bit")]
    AdamW8bit,
}

/// First and second moments of one parameter, flattened.
// The f32 variant's two tensor handles make it 512 bytes; there is one per parameter tensor (a
// few hundred per model), so boxing either variant would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Moments {
    F32 { m: Tensor<1>, v: Tensor<1> },
    /// `--optimizer adamw-8bit`, on parameters large enough ([`adamw_8bit::quantizes`]).
    Blockwise8bit(Moments8bit),
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

    /// Moments as host tensors keyed `<path>.m` / `<path>.v`, for checkpoints, and the codes of
    /// 8-bit moments, one byte each, keyed `<path>.m.codes` / `<path>.v.codes` (their block
    /// scales are `<path>.m.scales` / `<path>.v.scales`, with the f32 tensors).
    pub fn state_tensors(&self) -> StateTensors {
        let mut out = StateTensors::default();
        for (path, mo) in &self.state {
            match mo {
                Moments::F32 { m, v } => {
                    let n = m.dims()[0];
                    out.values.push((format!("{path}.m"), vec![n], ladder_model::weights::host(m.clone())));
                    out.values.push((format!("{path}.v"), vec![n], ladder_model::weights::host(v.clone())));
                }
                Moments::Blockwise8bit(q) => {
                    for (name, q) in [("m", &q.m), ("v", &q.v)] {
                        out.codes.push((format!("{path}.{name}.codes"), vec![q.codes.len()], q.codes.clone()));
                        out.values.push((format!("{path}.{name}.scales"), vec![q.scales.len()], q.scales.clone()));
                    }
                }
            }
        }
        out.values.sort_by(|a, b| a.0.cmp(&b.0));
        out.codes.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`]. Codes saved as f32 values (by ladder
    /// before codes were stored as bytes) are read too.
    pub fn load_state(&mut self, step: usize, tensors: HashMap<String, Vec<f32>>, codes: HashMap<String, Vec<u8>>, device: &Device) {
        self.step = step;
        self.state.clear();
        for (key, data) in &tensors {
            if let Some(path) = key.strip_suffix(".m") {
                if let Some(v) = tensors.get(&format!("{path}.v")) {
                    let t = |d: &Vec<f32>| Tensor::from_data(TensorData::new(d.clone(), [d.len()]), device);
                    self.state.insert(path.to_string(), Moments::F32 { m: t(data), v: t(v) });
                }
            }
        }
        let quantized_paths: Vec<&str> = codes.keys().chain(tensors.keys()).filter_map(|k| k.strip_suffix(".m.codes")).collect();
        for path in quantized_paths {
            let quantized = |name: &str| {
                let key = format!("{path}.{name}.codes");
                let codes = codes.get(&key).cloned().or_else(|| tensors.get(&key).map(|c| c.iter().map(|&c| c as u8).collect()))?;
                let scales = tensors.get(&format!("{path}.{name}.scales"))?;
                Some(Quantized { codes, scales: scales.clone() })
            };
            if let (Some(m), Some(v)) = (quantized("m"), quantized("v")) {
                self.state.insert(path.to_string(), Moments::Blockwise8bit(Moments8bit { m, v }));
            }
        }
    }
}

/// What a checkpoint stores of the optimizer: f32 tensors (moments, block scales) and the
/// 8-bit moments' codes.
#[derive(Debug, Default)]
pub struct StateTensors {
    pub values: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub codes: Vec<(String, Vec<usize>, Vec<u8>)>,
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
        let eight_bit = c.optimizer == OptimizerKind::AdamW8bit && adamw_8bit::quantizes(n);
        let moments = self.optim.state.remove(&path).unwrap_or_else(|| match eight_bit {
            true => Moments::Blockwise8bit(Moments8bit::zeros(n)),
            false => Moments::F32 { m: Tensor::zeros([n], &device), v: Tensor::zeros([n], &device) },
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
        let (p, moments) = match moments {
            Moments::F32 { m, v } => {
                let (p, m, v) = kernels::adamw(p, grad.reshape([n]), m, v, step);
                (p, Moments::F32 { m, v })
            }
            Moments::Blockwise8bit(mut q) => (kernels::adamw_8bit_step(p, grad.reshape([n]), &mut q, step), Moments::Blockwise8bit(q)),
        };
        self.optim.state.insert(path, moments);
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

    /// `--optimizer adamw-8bit`: 8-bit moments for parameters of 4,096 elements or more (the
    /// tiny shape's embedding, 512 × 64, and its 64 × 128 MLP weights), f32 for the rest (norm
    /// weights, biases); and a checkpoint's state reloads as it was.
    #[test]
    fn eight_bit_moments_where_torchao_keeps_them_and_a_checkpoint_restores_them() {
        let device = burn::tensor::Device::flex().autodiff();
        let config = crate::bench::shape("tiny", 8).unwrap();
        let model = ladder_model::random_decoder(&config, 0.02, 0, &device);
        struct Fill<'a>(&'a mut GradientsParams);
        impl ModuleVisitor for Fill<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val().inner();
                self.0.register(param.id, value.clone() * 0.5 + 0.01);
            }
        }
        let mut optimizer = AdamW::new(AdamWConfig { optimizer: OptimizerKind::AdamW8bit, ..AdamWConfig::default() });
        let mut model = model;
        for _ in 0..2 {
            let mut grads = GradientsParams::new();
            model.visit(&mut Fill(&mut grads));
            model = optimizer.apply(model, &mut grads, 1e-3, 1.0);
        }
        let kind = |path: &str| match &optimizer.state[path] {
            Moments::F32 { .. } => "f32",
            Moments::Blockwise8bit(_) => "8-bit",
        };
        assert_eq!(kind("embed_tokens"), "8-bit");
        assert_eq!(kind("layers.0.mlp.up_proj.weight"), "8-bit");
        assert_eq!(kind("layers.0.input_layernorm.weight"), "f32");
        assert_eq!(kind("layers.0.self_attn.q_proj.bias"), "f32");
        let saved = optimizer.state_tensors();
        let values: HashMap<String, Vec<f32>> = saved.values.into_iter().map(|(k, _, v)| (k, v)).collect();
        let codes: HashMap<String, Vec<u8>> = saved.codes.into_iter().map(|(k, _, v)| (k, v)).collect();
        assert!(codes.contains_key("embed_tokens.m.codes") && !values.contains_key("embed_tokens.m.codes"));
        // As ladder wrote them before codes were bytes: f32 values.
        let mut as_f32 = values.clone();
        as_f32.extend(codes.iter().map(|(k, c)| (k.clone(), c.iter().map(|&c| f32::from(c)).collect())));
        let mut restored = AdamW::new(optimizer.config);
        restored.load_state(optimizer.step, values, codes, &device);
        let mut restored_old = AdamW::new(optimizer.config);
        restored_old.load_state(optimizer.step, as_f32, HashMap::new(), &device);
        assert_eq!(restored.state.len(), optimizer.state.len());
        for (path, moments) in &optimizer.state {
            match (moments, &restored.state[path]) {
                (Moments::Blockwise8bit(a), Moments::Blockwise8bit(b)) => {
                    assert_eq!(a, b, "{path}");
                    assert!(matches!(&restored_old.state[path], Moments::Blockwise8bit(c) if c == a), "{path}: f32 codes");
                }
                (Moments::F32 { m, v }, Moments::F32 { m: m2, v: v2 }) => {
                    let host = |t: &Tensor<1>| ladder_model::weights::host(t.clone());
                    assert_eq!((host(m), host(v)), (host(m2), host(v2)), "{path}");
                }
                _ => panic!("{path}: restored in another format"),
            }
        }
    }

    #[test]
    fn clip_coefficient_matches_torch() {
        assert_eq!(clip_coefficient(0.5, Some(1.0)), 1.0);
        assert!((clip_coefficient(4.0, Some(1.0)) - 1.0 / (4.0 + 1e-6)).abs() < 1e-15);
        assert_eq!(clip_coefficient(4.0, None), 1.0);
    }
}
