//! Qwen2.5-VL against transformers and PEFT (fixtures made by scripts/make_vlm_fixtures.py):
//! logits for one image and for two images of different sizes, with and without a LoRA
//! adapter on the language model.

use ladder_model::vlm::{self, load_vlm, Images};
use ladder_model::weights::{host, TensorFile};
use ladder_model::{ForwardMode, Tokens};

use crate::util::*;

const EXPECTED: &str = "expected/vlm_logits.safetensors";

fn read_i64(key: &str) -> (Vec<usize>, Vec<i64>) {
    let bytes = std::fs::read(fixtures().join(EXPECTED)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(key).unwrap();
    let data = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    (view.shape().to_vec(), data)
}

/// One recorded case: input ids `[1, T]`, pixel values, grids, transformers' positions.
struct Case {
    ids: Vec<u32>,
    pixels: (Vec<usize>, Vec<f32>),
    grids: Vec<[usize; 3]>,
    positions: Vec<u32>,
}

fn case(name: &str) -> Case {
    let expected = TensorFile::open(&fixtures().join(EXPECTED)).unwrap();
    let ids = read_i64(&format!("{name}.input_ids")).1.iter().map(|&i| i as u32).collect();
    let grids = read_i64(&format!("{name}.image_grid_thw")).1.chunks(3).map(|g| [g[0] as usize, g[1] as usize, g[2] as usize]).collect();
    let positions = read_i64(&format!("{name}.position_ids")).1.iter().map(|&p| p as u32).collect();
    let pixels = expected.get(&format!("{name}.pixel_values"), None).unwrap();
    Case { ids, pixels: (pixels.shape, pixels.data), grids, positions }
}

/// `adapter`: the fixture folder and the targets it must be read with (language, vision).
fn check(name: &str, adapter: Option<(&str, &[&str], &[&str])>) {
    check_on("cpu", name, adapter);
}

/// [`check`] on `device`.
pub(crate) fn check_on(device: &str, name: &str, adapter: Option<(&str, &[&str], &[&str])>) {
    let device = ladder_train::device::parse_device(device).unwrap();
    let mut loaded = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
    if let Some((dir, language, vision)) = adapter {
        let lora = vlm::load_adapter(&mut loaded.model, &fixtures().join(dir), &device).unwrap();
        assert_eq!(lora.settings.targets, language, "{dir}: language-model targets");
        assert_eq!(lora.vision_targets, vision, "{dir}: vision targets");
    }
    let c = case(name);
    let tokens = Tokens::new(&c.ids, 1, c.ids.len());
    assert_eq!(loaded.model.mrope_positions(&tokens, &c.grids).unwrap(), c.positions, "{name}: get_rope_index");
    let images = Images::from_host(c.pixels.1, c.pixels.0[1], &c.grids, &device).unwrap();
    let got = host(loaded.model.forward(&tokens, Some(&images), ForwardMode::default()).unwrap());
    let key = match adapter {
        Some((dir, ..)) => format!("{name}{}.logits", dir.replace("qwen2_5-vl-tiny-", "+")),
        None => format!("{name}.logits"),
    };
    let want = TensorFile::open(&fixtures().join(EXPECTED)).unwrap().get(&key, None).unwrap();
    let diff = max_abs_diff(&got, &want.data);
    assert!(diff < 1e-4, "{key}: max |logit diff| {diff:.2e} ≥ 1e-4");
}

#[test]
fn vlm_one_image_logits_match_transformers() {
    check("one_image", None);
}

#[test]
fn vlm_two_images_logits_match_transformers() {
    check("two_images", None);
}

const ALL_LINEAR: &[&str] = &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

#[test]
fn vlm_lora_adapter_logits_match_peft() {
    // The vision MLPs share gate/up/down_proj's names but must stay unadapted.
    let adapter = ("qwen2_5-vl-tiny-lora-peft", ALL_LINEAR, &[][..]);
    check("one_image", Some(adapter));
    check("two_images", Some(adapter));
}

#[test]
fn vlm_vision_lora_adapter_logits_match_peft() {
    let vision: &[&str] = &["qkv", "proj", "gate_proj", "up_proj", "down_proj"];
    let adapter = ("qwen2_5-vl-tiny-vision-lora-peft", &["q_proj", "v_proj"][..], vision);
    check("one_image", Some(adapter));
    check("two_images", Some(adapter));
}

/// Both cases as one right-padded batch of two rows (images in row order) give each row's
/// single-row logits.
#[test]
fn vlm_padded_batch_equals_single_rows() {
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let loaded = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
    let (a, b) = (case("one_image"), case("two_images"));
    let t = a.ids.len().max(b.ids.len());
    let mut ids = Vec::new();
    let mut segments = Vec::new();
    for c in [&a, &b] {
        ids.extend(&c.ids);
        ids.extend(std::iter::repeat_n(0, t - c.ids.len()));
        segments.extend(std::iter::repeat_n(0, c.ids.len()));
        segments.extend(std::iter::repeat_n(ladder_model::PAD_SEGMENT, t - c.ids.len()));
    }
    let grids: Vec<[usize; 3]> = a.grids.iter().chain(&b.grids).copied().collect();
    let width = a.pixels.0[1];
    let pixels: Vec<f32> = a.pixels.1.iter().chain(&b.pixels.1).copied().collect();
    let images = Images::from_host(pixels, width, &grids, &device).unwrap();
    let tokens = Tokens::new(&ids, 2, t).segments(&segments);
    let got = host(loaded.model.forward(&tokens, Some(&images), ForwardMode::default()).unwrap());
    let expected = TensorFile::open(&fixtures().join(EXPECTED)).unwrap();
    let v = loaded.config.text.vocab_size;
    for (row, (name, c)) in [("one_image", &a), ("two_images", &b)].into_iter().enumerate() {
        let want = expected.get(&format!("{name}.logits"), None).unwrap().data;
        let n = c.ids.len() * v;
        let diff = max_abs_diff(&got[row * t * v..row * t * v + n], &want);
        assert!(diff < 1e-4, "row {row} ({name}): max diff {diff:.2e}");
    }
}

/// A ladder-saved adapter holds PEFT's tensors under PEFT's keys, and its `target_modules`
/// regex selects the same layers again.
#[test]
fn vlm_adapter_round_trips() {
    let device = ladder_train::device::parse_device("cpu").unwrap();
    for name in ["qwen2_5-vl-tiny-lora-peft", "qwen2_5-vl-tiny-vision-lora-peft"] {
        let mut loaded = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
        let lora = vlm::load_adapter(&mut loaded.model, &fixtures().join(name), &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        vlm::save_adapter(&mut loaded.model, &lora, "qwen2_5-vl-tiny", dir.path()).unwrap();
        assert_same_tensors(
            &fixtures().join(name).join("adapter_model.safetensors"),
            &dir.path().join("adapter_model.safetensors"),
        );
        let config = read_json(dir.path().join("adapter_config.json"));
        assert_eq!(config["target_modules"].as_str().unwrap(), lora.peft_target_modules());
        let mut again = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
        assert_eq!(vlm::load_adapter(&mut again.model, dir.path(), &device).unwrap(), lora);
    }
}

#[test]
fn vlm_image_errors_name_the_problem() {
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let loaded = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
    let c = case("one_image");
    let tokens = Tokens::new(&c.ids, 1, c.ids.len());
    let err = loaded.model.forward(&tokens, None, ForwardMode::default()).unwrap_err().to_string();
    assert!(err.contains("image tokens but no images"), "{err}");
    let grids = [[1, 2, 2]];
    let images = Images::from_host(vec![0.0; 4 * c.pixels.0[1]], c.pixels.0[1], &grids, &device).unwrap();
    let err = loaded.model.forward(&tokens, Some(&images), ForwardMode::default()).unwrap_err().to_string();
    assert!(err.contains("1 features but the prompt has 15 image tokens"), "{err}");
    let err = load_vlm(&fixtures().join("qwen2-tiny"), &device).err().unwrap().to_string();
    assert!(err.contains("unsupported architecture \"Qwen2ForCausalLM\""), "{err}");
}

/// Generation's path: a prefill that ends right after the image, then one text token at a
/// time through the KV cache with default positions (continuing from the largest position + 1,
/// as transformers' `rope_deltas` do), gives the full forward's logits.
#[test]
fn vlm_cached_decoding_continues_mrope_positions() {
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let loaded = load_vlm(&fixtures().join("qwen2_5-vl-tiny"), &device).unwrap();
    let c = case("two_images");
    let images = Images::from_host(c.pixels.1, c.pixels.0[1], &c.grids, &device).unwrap();
    let last_image = c.ids.iter().rposition(|&i| i == loaded.config.image_token_id).unwrap();
    let prefill = last_image + 1;
    let mode = ForwardMode::default();
    let mut cache = ladder_model::KvCache::new(&loaded.model.language_model, 1);
    let lm = &loaded.model.language_model;
    let h = loaded.model.hidden_cached(&Tokens::new(&c.ids[..prefill], 1, prefill), Some(&images), &mut cache, mode).unwrap();
    let mut got = host(lm.logits(h, mode));
    for &id in &c.ids[prefill..] {
        got.extend(host(lm.logits(lm.hidden_cached(&Tokens::new(&[id], 1, 1), &mut cache, mode), mode)));
    }
    let want = TensorFile::open(&fixtures().join(EXPECTED)).unwrap().get("two_images.logits", None).unwrap();
    let diff = max_abs_diff(&got, &want.data);
    assert!(diff < 1e-4, "cached decoding: max diff {diff:.2e}");
}

/// `ladder merge` on Qwen2.5-VL folds the language and vision adapters: the merged folder has
/// the base's keys and gives PEFT's logits with the adapter (recorded by transformers).
#[test]
fn vlm_merge_matches_peft_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let (base, adapter) = (fixture("qwen2_5-vl-tiny"), fixture("qwen2_5-vl-tiny-vision-lora-peft"));
    ladder(&["merge", "--model", &base, "--adapter", &adapter, "--out", out.to_str().unwrap()]);
    let keys = |p: &std::path::Path| {
        let mut k: Vec<String> = TensorFile::open(&p.join("model.safetensors")).unwrap().keys().map(String::from).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&out), keys(std::path::Path::new(&base)));
    let device = ladder_train::device::parse_device("cpu").unwrap();
    let merged = load_vlm(&out, &device).unwrap().model;
    let c = case("one_image");
    let images = Images::from_host(c.pixels.1, c.pixels.0[1], &c.grids, &device).unwrap();
    let got = host(merged.forward(&Tokens::new(&c.ids, 1, c.ids.len()), Some(&images), ForwardMode::default()).unwrap());
    let want = TensorFile::open(&fixtures().join(EXPECTED)).unwrap().get("one_image+vision-lora-peft.logits", None).unwrap();
    let diff = max_abs_diff(&got, &want.data);
    assert!(diff < 1e-4, "merged logits: max diff {diff:.2e}");
    // What stays unsupported says so.
    let data = fixture("data/images.jsonl");
    let err = ladder_fails(&["logprobs", "--model", &base, "--data", &data, "--out", tmp.path().join("lp.jsonl").to_str().unwrap()]);
    assert!(err.contains("is a Qwen2.5-VL model") && err.contains("text models only"), "{err}");
}
