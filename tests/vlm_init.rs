//! `ladder init --arch qwen2_5_vl`: the new model is one transformers loads, and ladder reads it
//! as transformers does (numbers from scripts/make_vlm_init_fixtures.py, which runs the same
//! `ladder init`); it trains on image rows; bad `--arch` and vision options are clear errors.

use std::path::{Path, PathBuf};

use ladder_data::{prompt_ids_with_images, preprocess, ImageConfig, ImageSource, Message, Prompt, Tokenizer, IMAGE_BLOCK};
use ladder_model::weights::{host, TensorFile};
use ladder_model::{load_vlm, ForwardMode, Images, Tokens};

use crate::util::*;

const EXPECTED: &str = "expected/vlm_init.safetensors";

/// The shape of scripts/make_vlm_init_fixtures.py's INIT_ARGS (keep in step), after
/// `--tokenizer-data data/sft.jsonl --tokenizer-data data/text.jsonl`.
const INIT_ARGS: &[&str] = &[
    "--arch", "qwen2_5_vl", "--vocab-size", "400", "--hidden-size", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
    "--vision-hidden-size", "32", "--vision-layers", "2", "--vision-heads", "2", "--patch-size", "4",
    "--window-size", "16", "--min-pixels", "64", "--max-pixels", "1024", "--init-std", "0.1", "--seed", "3",
];

/// Runs the fixture script's `ladder init` into `dir/vlm`.
fn init(dir: &Path) -> PathBuf {
    let out = dir.join("vlm");
    let (sft, text) = (fixture("data/sft.jsonl"), fixture("data/text.jsonl"));
    let mut args = vec!["init", "--out", out.to_str().unwrap(), "--tokenizer-data", &sft, "--tokenizer-data", &text];
    args.extend(INIT_ARGS);
    ladder(&args);
    out
}

fn expected_i64(key: &str) -> Vec<i64> {
    let bytes = std::fs::read(fixtures().join(EXPECTED)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(key).unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Tokenisation (chat template with two images), image preprocessing and logits all equal
/// transformers' `Qwen2_5_VLProcessor` and `Qwen2_5_VLForConditionalGeneration` on the folder.
#[test]
fn vlm_init_matches_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let config = read_json(dir.join("config.json"));
    assert_eq!(config["architectures"][0], "Qwen2_5_VLForConditionalGeneration");
    assert_eq!(config["text_config"]["rope_parameters"]["mrope_section"], serde_json::json!([2, 3, 3]));
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(config["image_token_id"].as_u64(), tok.token_id("<|image_pad|>").map(u64::from));
    assert_eq!(config["text_config"]["vocab_size"].as_u64(), Some(tok.vocab_size() as u64));

    let cfg = ImageConfig::from_dir(&dir).unwrap();
    let expected = TensorFile::open(&fixtures().join(EXPECTED)).unwrap();
    let images: Vec<_> = ["../../datasets/demo-vlm/pages/ocr-0004.png", "images/large.png"]
        .iter()
        .map(|p| preprocess(&ImageSource::Path(fixtures().join(p)).load().unwrap(), &cfg).unwrap())
        .collect();
    let grids: Vec<[usize; 3]> = images.iter().map(|i| i.grid_thw).collect();
    let want_grids: Vec<usize> = expected_i64("image_grid_thw").iter().map(|&g| g as usize).collect();
    assert_eq!(grids.concat(), want_grids, "image_grid_thw");
    let pixels: Vec<f32> = images.iter().flat_map(|i| i.pixel_values.iter().copied()).collect();
    let want_pixels = expected.get("pixel_values", None).unwrap();
    let diff = max_abs_diff(&pixels, &want_pixels.data);
    assert!(diff < 1e-5, "pixel_values: max diff {diff:.2e}");

    let content = format!("{IMAGE_BLOCK}Transcribe the page, then compare it with {IMAGE_BLOCK}.");
    let prompt = Prompt::Messages(vec![Message::new("user", &content)]);
    let counts: Vec<usize> = images.iter().map(|i| i.num_tokens(cfg.merge_size)).collect();
    let ids = prompt_ids_with_images(&tok, &prompt, &counts).unwrap();
    let want_ids: Vec<u32> = expected_i64("input_ids").iter().map(|&i| i as u32).collect();
    assert_eq!(ids, want_ids, "input ids (chat template, image tokens)");

    let device = ladder_train::device::parse_device("cpu").unwrap();
    let model = load_vlm(&dir, &device).unwrap().model;
    let images = Images::from_host(pixels, want_pixels.shape[1], &grids, &device).unwrap();
    let logits = host(model.forward(&Tokens::new(&ids, 1, ids.len()), Some(&images), ForwardMode::default()).unwrap());
    let diff = max_abs_diff(&logits, &expected.get("logits", None).unwrap().data);
    assert!(diff < 1e-4, "logits: max diff {diff:.2e} ≥ 1e-4");
}

/// init → load → a LoRA SFT step on rendered demo pages (language and vision adapters).
#[test]
fn vlm_init_trains_on_image_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo-vlm/ocr.jsonl");
    let out = tmp.path().join("sft");
    ladder(&[
        "sft", "--model", dir.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--max-steps", "2", "--batch-size", "2", "--lora-r", "4", "--lora-vision", "all-linear", "--max-seq-len", "512",
    ]);
    let metrics = read_jsonl(out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 2);
    for m in &metrics {
        let loss = m["loss"].as_f64().unwrap();
        // A random model over a ~360-token vocabulary: about ln(362) ≈ 5.9 per token.
        assert!(loss.is_finite() && (4.0..8.0).contains(&loss), "loss {loss}");
    }
    let keys: Vec<String> = TensorFile::open(&out.join("adapter_model.safetensors")).unwrap().keys().map(String::from).collect();
    assert!(keys.iter().any(|k| k.contains("model.visual.blocks.1.mlp.down_proj.lora_A")), "{keys:?}");
    assert!(out.join("preprocessor_config.json").exists(), "the adapter folder carries the image processor");
}

#[test]
fn init_rejects_bad_arch_and_stray_vision_options() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let (out, text) = (out.to_str().unwrap(), fixture("data/text.jsonl"));
    let base = ["init", "--out", out, "--tokenizer-data", &text, "--vocab-size", "400"];
    let run = |extra: &[&str]| ladder_fails(&[&base[..], extra].concat());
    let err = run(&["--arch", "qwen2_5-vl"]);
    assert!(err.contains("--arch \"qwen2_5-vl\"") && err.contains("qwen2_5_vl"), "{err}");
    let err = run(&["--arch", "llama", "--patch-size", "14", "--max-pixels", "1000"]);
    assert!(err.contains("--patch-size, --max-pixels only apply to --arch qwen2_5_vl"), "{err}");
    let err = run(&["--arch", "qwen2_5_vl", "--vision-hidden-size", "24", "--vision-heads", "4"]);
    assert!(err.contains("--vision-hidden-size (24)") && err.contains("divisible by 4"), "{err}");
    let err = run(&["--arch", "qwen2_5_vl", "--max-pixels", "100"]);
    assert!(err.contains("--max-pixels 100"), "{err}");
    assert!(!Path::new(out).exists(), "a refused init leaves nothing behind");
}

/// `--text-model`: the language model (weights, shape, tokenizer) comes from a Qwen2
/// checkpoint; only the vision tower and the new vision tokens' embeddings are new.
#[test]
fn vlm_init_takes_a_text_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("vlm");
    // The text demo's generalist: a full 2048-token vocabulary, so the embedding grows.
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/generalist").to_string_lossy().into_owned();
    ladder(&["init", "--arch", "qwen2_5_vl", "--text-model", &text, "--out", out.to_str().unwrap(), "--vision-hidden-size", "32", "--patch-size", "4", "--max-pixels", "1024", "--min-pixels", "64"]);
    let (t, v) = (TensorFile::open_model_dir(Path::new(&text)).unwrap(), TensorFile::open_model_dir(&out).unwrap());
    let (te, ve) = (t.get("model.embed_tokens.weight", None).unwrap(), v.get("model.embed_tokens.weight", None).unwrap());
    assert_eq!(ve.shape, [te.shape[0] + 4, te.shape[1]], "four vision tokens appended");
    assert_eq!(ve.data[..te.data.len()], te.data[..]);
    assert_eq!(t.get("model.layers.1.mlp.down_proj.weight", None).unwrap().data, v.get("model.layers.1.mlp.down_proj.weight", None).unwrap().data);
    assert!(v.contains("visual.merger.mlp.2.weight"));
    let tok = Tokenizer::from_dir(&out).unwrap();
    assert_eq!(tok.token_id("<|im_end|>"), Tokenizer::from_dir(Path::new(&text)).unwrap().token_id("<|im_end|>"));
    load_vlm(&out, &ladder_train::device::parse_device("cpu").unwrap()).unwrap();
    // The text model's shape is taken, not given; a Llama language model is refused.
    let other = tmp.path().join("other");
    let err = ladder_fails(&["init", "--arch", "qwen2_5_vl", "--text-model", &text, "--out", other.to_str().unwrap(), "--hidden-size", "32"]);
    assert!(err.contains("--hidden-size") && err.contains("--text-model"), "{err}");
    let err = ladder_fails(&["init", "--arch", "qwen2_5_vl", "--text-model", &fixture("llama-tiny"), "--out", other.to_str().unwrap()]);
    assert!(err.contains("a Qwen2.5-VL language model is Qwen2's"), "{err}");
}
