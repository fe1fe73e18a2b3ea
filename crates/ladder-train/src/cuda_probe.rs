//! What a CUDA device needs at run time, checked before Burn touches it.
//!
//! Burn's CUDA backend loads the driver and NVRTC lazily, inside a device thread: when either is
//! missing, cudarc panics there and the main thread then panics on a closed channel, a trace
//! that names neither. So before a CUDA device is made, [`check`] loads the same libraries the
//! same way (by the names cudarc tries, through the dynamic linker's search path), asks the
//! driver how many GPUs it sees, and looks for the CUDA headers NVRTC compiles kernels against.
//! Each failure is one sentence that says what is missing and how to supply it.
//!
//! Compiled in every build (it needs no CUDA to build), so its refusals are tested on machines
//! without a GPU. `unsafe` here is dlopen and two C calls into the driver, each with a SAFETY
//! note: the workspace's second and last exception to `unsafe_code = "deny"`.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};

use libloading::Library;

/// The driver library's names, as cudarc tries them.
const DRIVER: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
/// NVRTC's names: unversioned, then the CUDA 13 and 12 sonames (a toolkit's `lib64`, or pip's
/// `nvidia-cuda-nvrtc` package, put one of them on the library path).
const NVRTC: [&str; 3] = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"];

/// `Ok` when the driver, NVRTC and the CUDA headers are present and GPU `index` exists.
pub fn check(index: usize) -> Result<(), String> {
    let driver = open_any(&DRIVER).ok_or_else(|| {
        "the NVIDIA driver library (libcuda.so.1) was not found: this machine has no NVIDIA driver, \
         or its folder is not on LD_LIBRARY_PATH"
            .to_string()
    })?;
    let count = device_count(&driver)?;
    if index >= count {
        return Err(format!("cuda:{index}: the NVIDIA driver sees {count} GPU(s) (cuda:0 to cuda:{})", count.saturating_sub(1)));
    }
    if open_any(&NVRTC).is_none() {
        return Err("NVRTC (libnvrtc.so.13 or .12), CUDA's run-time kernel compiler, was not found: install the CUDA \
                    toolkit or `pip install nvidia-cuda-nvrtc`, and put the folder holding libnvrtc.so* on LD_LIBRARY_PATH"
            .into());
    }
    match cuda_path() {
        Some(dir) if dir.join("include").join("cuda.h").exists() => Ok(()),
        Some(dir) => Err(format!(
            "{}: no include/cuda.h there; NVRTC compiles kernels against the CUDA headers: set CUDA_PATH to a CUDA toolkit",
            dir.display()
        )),
        None => Err("the CUDA headers were not found (CUDA_PATH is unset and there is no /usr/local/cuda): \
                     set CUDA_PATH to a CUDA toolkit, the folder holding include/cuda.h"
            .into()),
    }
}

fn open_any(names: &[&str]) -> Option<Library> {
    // SAFETY: loading the driver or NVRTC runs only their initialisers, as cudarc's own loading does.
    names.iter().find_map(|name| unsafe { Library::new(name) }.ok())
}

/// `cuInit` then `cuDeviceGetCount`; `CUDA_ERROR_NO_DEVICE` (100) is zero GPUs.
fn device_count(driver: &Library) -> Result<usize, String> {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    // SAFETY: both symbols have these C signatures in every CUDA driver API version.
    unsafe {
        let init = driver.get::<CuInit>(b"cuInit\0").map_err(|e| format!("libcuda: {e}"))?;
        let get_count = driver.get::<CuDeviceGetCount>(b"cuDeviceGetCount\0").map_err(|e| format!("libcuda: {e}"))?;
        match init(0) {
            0 => {}
            100 => return Ok(0),
            code => return Err(format!("the NVIDIA driver failed to start (cuInit error {code}); `nvidia-smi` shows its state")),
        }
        let mut count = 0i32;
        match get_count(&mut count) {
            0 => Ok(count.max(0) as usize),
            code => Err(format!("the NVIDIA driver could not count GPUs (cuDeviceGetCount error {code})")),
        }
    }
}

/// Where cubecl looks for the CUDA toolkit: `CUDA_PATH`, else `/usr/local/cuda`, `/opt/cuda`.
fn cuda_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CUDA_PATH") {
        return Some(PathBuf::from(path));
    }
    ["/usr/local/cuda", "/opt/cuda"].iter().map(Path::new).find(|p| p.exists()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    /// On a machine without the NVIDIA driver (CI, this project's build machines) the check
    /// names the driver; where one is installed it passes or names what else is missing.
    #[test]
    fn names_what_is_missing() {
        let driver_present = super::open_any(&super::DRIVER).is_some();
        match super::check(0) {
            Err(e) if !driver_present => assert!(e.contains("libcuda.so.1") && e.contains("LD_LIBRARY_PATH"), "{e}"),
            Err(e) => assert!(e.contains("cuda:0") || e.contains("NVRTC") || e.contains("CUDA_PATH") || e.contains("driver"), "{e}"),
            Ok(()) => assert!(driver_present),
        }
    }
}
