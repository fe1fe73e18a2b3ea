//! Timings of the training step's hot paths on the bench-30m shape, to catch regressions:
//! `cargo bench -p ladder-train` prints milliseconds per call (median of 7 after 2 warm-ups).
//! Measured, never asserted: wall-clock bounds would make CI flaky on a shared machine.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use ladder_model::{peft, ForwardMode, LoraSettings, Tokens};
use ladder_train::loss::selected_logprobs;

fn median_ms(mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[3]
}

fn main() {
    let device = Device::flex().autodiff();
    let config = ladder_train::bench::shape("bench-30m", 256).unwrap();
    let (b, t) = (8, 256);
    let ids: Vec<u32> = (0..b * t).map(|i| (i * 7919 % config.vocab_size) as u32).collect();
    let tokens = Tokens::new(&ids, b, t);
    let train = ForwardMode { adapters: true, train: true };

    let full = ladder_model::random_decoder(&config, 0.02, 0, &device);
    let mut lora = full.clone().no_grad();
    let settings = LoraSettings { r: 16, alpha: 32.0, dropout: 0.0, targets: peft::ALL_LINEAR.iter().map(|s| s.to_string()).collect(), rslora: false };
    peft::attach_new(&mut lora, &settings, 0, &device);

    // Loss on the second half of every row, as the bench and the PyTorch anchor.
    let (sources, next): (Vec<usize>, Vec<u32>) =
        (0..b * t).filter(|i| i % t >= t / 2).map(|i| (i - 1, ids[i])).unzip();
    for (name, model) in [("full", &full), ("lora", &lora)] {
        let ms = median_ms(|| {
            let hidden = model.hidden(&tokens, train);
            let (lp, _) = selected_logprobs(model, hidden, &sources, &next, train);
            let _ = lp.sum().backward();
        });
        println!("forward+backward {name:<4}  {ms:8.1} ms  ({:.0} tokens/s)", (b * t) as f64 / ms * 1e3);
    }
    // The matrix products of one layer, forward (GFLOP/s, no autodiff).
    let plain = Device::flex();
    for (m, k, n) in [(b * t, config.hidden_size, config.intermediate_size), (b * t, config.intermediate_size, config.hidden_size), (b * t, config.hidden_size, config.hidden_size)] {
        let x = Tensor::<2>::random([m, k], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
        let w = Tensor::<2>::random([k, n], burn::tensor::Distribution::Normal(0.0, 1.0), &plain);
        let ms = median_ms(|| {
            let _ = x.clone().matmul(w.clone()).into_data();
        });
        println!("matmul {m}x{k}x{n:<12} {ms:8.1} ms  ({:.0} GFLOP/s)", 2.0 * (m * k * n) as f64 / ms / 1e6);
    }
    // Attention of one layer, fused and by reference, forward + backward.
    let (h, kv, d) = (config.num_heads, config.num_kv_heads, config.head_dim);
    let q = Tensor::<4>::random([b, h, t, d], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
    let k = Tensor::<4>::random([b, kv, t, d], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
    let v = Tensor::<4>::random([b, kv, t, d], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
    let causal: Vec<f32> = (0..b * t * t).map(|i| if i % t <= (i / t) % t { 0.0 } else { f32::NEG_INFINITY }).collect();
    let bias = Tensor::<4>::from_data(TensorData::new(causal, [b, 1, t, t]), &device);
    type AttentionFn = fn(Tensor<4>, Tensor<4>, Tensor<4>, Tensor<4>, f64) -> Tensor<4>;
    for (name, f) in [("fused", ladder_model::kernels::attention as AttentionFn), ("reference", ladder_model::kernels::attention_reference)] {
        let ms = median_ms(|| {
            let _ = f(q.clone(), k.clone(), v.clone(), bias.clone(), 0.125).sum().backward();
        });
        println!("attention {name:<9} fwd+bwd {ms:8.1} ms");
    }
    let layer = &full.layers[0];
    let x = Tensor::<3>::random([b, t, config.hidden_size], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
    let ms = median_ms(|| {
        let _ = layer.mlp.forward(x.clone(), train).sum().backward();
    });
    println!("mlp fwd+bwd (1 layer)   {ms:8.1} ms");
    let h = Tensor::<2>::random([b * t / 2, config.hidden_size], burn::tensor::Distribution::Normal(0.0, 1.0), &device).require_grad();
    let w = Tensor::<2>::from_data(TensorData::new(vec![0.01f32; config.hidden_size * config.vocab_size], [config.hidden_size, config.vocab_size]), &device);
    let ms = median_ms(|| {
        let logits = h.clone().matmul(w.clone());
        let _ = burn::tensor::activation::log_softmax(logits, 1).sum().backward();
    });
    println!("lm head + log_softmax   {ms:8.1} ms  ([{}, {}])", b * t / 2, config.vocab_size);
}
