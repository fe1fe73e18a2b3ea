//! `--device cpu|cuda[:N]|wgpu` → a Burn device. GPU backends exist only when the binary was
//! built with the `cuda` / `wgpu` features, so the CPU build never compiles them.

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
                None => 0,
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
}
