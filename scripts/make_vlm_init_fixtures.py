#!/usr/bin/env python3
"""Checks that a model made by `ladder init --arch qwen2_5_vl` is one transformers makes and
loads, and records the numbers tests/vlm_init.rs holds ladder to. Run by hand after a release
build, never in CI (CI has no Python ML packages; the output is committed):

    pip install torch transformers pillow
    cargo build --release && python3 scripts/make_vlm_init_fixtures.py

It runs `ladder init` with INIT_ARGS (the same arguments as the Rust test, which makes the
same folder: the tokenizer training and the seeded weights are deterministic), then checks:
- `Qwen2_5_VLForConditionalGeneration.from_pretrained` finds every weight it needs and no
  other (no missing, unexpected or mismatched keys);
- `config.json` is what transformers writes: a model built from it and saved with
  `save_pretrained` gives the same JSON (`transformers_version` aside);
- the tokenizer and image processor load (`Qwen2_5_VLProcessor`); the chat template places
  an image part as `<|vision_start|><|image_pad|><|vision_end|>`.
It writes `tests/fixtures/expected/vlm_init.safetensors`: for a conversation with two images (a
rendered demo page and a photo) the processor's input ids, pixel values, image grids, and the
model's logits; and `vlm_init.json` with the rendered prompt text.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (AutoImageProcessor, AutoTokenizer, ProcessorMixin, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
LADDER = os.environ.get("LADDER", str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "ladder"))
# Keep in step with INIT_ARGS in tests/vlm_init.rs (paths relative to tests/fixtures/).
INIT_ARGS = [
    "--arch", "qwen2_5_vl", "--tokenizer-data", "data/sft.jsonl", "--tokenizer-data", "data/text.jsonl",
    "--vocab-size", "400", "--hidden-size", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
    "--vision-hidden-size", "32", "--vision-layers", "2", "--vision-heads", "2", "--patch-size", "4",
    "--window-size", "16", "--min-pixels", "64", "--max-pixels", "1024", "--init-std", "0.1", "--seed", "3",
]
IMAGES = [REPO / "datasets" / "demo-vlm" / "pages" / "ocr-0004.png", FIXTURES / "images" / "large.png"]  # PNG: JPEG decoders differ by a few grey levels
MESSAGES = [{"role": "user", "content": [
    {"type": "image"}, {"type": "text", "text": "Transcribe the page, then compare it with "},
    {"type": "image"}, {"type": "text", "text": "."},
]}]


def init(out):
    args = [LADDER, "init", "--out", str(out)] + INIT_ARGS
    subprocess.run(args, cwd=FIXTURES, check=True, env={**os.environ, "RUST_LOG": "warn"})


def check_loads(dir):
    model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading reported {bad}"
    return model.eval()


def check_config_round_trip(dir):
    """A model built from the folder's config and saved writes the same config.json (loading
    with a dtype would add `dtype` to the sub-configs, so the model is built, not loaded)."""
    config = Qwen2_5_VLConfig.from_pretrained(dir)
    with tempfile.TemporaryDirectory() as tmp:
        Qwen2_5_VLForConditionalGeneration(config).save_pretrained(tmp)
        theirs = json.loads((Path(tmp) / "config.json").read_text())
    ours = json.loads((Path(dir) / "config.json").read_text())
    theirs.pop("transformers_version", None)
    assert ours == theirs, "config.json differs from transformers' save_pretrained:\n" + "\n".join(
        f"  {k}: ours {ours.get(k)!r} theirs {theirs.get(k)!r}"
        for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))


def load_processor(dir):
    """The folder's `Qwen2_5_VLProcessor`, built from its parts: `AutoProcessor` would also
    load the video processor, which needs torchvision (not installed here; images never touch
    it). The chat template is the tokenizer's, as `ladder init` wrote it."""
    image_processor = AutoImageProcessor.from_pretrained(dir, backend="pil")
    tokenizer = AutoTokenizer.from_pretrained(dir)
    ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp) / "vlm"
        init(dir)
        model = check_loads(dir)
        check_config_round_trip(dir)
        processor = load_processor(dir)
        text = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
        assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2, text
        images = [Image.open(p).convert("RGB") for p in IMAGES]
        inputs = processor(text=[text], images=images, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits.float().contiguous()
        out = {
            "input_ids": inputs["input_ids"].long().contiguous(),
            "pixel_values": inputs["pixel_values"].float().contiguous(),
            "image_grid_thw": inputs["image_grid_thw"].long().contiguous(),
            "logits": logits,
        }
        save_file(out, str(FIXTURES / "expected" / "vlm_init.safetensors"), metadata={"format": "pt"})
        record = {"prompt": text, "images": [str(p.relative_to(REPO)) for p in IMAGES],
                  "params": sum(p.numel() for p in model.parameters())}
        (FIXTURES / "expected" / "vlm_init.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        print(f"ok: {record['params']} parameters, grids {inputs['image_grid_thw'].tolist()}, "
              f"{inputs['input_ids'].shape[1]} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
