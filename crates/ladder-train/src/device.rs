//! `--device cpu|cuda[:N]|wgpu` → a Burn device. GPU backends exist only when the binary was
//! built with the `cuda` / `wgpu` features, so the CPU build never compiles them. Plain `cuda`
//! is GPU 0, or with several processes per node, the GPU of the rank's local rank.

use burn::tensor::Device;

use crate::error::{Result, TrainError};

/// Parses a device name.
pub fn parse_device(name: &str) -> Result<Device> {
    let unavailable = |feature: &str| {
        TrainError::Invalid(format!(
            "--device {name}: this binary was built without GPU support; rebuild with `cargo build --release --features {feature}`"
        ))
    };
    match name {
        "cpu" => Ok(Device::flex()),
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "wgpu"))]
            Err(unavailable("wgpu"))
        }
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let index: usize = match name.strip_prefix("cuda:") {
                Some(i) => i.parse().map_err(|_| {
                    TrainError::Invalid(format!("--device {name}: expected cuda or cuda:N with N a GPU index"))
                })?,
                // Under mpirun/srun each rank of a node takes its own GPU.
                None => crate::dist::world().local_rank(),
            };
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(unavailable("cuda"))
            }
        }
        _ => Err(TrainError::Invalid(format!(
            "--device {name:?}: expected cpu, cuda, cuda:N or wgpu"
        ))),
    }
}

/// The autodiff device a training stage runs on; with `checkpointing`, Burn's gradient
/// checkpointing: memory-bound operations (RMSNorm, SwiGLU, RoPE, residual adds) keep no output
/// for the backward pass, which recomputes them from the kept outputs of the matrix products.
pub fn training_device(name: &str, checkpointing: bool) -> Result<Device> {
    let device = parse_device(name)?.autodiff();
    Ok(if checkpointing { device.gradient_checkpointing() } else { device })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_unbuilt_devices() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("tpu").unwrap_err().to_string().contains("expected cpu"));
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
            let device = training_device("cpu", checkpointing).unwrap();
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
