//! The GPU code path: Burn's cubecl kernels through `--device wgpu`, on whatever Vulkan driver
//! the machine has (Mesa's lavapipe, a conformant Vulkan on the CPU, in CI; a real GPU
//! elsewhere). Each test is a CPU test run again on the GPU device, against the same
//! transformers / PEFT / PyTorch numbers and the same tolerances: the GPU path takes the
//! reference compositions (the fused kernels are CPU-only), its own matmul and reductions, and
//! device transfers, which is what these tests exercise. Built with `--features wgpu` only.

use crate::util::*;
use crate::{dpo, generation, parity, vlm};

const ON_GPU: [&str; 2] = ["--device", "wgpu"];

#[test]
fn gpu_logits_match_transformers() {
    parity::check_logits_on("wgpu", "qwen2-tiny", None, "qwen2-tiny");
    parity::check_logits_on("wgpu", "llama-tiny", None, "llama-tiny");
    parity::check_logits_on("wgpu", "qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft");
}

#[test]
fn gpu_vlm_logits_match_transformers() {
    vlm::check_on("wgpu", "one_image", None);
    vlm::check_on("wgpu", "two_images", None);
}

#[test]
fn gpu_logprobs_match_transformers() {
    parity::check_logprobs_with("qwen2-tiny", None, "qwen2-tiny", &ON_GPU);
    parity::check_logprobs_with("qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft", &ON_GPU);
}

#[test]
fn gpu_sft_matches_pytorch() {
    parity::check_sft_within("qwen2-tiny", "qwen2-tiny/full", &["--full", "--device", "wgpu"], 1e-4);
    let init = fixture("qwen2-tiny-lora-init");
    parity::check_sft_within("qwen2-tiny", "qwen2-tiny/lora", &["--adapter", &init, "--device", "wgpu"], 1e-4);
}

#[test]
fn gpu_dpo_matches_pytorch() {
    let a = dpo::lora_init();
    dpo::check("lora/sigmoid", &[&dpo::LORA[..], &["--adapter", &a], &ON_GPU].concat());
    dpo::check_ties("full/sigmoid", &[&dpo::FULL[..], &ON_GPU].concat(), true);
}

#[test]
fn gpu_greedy_generation_matches_transformers() {
    generation::check_greedy_on("wgpu", "qwen2-tiny", None, "qwen2-tiny", 1.0);
    generation::check_greedy_on("wgpu", "qwen2-tiny", Some("qwen2-tiny-lora-peft"), "qwen2-tiny+lora-peft", 1.0);
}

/// What a GPU run writes is what it trained: the full checkpoint and the adapter saved from
/// the GPU device hold the CPU run's weights (within the runs' float differences), and score
/// the same log-probabilities when loaded back on either device.
#[test]
fn gpu_saved_models_load_back_identically() {
    let init = fixture("qwen2-tiny-lora-init");
    for (what, extra) in [("full", vec!["--full"]), ("lora", vec!["--adapter", init.as_str()])] {
        let key = format!("qwen2-tiny/{what}");
        let gpu = parity::check_sft_within("qwen2-tiny", &key, &[&extra[..], &ON_GPU].concat(), 1e-4);
        let cpu = parity::check_sft_within("qwen2-tiny", &key, &extra, 1e-4);
        let weights = if what == "full" { "model.safetensors" } else { "adapter_model.safetensors" };
        let (g, c) = (gpu.path().join("out").join(weights), cpu.path().join("out").join(weights));
        let (g, c) = (ladder_model::TensorFile::open(&g).unwrap(), ladder_model::TensorFile::open(&c).unwrap());
        for name in c.keys() {
            let diff = max_abs_diff(&g.get(name, None).unwrap().data, &c.get(name, None).unwrap().data);
            assert!(diff < 1e-4, "{what}: {name} differs between the GPU and CPU runs by {diff:.2e}");
        }
        let scored = |device: &str| {
            let out = gpu.path().join(format!("logprobs-{device}.jsonl"));
            let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), out.to_string_lossy().into_owned());
            let saved = gpu.path().join("out").to_string_lossy().into_owned();
            let mut args = vec!["logprobs", "--data", &d, "--out", &o, "--device", device];
            match what {
                "full" => args.extend(["--model", &saved]),
                _ => args.extend(["--model", &m, "--adapter", &saved]),
            }
            ladder(&args);
            read_jsonl(&out).iter().map(|r| r["logp"].as_f64().unwrap() as f32).collect::<Vec<_>>()
        };
        let diff = max_abs_diff(&scored("wgpu"), &scored("cpu"));
        assert!(diff < 1e-3, "{what}: the saved model scores differently on the GPU and the CPU ({diff:.2e})");
    }
}

/// `--precision f16` on the GPU path (lavapipe has 16-bit floats but no bf16): the first
/// steps' losses within 0.01 of PyTorch's f32 run (f16 keeps 11 significant bits; on the CPU's
/// reference path the difference is 0.0013 at most).
#[test]
fn gpu_f16_training_follows_f32() {
    parity::check_sft_within("qwen2-tiny", "qwen2-tiny/full", &["--full", "--device", "wgpu", "--precision", "f16"], 0.01);
    let init = fixture("qwen2-tiny-lora-init");
    parity::check_sft_within("qwen2-tiny", "qwen2-tiny/lora", &["--adapter", &init, "--device", "wgpu", "--precision", "f16"], 0.01);
}

/// bf16 on wgpu is refused before anything runs, naming the option (WGSL has no bf16: cubecl
/// panicked in its device thread at the first kernel before this check).
#[test]
fn gpu_bf16_on_wgpu_is_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d, o) = (fixture("qwen2-tiny"), fixture("data/sft.jsonl"), dir.path().join("out").to_string_lossy().into_owned());
    let err = ladder_fails(&["sft", "--model", &m, "--data", &d, "--out", &o, "--device", "wgpu", "--precision", "bf16"]);
    assert!(err.contains("--precision") && err.contains("WGSL") && !err.contains("panicked"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing is written");
}
