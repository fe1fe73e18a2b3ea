//! `ladder sft` on image rows with the tiny Qwen2.5-VL (fixtures made by
//! scripts/make_vlm_fixtures.py): the loss falls, the adapter has PEFT's keys and config, it
//! trains on, and bad image input stops the run naming its row.

use std::path::{Path, PathBuf};

use ladder_model::weights::TensorFile;

use crate::util::*;

/// The image processor for the tiny model: its 4-pixel patches, at most 64 of them per image.
const PREPROCESSOR: &str = r#"{"min_pixels": 64, "max_pixels": 1024, "patch_size": 4, "temporal_patch_size": 2, "merge_size": 2}"#;

/// The tiny VLM with a matching `preprocessor_config.json`, in `dir/model`.
fn model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    copy_dir(&fixtures().join("qwen2_5-vl-tiny"), &m);
    std::fs::write(m.join("preprocessor_config.json"), PREPROCESSOR).unwrap();
    m
}

/// The SFT rows of `data/images.jsonl` (plain, conversational, two images), with absolute
/// image paths.
fn sft_rows(dir: &Path) -> PathBuf {
    let images = fixtures().join("images");
    let img = |name: &str| serde_json::json!(images.join(name));
    let rows = [
        serde_json::json!({"image": img("large.png"), "prompt": "Transcribe the page.", "completion": "PROCURAÇÃO PÚBLICA"}),
        serde_json::json!({"images": [img("photo.jpg")], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the total?"}]}], "completion": [{"role": "assistant", "content": "7.00"}]}),
        serde_json::json!({"images": [img("exact.png"), img("tiny.png")], "prompt": [{"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"}, {"type": "text", "text": " with "}, {"type": "image"}]}], "completion": [{"role": "assistant", "content": "Different."}]}),
    ];
    let path = dir.join("images.jsonl");
    std::fs::write(&path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    path
}

fn losses(out: &Path) -> Vec<f64> {
    read_jsonl(out.join("metrics.jsonl")).iter().map(|m| m["loss"].as_f64().unwrap()).collect()
}

fn keys(dir: &Path) -> Vec<String> {
    let mut keys: Vec<String> = TensorFile::open(&dir.join("adapter_model.safetensors")).unwrap().keys().map(String::from).collect();
    keys.sort();
    keys
}

fn sft(model: &Path, data: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["sft", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(["--lora-r", "4", "--batch-size", "3", "--no-shuffle", "--lr", "1e-2", "--lr-scheduler", "constant"]);
    args.extend(extra);
    ladder(&args);
}

#[test]
fn vlm_sft_lora_lowers_the_loss_and_writes_a_peft_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (model(tmp.path()), sft_rows(tmp.path()));
    let out = tmp.path().join("out");
    sft(&model, &data, &out, &["--max-steps", "6"]);
    let l = losses(&out);
    assert_eq!(l.len(), 6);
    assert!(l[5] < 0.9 * l[0], "the loss should fall: {l:?}");
    // The language model's linears, exactly the layers PEFT adapts with all-linear.
    assert_eq!(keys(&out), keys(&fixtures().join("qwen2_5-vl-tiny-lora-peft")));
    let config = read_json(out.join("adapter_config.json"));
    let peft = read_json(fixtures().join("qwen2_5-vl-tiny-lora-peft/adapter_config.json"));
    assert!(config["target_modules"].as_str().unwrap().contains("language_model"));
    assert_eq!(config["peft_type"], peft["peft_type"]);
    assert!(out.join("preprocessor_config.json").exists() && out.join("tokenizer.json").exists());

    // The saved adapter is the trained one: training on from it starts below where the first
    // run started, and at most where its last step was.
    let more = tmp.path().join("more");
    sft(&model, &data, &more, &["--max-steps", "1", "--adapter", out.to_str().unwrap()]);
    let again = losses(&more)[0];
    assert!(again < l[5] + 1e-3 && again < l[0], "reloaded adapter loss {again} vs run {l:?}");
}

#[test]
fn vlm_sft_lora_on_vision_blocks_matches_peft_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (model(tmp.path()), sft_rows(tmp.path()));
    let out = tmp.path().join("out");
    let flags = ["--max-steps", "4", "--lora-targets", "q_proj,v_proj", "--lora-vision", "all-linear"];
    sft(&model, &data, &out, &[&flags[..], &["--save-every", "2"]].concat());
    assert_eq!(keys(&out), keys(&fixtures().join("qwen2_5-vl-tiny-vision-lora-peft")));
    let config = read_json(out.join("adapter_config.json"));
    let peft = read_json(fixtures().join("qwen2_5-vl-tiny-vision-lora-peft/adapter_config.json"));
    // Same layers as PEFT's regex (ours also spells out `(self_attn|mlp)` for the language model).
    let vision_half = |c: &serde_json::Value| c["target_modules"].as_str().unwrap().split_once(r"|model\.visual").unwrap().1.to_string();
    assert_eq!(vision_half(&config), vision_half(&peft));
    // ladder loads what it wrote with the same targets.
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let mut loaded = ladder_model::load_vlm(&model, &device).unwrap();
    let lora = ladder_model::vlm::load_adapter(&mut loaded.model, &out, &device).unwrap();
    assert_eq!((lora.settings.targets, lora.vision_targets.len()), (vec!["q_proj".to_string(), "v_proj".into()], 5));

    // Resuming from the step-2 checkpoint ends where the uninterrupted run did.
    let resumed = tmp.path().join("resumed");
    let step2 = out.join("checkpoints/step-2");
    sft(&model, &data, &resumed, &[&flags[..], &["--resume", step2.to_str().unwrap()]].concat());
    assert_eq!(losses(&resumed).last(), losses(&out).last());
    assert_same_tensors(&out.join("adapter_model.safetensors"), &resumed.join("adapter_model.safetensors"));
}

#[test]
fn vlm_sft_bad_image_input_names_the_row() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let out = tmp.path().join("out");
    let run = |rows: &str| {
        let data = tmp.path().join("bad.jsonl");
        std::fs::write(&data, rows).unwrap();
        let args = ["sft", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-steps", "1"];
        ladder_fails(&args)
    };
    let good = format!(r#"{{"image": {}, "prompt": "Read.", "completion": "x"}}"#, serde_json::json!(fixtures().join("images/tiny.png")));
    let missing = format!("{good}\n{}\n", r#"{"image": "nowhere.png", "prompt": "Read.", "completion": "x"}"#);
    let err = run(&missing);
    assert!(err.contains("bad.jsonl:2") && err.contains("nowhere.png"), "{err}");
    std::fs::write(tmp.path().join("corrupt.png"), b"not a png").unwrap();
    let err = run(r#"{"image": "corrupt.png", "prompt": "Read.", "completion": "x"}"#);
    assert!(err.contains("bad.jsonl:1") && err.contains("corrupt.png"), "{err}");
    assert!(!out.exists(), "nothing is written before the data is checked");

    // A text-only model refuses image rows instead of training on their text.
    let data = tmp.path().join("images.jsonl");
    std::fs::write(&data, format!("{good}\n")).unwrap();
    let text = fixture("qwen2-tiny");
    let err = ladder_fails(&["sft", "--model", &text, "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains("images.jsonl:1") && err.contains("text-only"), "{err}");
    let err = ladder_fails(&["sft", "--model", &text, "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--lora-vision", "qkv"]);
    assert!(err.contains("--lora-vision needs a vision-language model"), "{err}");
    let err = ladder_fails(&["sft", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--full"]);
    assert!(err.contains("--full is not supported for Qwen2.5-VL"), "{err}");
    // A preprocessor whose patches do not fit the vision tower is refused up front.
    std::fs::write(model.join("preprocessor_config.json"), PREPROCESSOR.replace("\"patch_size\": 4", "\"patch_size\": 14")).unwrap();
    let err = ladder_fails(&["sft", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(err.contains("preprocessor_config.json") && err.contains("patch_size 14"), "{err}");
}

/// Preference rows with an image in the prompt: each pair's image goes through the vision
/// tower once, and the policy learns to prefer the chosen completions.
#[test]
fn vlm_dpo_on_image_rows_lowers_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let img = |name: &str| serde_json::json!(fixtures().join("images").join(name));
    let rows = [
        serde_json::json!({"image": img("rounded.png"), "prompt": "Read it:", "chosen": "Certidão nº 0173", "rejected": "Certidao no 0173"}),
        serde_json::json!({"images": [img("photo.jpg")], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Total?"}]}], "chosen": [{"role": "assistant", "content": "7.00"}], "rejected": [{"role": "assistant", "content": "9"}]}),
    ];
    let data = tmp.path().join("pairs.jsonl");
    std::fs::write(&data, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let out = tmp.path().join("out");
    let (m, d, o) = (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    ladder(&["dpo", "--model", m, "--data", d, "--out", o, "--lora-r", "4", "--batch-size", "2", "--no-shuffle", "--lr", "1e-2", "--lr-scheduler", "constant", "--max-steps", "5"]);
    let metrics = read_jsonl(out.join("metrics.jsonl"));
    let l: Vec<f64> = metrics.iter().map(|m| m["loss"].as_f64().unwrap()).collect();
    assert!((l[0] - std::f64::consts::LN_2).abs() < 1e-4, "a new adapter starts at ln 2: {l:?}");
    assert!(l[4] < l[0] - 0.05, "the DPO loss should fall: {l:?}");
    assert_eq!(keys(&out), keys(&fixtures().join("qwen2_5-vl-tiny-lora-peft")));
}

/// `ladder generate` on image prompts: greedy output equals recomputing the whole forward for
/// every new token (so the cached decoding continues the multimodal positions), and does not
/// depend on the batching (left padding in front of image tokens).
#[test]
fn vlm_generate_greedy_matches_uncached_forward() {
    use ladder_model::{ForwardMode, Images, Tokens};
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let img = |name: &str| serde_json::json!(fixtures().join("images").join(name));
    let rows = [
        serde_json::json!({"image": img("large.png"), "prompt": "Transcribe the page."}),
        serde_json::json!({"images": [img("exact.png"), img("tiny.png")], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Compare"}, {"type": "image"}]}]}),
        serde_json::json!({"prompt": "No image here."}),
    ];
    let data = tmp.path().join("prompts.jsonl");
    std::fs::write(&data, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = |batch: &str| {
        let out = tmp.path().join(format!("out-{batch}.jsonl"));
        ladder(&["generate", "--model", m, "--data", d, "--out", out.to_str().unwrap(), "--max-new-tokens", "6", "--batch-size", batch]);
        read_jsonl(&out).iter().map(|r| r["generated"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let batched = run("3");
    assert_eq!(batched, run("1"), "batching changes nothing");

    let device = ladder_train::device::parse_device("cpu").unwrap();
    let (vlm, tok, cfg, eos) = ladder_train::vlm::load_for_generation(&model, None, &device).unwrap();
    let prompts = ladder_train::generate::read_prompts(&data, &tok, Some(&cfg)).unwrap();
    for (p, got) in prompts.iter().zip(&batched) {
        let (pixels, grids) = ladder_train::vlm::batch_images(&[p.images.as_slice()]);
        let mut ids = p.ids.clone();
        for _ in 0..6 {
            let images = (!grids.is_empty()).then(|| Images::from_host(pixels.clone(), vlm.visual.config.patch_dim(), &grids, &device).unwrap());
            let logits = ladder_model::weights::host(vlm.forward(&Tokens::new(&ids, 1, ids.len()), images.as_ref(), ForwardMode::default()).unwrap());
            let last = &logits[logits.len() - vlm.language_model.config.vocab_size..];
            let next = ladder_model::generate::argmax(last);
            ids.push(next);
            if eos.contains(&next) {
                break;
            }
        }
        assert_eq!(&tok.decode(&ids[p.ids.len()..], true).unwrap(), got);
    }
}

/// `ladder pairs` samples from image prompts and writes pairs that keep their images, which
/// `ladder dpo` trains on; `ladder eval --model` scores image rows.
#[test]
fn vlm_pairs_feed_dpo_and_eval_scores_image_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (model(tmp.path()), sft_rows(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let pairs = tmp.path().join("pairs.jsonl");
    ladder(&["pairs", "--model", m, "--data", d, "--out", pairs.to_str().unwrap(), "--samples", "2", "--max-new-tokens", "6", "--synthetic-fallback"]);
    let rows = read_jsonl(&pairs);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["images"].as_array().is_some_and(|i| !i.is_empty())), "pairs keep their images");
    let out = tmp.path().join("dpo");
    ladder(&["dpo", "--model", m, "--data", pairs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-steps", "1", "--lora-r", "2"]);
    assert_eq!(read_jsonl(out.join("metrics.jsonl")).len(), 1);

    let eval = tmp.path().join("eval.json");
    ladder(&["eval", "--model", m, "--data", d, "--out", eval.to_str().unwrap(), "--max-new-tokens", "4"]);
    assert_eq!(read_json(&eval)["rows"].as_array().unwrap().len(), 3);
}
