#!/usr/bin/env python3
"""Builds the image-preprocessing fixtures: a few small images under tests/fixtures/images/
and what transformers' slow Qwen2-VL image processor (`Qwen2VLImageProcessorPil`, the one
`use_fast=False` selects; PIL bicubic resize) makes of them, for `tests/image.rs`.

    pip install transformers pillow numpy safetensors
    python3 scripts/make_image_fixtures.py

The images are drawn here (gradients, rendered text, a transparent corner) and are chosen to
cover each branch of `smart_resize` under the small bounds of
`tests/fixtures/images/preprocessor_config.json` (min 3,136, max 12,544 pixels):

| file | size (w×h) | branch |
|---|---|---|
| exact.png | 112×84 | already a multiple of 28, within bounds: no resampling |
| rounded.png | 150×97, RGBA | rounded to 140×84; transparency composited on white |
| large.png | 300×200 | over max_pixels: scaled down |
| tiny.png | 40×25, grey | under min_pixels: scaled up |
| photo.jpg | 180×130, JPEG q 85 | over max_pixels: scaled down, JPEG decoding |

Writes tests/fixtures/expected/image_preprocess.safetensors with, per image `<name>`:
`<name>.pixel_values` (f32 `[patches, 1176]`), `<name>.image_grid_thw` (i64 `[1, 3]`) and
`<name>.decoded` (u8 `[h, w, 3]`, the RGB pixels PIL decoded, so JPEG decoder differences can
be told apart from preprocessing differences).

It also makes tests/fixtures/images/ a processor folder: qwen2-tiny's tokenizer with Qwen2-VL's
`<|vision_start|>`, `<|vision_end|>`, `<|image_pad|>` special tokens and chat template. With it,
transformers' `Qwen2_5_VLProcessor` tokenises the prompts of tests/fixtures/data/images.jsonl
and images.parquet (image placeholders expanded to one token per merged patch); the ids go to
tests/fixtures/expected/image_prompts.json.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from safetensors.numpy import save_file
import pyarrow as pa
import pyarrow.parquet as pq
from transformers import AutoImageProcessor, PreTrainedTokenizerFast, ProcessorMixin, Qwen2_5_VLProcessor
from transformers.image_transforms import convert_to_rgb

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests/fixtures/images"
EXPECTED = ROOT / "tests/fixtures/expected/image_preprocess.safetensors"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

CONFIG = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "min_pixels": 3136,
    "max_pixels": 12544,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 0.00392156862745098,
    "do_normalize": True,
    "do_convert_rgb": True,
}


# Qwen2-VL's chat template (as in Qwen/Qwen2-VL-7B-Instruct), without the video parts.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gradient(w, h, seed):
    """A smooth two-axis colour gradient with a little seeded noise (exercises every filter tap)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin((x + 2 * y) / 7.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def text(img, lines, size, fill=(0, 0, 0)):
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size)
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * (size + 3)), line, font=font, fill=fill)
    return img


def make_images():
    IMAGES.mkdir(parents=True, exist_ok=True)
    text(gradient(112, 84, 1), ["Invoice 42", "R$ 1.850,00", "São Paulo"], 13).save(IMAGES / "exact.png")

    rgba = text(gradient(150, 97, 2), ["Certidão", "nº 0173", "livro A-9"], 16).convert("RGBA")
    alpha = np.full((97, 150), 255, np.uint8)
    alpha[60:, 100:] = np.linspace(0, 255, 50, dtype=np.uint8)[None, :]  # a fading corner
    alpha[:10, :10] = 0
    rgba.putalpha(Image.fromarray(alpha, "L"))
    rgba.save(IMAGES / "rounded.png")

    page = Image.new("RGB", (300, 200), (250, 248, 240))
    text(page, ["PROCURAÇÃO PÚBLICA", "Outorgante: Maria Silva", "CPF 123.456.789-09", "Santos/SP, 12/03/2024"], 18, (20, 20, 60))
    ImageDraw.Draw(page).rectangle((200, 120, 290, 190), outline=(180, 0, 0), width=3)
    page.save(IMAGES / "large.png")

    text(gradient(40, 25, 3), ["ok"], 14, (255, 255, 255)).convert("L").save(IMAGES / "tiny.png")

    text(gradient(180, 130, 4), ["Receipt", "2 x coffee  7.00", "Total      7.00"], 15).save(IMAGES / "photo.jpg", quality=85)
    (IMAGES / "preprocessor_config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")


def main():
    make_images()
    processor = AutoImageProcessor.from_pretrained(IMAGES, backend="pil")
    assert type(processor).__name__ == "Qwen2VLImageProcessorPil", type(processor)
    tensors = {}
    for name in ["exact.png", "rounded.png", "large.png", "tiny.png", "photo.jpg"]:
        image = Image.open(IMAGES / name)
        out = processor(images=image, return_tensors="np")
        key = name.split(".")[0]
        tensors[f"{key}.pixel_values"] = np.ascontiguousarray(out["pixel_values"], dtype=np.float32)
        tensors[f"{key}.image_grid_thw"] = np.ascontiguousarray(out["image_grid_thw"], dtype=np.int64)
        tensors[f"{key}.decoded"] = np.ascontiguousarray(convert_to_rgb(Image.open(IMAGES / name), return_numpy=True))
        print(name, image.size, image.mode, "->", out["image_grid_thw"].tolist(), out["pixel_values"].shape)
    save_file(tensors, str(EXPECTED))
    print(EXPECTED, EXPECTED.stat().st_size, "bytes")
    make_prompts(processor)


def make_prompts(image_processor):
    tok = PreTrainedTokenizerFast.from_pretrained(ROOT / "tests/fixtures/qwen2-tiny")
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(IMAGES)
    # Without torchvision there is no video processor, and the processor's class check would
    # fail on its absence; images never touch it.
    ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
    proc = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    data = ROOT / "tests/fixtures/data"
    user = lambda parts: [{"role": "user", "content": parts}]
    rows = [
        # Plain prompt + one image: the block goes in front of the text.
        {"image": "../images/large.png", "prompt": "Transcribe the page.", "completion": "PROCURAÇÃO PÚBLICA"},
        # Conversational, image part before the text (TRL's form), "images" list.
        {"images": ["../images/photo.jpg"], "prompt": user([{"type": "image"}, {"type": "text", "text": "What is the total?"}]),
         "completion": [{"role": "assistant", "content": "7.00"}]},
        # Two images placed inside the text.
        {"images": ["../images/exact.png", "../images/tiny.png"],
         "prompt": user([{"type": "text", "text": "Compare "}, {"type": "image"}, {"type": "text", "text": " with "}, {"type": "image"}]),
         "completion": [{"role": "assistant", "content": "Different."}]},
        # A preference row with an image.
        {"image": "../images/rounded.png", "prompt": "Read it:", "chosen": "Certidão nº 0173", "rejected": "Certidao no 0173"},
    ]
    with open(data / "images.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    expected = {}

    def ids(prompt, names):
        images = [Image.open(data / n) for n in names]
        if isinstance(prompt, str):
            text = "<|vision_start|><|image_pad|><|vision_end|>" * len(images) + prompt
        else:
            text = proc.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return list(proc(text=[text], images=images)["input_ids"][0])

    for line, row in enumerate(rows, 1):
        names = row.get("images") or [row["image"]]
        expected[f"images.jsonl:{line}"] = ids(row["prompt"], names)

    # Parquet as Hugging Face `datasets` stores an Image column: struct<bytes, path>; embedded
    # bytes in row 1, a relative path only in row 2.
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": (IMAGES / "photo.jpg").read_bytes(), "path": "photo.jpg"}, {"bytes": None, "path": "../images/tiny.png"}], type=image_type),
        "prompt": ["Read the receipt.", "What does it say?"],
        "completion": ["Total 7.00", "ok"],
    })
    pq.write_table(table, data / "images.parquet")
    expected["images.parquet:1"] = ids("Read the receipt.", ["../images/photo.jpg"])
    expected["images.parquet:2"] = ids("What does it say?", ["../images/tiny.png"])
    (ROOT / "tests/fixtures/expected/image_prompts.json").write_text(json.dumps(expected) + "\n")
    print({k: len(v) for k, v in expected.items()})


if __name__ == "__main__":
    main()
