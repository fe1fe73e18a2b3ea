//! `--device cpu|cuda[:N]|wgpu` → a Burn device. GPU backends exist only when the binary was
//! built with the `cuda` / `wgpu` features, so the CPU build never compiles them. Plain `cuda`
//! is GPU 0, or with several processes per node, the GPU of the rank's local rank.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, TrainError};

/// A device as the user names it (`--device`, the `device` key), parsed when options are
/// resolved so that `ladder validate` catches a typo; [`DeviceSpec::device`] makes the Burn
/// device only when a stage runs. Serialised as its name, so run fingerprints stay readable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A CUDA GPU by index; `None` (plain `cuda`) is the rank's local rank, GPU 0 alone.
    Cuda(Option<usize>),
    Wgpu,
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(name: &str) -> std::result::Result<Self, String> {
        match name {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            _ => match name.strip_prefix("cuda:") {
                Some(i) => i.parse().map(|i| DeviceSpec::Cuda(Some(i))).map_err(|_| format!("expected cuda or cuda:N with N a GPU index, got {name:?}")),
                None => Err(format!("expected cpu, cuda, cuda:N or wgpu, got {name:?}")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(i)) => write!(f, "cuda:{i}"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // As the user wrote it (`cpu`, `cuda`, `cuda:1`), so earlier runs' fingerprints match.
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The cargo feature this device needs, if this binary was built without it.
    pub fn missing_feature(self) -> Option<&'static str> {
        match self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Cuda(_) => (!cfg!(feature = "cuda")).then_some("cuda"),
            DeviceSpec::Wgpu => (!cfg!(feature = "wgpu")).then_some("wgpu"),
        }
    }

    /// Why this binary cannot run on the device, as the resolver reports it.
    pub fn check_built(self) -> std::result::Result<(), String> {
        match self.missing_feature() {
            Some(feature) => Err(format!(
                "{self}: this binary was built without GPU support; rebuild with `cargo build --release --features {feature}`"
            )),
            None => Ok(()),
        }
    }

    /// The Burn device.
    pub fn device(self) -> Result<Device> {
        self.check_built().map_err(|e| TrainError::Invalid(format!("--device {e}")))?;
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            // Under mpirun/srun each rank of a node takes its own GPU.
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => {
                let index = index.unwrap_or_else(|| crate::dist::world().local_rank());
                crate::cuda_probe::check(index).map_err(|e| TrainError::Invalid(format!("--device {self}: {e}")))?;
                Ok(Device::cuda(index))
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("check_built refused {self}"),
        }
    }
}

/// Parses a device name (the library's callers that hold a name, not a [`DeviceSpec`]).
pub fn parse_device(name: &str) -> Result<Device> {
    let spec: DeviceSpec = name.parse().map_err(|e| TrainError::Invalid(format!("--device: {e}")))?;
    spec.device()
}

/// The autodiff device a training stage runs on; with `checkpointing`, Burn's gradient
/// checkpointing: memory-bound operations (RMSNorm, SwiGLU, RoPE, residual adds) keep no output
/// for the backward pass, which recomputes them from the kept outputs of the matrix products.
pub fn training_device(spec: DeviceSpec, checkpointing: bool) -> Result<Device> {
    let device = spec.device()?.autodiff();
    Ok(if checkpointing { device.gradient_checkpointing() } else { device })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_unbuilt_devices() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("expected cpu"));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(None)));
        assert_eq!("cuda:3".parse::<DeviceSpec>().map(|d| d.to_string()), Ok("cuda:3".into()));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("GPU index"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:1").unwrap_err().to_string().contains("--features cuda"));
    }

    /// The same loss and gradients with and without checkpointing, for LoRA and full
    /// fine-tuning, through every fused kernel (the memory-bound ones recomputed in backward).
    #[test]
    fn gradient_checkpointing_gives_the_same_gradients() {
        use burn::module::Module;
        use ladder_model::{peft, ForwardMode, LoraSettings, Tokens};

        let config = crate::bench::shape("tiny", 16).unwrap();
        let (b, t) = (2, 16);
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % config.vocab_size) as u32).collect();
        let tokens = Tokens::new(&ids, b, t);
        let (sources, next): (Vec<usize>, Vec<u32>) = (0..b * t).filter(|i| i % t != 0).map(|i| (i - 1, ids[i])).unzip();
        let mode = ForwardMode { adapters: true, train: true };
        let settings = LoraSettings { r: 4, alpha: 8.0, dropout: 0.0, targets: peft::ALL_LINEAR.iter().map(|s| s.to_string()).collect(), rslora: false };
        let run = |checkpointing: bool, full: bool| -> Vec<Vec<f32>> {
            let device = training_device(DeviceSpec::Cpu, checkpointing).unwrap();
            let mut model = ladder_model::random_decoder(&config, 0.02, 0, &device);
            if !full {
                model = model.no_grad();
                peft::attach_new(&mut model, &settings, 0, &device);
            }
            let hidden = model.hidden(&tokens, mode);
            let (lp, _) = crate::loss::selected_logprobs(&model, hidden, &sources, &next, mode);
            let loss = lp.sum();
            let grads = loss.clone().backward();
            let layer = &model.layers[0];
            let q = &layer.self_attn.q_proj;
            let watched = match q.lora.as_ref() {
                Some(lora) => vec![lora.a.val().grad(&grads), lora.b.val().grad(&grads), layer.mlp.down_proj.lora.as_ref().unwrap().a.val().grad(&grads)],
                None => vec![
                    q.weight.val().grad(&grads),
                    layer.mlp.gate_proj.weight.val().grad(&grads),
                    layer.input_layernorm.weight.val().grad(&grads).map(|g| g.unsqueeze_dim(0)),
                ],
            };
            let values = |t: burn::tensor::Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let mut out = vec![values(loss.detach().unsqueeze_dim(0))];
            out.extend(watched.into_iter().map(|g| values(g.expect("a gradient"))));
            out
        };
        for full in [false, true] {
            let (plain, checkpointed) = (run(false, full), run(true, full));
            for (i, (p, c)) in plain.iter().zip(&checkpointed).enumerate() {
                let worst = p.iter().zip(c).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(worst <= 1e-6, "full={full}, value {i}: checkpointing changed it by {worst}");
            }
        }
    }
}
