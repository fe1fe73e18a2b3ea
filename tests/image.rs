//! Image preprocessing against transformers' slow Qwen2-VL processor (PIL bicubic), on the
//! images and config made by `scripts/make_image_fixtures.py`.

use ladder_data::{
    load_images, preprocess, prompt_ids_with_images, read_rows, tokenize_sft, tokenize_sft_with_images, Fit, ImageConfig, Prompt, ReadOptions,
    RgbImage, Row, SftOptions, Tokenizer,
};
use safetensors::{Dtype, SafeTensors};

use crate::util::{fixtures, max_abs_diff};

fn expected() -> Vec<u8> {
    std::fs::read(fixtures().join("expected/image_preprocess.safetensors")).unwrap()
}

fn f32s(st: &SafeTensors, key: &str) -> Vec<f32> {
    let t = st.tensor(key).unwrap();
    assert_eq!(t.dtype(), Dtype::F32);
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn grid(st: &SafeTensors, key: &str) -> [usize; 3] {
    let t = st.tensor(key).unwrap();
    let v: Vec<usize> = t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize).collect();
    [v[0], v[1], v[2]]
}

#[test]
fn pixel_values_match_the_python_processor() {
    let bytes = expected();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dir = fixtures().join("images");
    let cfg = ImageConfig::from_dir(&dir).unwrap();
    assert_eq!((cfg.min_pixels, cfg.max_pixels), (3136, 12544));
    let cases = [
        ("exact.png", Fit::Exact),
        ("rounded.png", Fit::Rounded),
        ("large.png", Fit::Downscaled),
        ("tiny.png", Fit::Upscaled),
        ("photo.jpg", Fit::Downscaled),
    ];
    for (name, fit) in cases {
        let key = name.split('.').next().unwrap();
        let img = RgbImage::open(&dir.join(name)).unwrap();
        let decoded = st.tensor(&format!("{key}.decoded")).unwrap();
        let decode_diff = img.data.iter().zip(decoded.data()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        // Preprocessing alone, from the pixels PIL decoded: must match to float rounding.
        let pil = RgbImage { width: img.width, height: img.height, data: decoded.data().to_vec() };
        let out = preprocess(&pil, &cfg).unwrap();
        let want = f32s(&st, &format!("{key}.pixel_values"));
        assert_eq!(out.grid_thw, grid(&st, &format!("{key}.image_grid_thw")), "{name}: grid");
        assert_eq!(out.fit, fit, "{name}");
        let err = max_abs_diff(&out.pixel_values, &want);
        eprintln!("{name}: max |Δ| {err:e} from PIL-decoded pixels; decoder differs by ≤ {decode_diff} grey levels");
        assert!(err <= 1e-5, "{name}: max abs error {err} against transformers");
        assert_eq!(out.num_tokens(cfg.merge_size), out.grid_thw.iter().product::<usize>() / 4);
        // End to end from the file: PNG decodes to PIL's bytes exactly.
        if name.ends_with(".png") {
            assert_eq!(decode_diff, 0, "{name}: PNG decoding differs from PIL");
            assert_eq!(preprocess(&img, &cfg).unwrap().pixel_values, out.pixel_values);
        } else {
            // JPEG: the `image` crate's decoder (zune-jpeg) and PIL's libjpeg-turbo round the
            // IDCT and chroma upsampling differently, so a few grey levels differ. Measured,
            // and bounded so a regression shows, but not a preprocessing error.
            let differing = img.data.iter().zip(decoded.data()).filter(|(a, b)| a != b).count();
            let end_to_end = max_abs_diff(&preprocess(&img, &cfg).unwrap().pixel_values, &want);
            eprintln!("{name}: decoded from the file, {differing} of {} bytes differ from PIL's; max |Δ| {end_to_end:e}", img.data.len());
            assert!(decode_diff <= 8, "{name}: JPEG decoding differs from PIL's by {decode_diff} grey levels");
        }
    }
}

#[test]
fn corrupt_and_missing_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = RgbImage::open(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.png") && err.contains("cannot decode image"), "{err}");
    let err = RgbImage::open(&dir.path().join("nope.png")).unwrap_err().to_string();
    assert!(err.contains("nope.png"), "{err}");
}

fn prompt_of(row: &Row) -> &Prompt {
    match row {
        Row::Completion { prompt, .. } | Row::Preference { prompt, .. } => prompt,
        other => panic!("unexpected row {other:?}"),
    }
}

/// Prompts with images tokenise to transformers' `Qwen2_5_VLProcessor` ids: placeholders in
/// place, expanded to one `<|image_pad|>` per merged patch; JSONL and Parquet rows alike.
#[test]
fn prompt_ids_match_the_python_processor() {
    let expected = crate::util::expected("image_prompts.json");
    let dir = fixtures().join("images");
    let (tok, cfg) = (Tokenizer::from_dir(&dir).unwrap(), ImageConfig::from_dir(&dir).unwrap());
    let mut checked = 0;
    for file in ["images.jsonl", "images.parquet"] {
        for row in read_rows(&fixtures().join("data").join(file), &ReadOptions::default()).unwrap().rows {
            let images = load_images(&row, &cfg).unwrap();
            let tokens: Vec<usize> = images.iter().map(|p| p.num_tokens(cfg.merge_size)).collect();
            let ids = prompt_ids_with_images(&tok, prompt_of(&row.value), &tokens).unwrap();
            let want: Vec<u32> = serde_json::from_value(expected[format!("{file}:{}", row.origin.line)].clone()).unwrap();
            assert_eq!(ids, want, "{file}:{}", row.origin.line);
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn sft_with_images_targets_only_the_completion() {
    let dir = fixtures().join("images");
    let (tok, cfg) = (Tokenizer::from_dir(&dir).unwrap(), ImageConfig::from_dir(&dir).unwrap());
    let rows = read_rows(&fixtures().join("data/images.jsonl"), &ReadOptions::default()).unwrap().rows;
    for row in &rows[..3] {
        let tokens: Vec<usize> = load_images(row, &cfg).unwrap().iter().map(|p| p.num_tokens(cfg.merge_size)).collect();
        let prompt = prompt_ids_with_images(&tok, prompt_of(&row.value), &tokens).unwrap();
        let out = tokenize_sft_with_images(&tok, &row.value, &tokens, &SftOptions::default()).unwrap().example;
        assert_eq!(&out.input_ids[..prompt.len()], prompt.as_slice());
        assert!(out.targets[..prompt.len()].iter().all(|t| !t) && out.targets[prompt.len()..].iter().all(|t| *t));
        // A text completion ends with EOS; a conversational one with the template's end of the
        // assistant turn, `<|im_end|>` and its newline (TRL 1.x).
        let end = match prompt_of(&row.value) {
            Prompt::Text(_) => "<|im_end|>",
            Prompt::Messages(_) => "<|im_end|>\n",
        };
        assert!(tok.decode(&out.input_ids[prompt.len()..], false).unwrap().ends_with(end), "{}", row.origin.line);
        // A text-only model must not silently drop the image.
        let err = tokenize_sft(&tok, &row.value, &SftOptions::default()).err().unwrap().to_string();
        assert!(err.contains("image"), "{err}");
    }
}

/// Bad image rows fail with the row's `file:line`.
#[test]
fn image_row_errors_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
    std::fs::copy(fixtures().join("images/tiny.png"), dir.path().join("ok.png")).unwrap();
    let cases: [(&str, &str); 7] = [
        (r#"{"image": "missing.png", "prompt": "p", "completion": "c"}"#, "d.jsonl:1: image 1 not found"),
        (
            r#"{"image": "ok.png", "prompt": "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>", "completion": "c"}"#,
            "d.jsonl:1: the prompt has 2 image placeholders but the row has only 1",
        ),
        (
            r#"{"images": ["ok.png", "ok.png"], "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "t"}]}], "completion": "c"}"#,
            "the row has 2 images but its prompt places only 1",
        ),
        (r#"{"prompt": [{"role": "user", "content": [{"type": "image"}]}], "completion": "c"}"#, "but the row has no \"image\""),
        (r#"{"image": "ok.png", "images": ["ok.png"], "prompt": "p", "completion": "c"}"#, "either \"image\" or \"images\""),
        (r#"{"image": 3, "prompt": "p", "completion": "c"}"#, "\"image\" must be a path"),
        (r#"{"image": "ok.png", "text": "t"}"#, "a {\"text\"} row cannot carry images"),
    ];
    let data = dir.path().join("d.jsonl");
    for (line, want) in cases {
        std::fs::write(&data, line).unwrap();
        let err = read_rows(&data, &ReadOptions::default()).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    std::fs::write(&data, "\n{\"image\": \"bad.png\", \"prompt\": \"p\", \"completion\": \"c\"}\n").unwrap();
    let rows = read_rows(&data, &ReadOptions::default()).unwrap().rows;
    let err = load_images(&rows[0], &ImageConfig::default()).unwrap_err().to_string();
    assert!(err.contains("d.jsonl:2: image 1 (") && err.contains("bad.png): cannot decode image"), "{err}");
    // A tokenizer without the vision tokens says so.
    let text_tok = Tokenizer::from_dir(&fixtures().join("qwen2-tiny")).unwrap();
    let err = prompt_ids_with_images(&text_tok, &Prompt::Text("p".into()), &[4]).unwrap_err().to_string();
    assert!(err.contains("no <|image_pad|> token"), "{err}");
}

/// A conversation with an image trains on its assistant turns only, the image expanded in the
/// user turn where its part stands.
#[test]
fn conversation_with_an_image_masks_all_but_the_assistant() {
    let dir = fixtures().join("images");
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let row: serde_json::Value = serde_json::json!({
        "image": "x.png",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read "}, {"type": "image"}]},
            {"role": "assistant", "content": "Total 7.00"},
        ],
    });
    let row = ladder_data::parse_row(&row).unwrap();
    let out = tokenize_sft_with_images(&tok, &row, &[5], &SftOptions::default()).unwrap().example;
    let pad = tok.token_id(ladder_data::IMAGE_PAD).unwrap();
    assert_eq!(out.input_ids.iter().filter(|t| **t == pad).count(), 5);
    let first_target = out.targets.iter().position(|t| *t).unwrap();
    assert!(out.input_ids[..first_target].contains(&pad), "the image is in the masked prompt");
    let target_text = tok.decode(&out.input_ids[first_target..], false).unwrap();
    assert!(target_text.starts_with("Total 7.00<|im_end|>"), "{target_text:?}");
}

/// The committed rendered pages (datasets/demo-vlm) load and preprocess with Qwen2.5-VL's
/// default bounds.
#[test]
fn demo_vlm_pages_preprocess() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo-vlm");
    let cfg = ImageConfig::default();
    let mut fits = ladder_data::FitCounts::default();
    for file in ["ocr.jsonl", "domain.jsonl"] {
        let rows = read_rows(&root.join(file), &ReadOptions::default()).unwrap().rows;
        assert_eq!(rows.len(), 16);
        for row in &rows {
            for image in load_images(row, &cfg).unwrap() {
                assert_eq!(image.pixel_values.len(), image.grid_thw.iter().product::<usize>() * cfg.patch_len());
                fits.record(image.fit);
            }
        }
    }
    assert_eq!(fits.exact + fits.rounded + fits.downscaled + fits.upscaled, 32);
}
