#!/usr/bin/env python3
"""Builds the Qwen2.5-VL test fixtures under tests/fixtures/ with transformers and PEFT
themselves. Run by hand, never in CI (after scripts/make_fixtures.py, whose qwen2-tiny
tokenizer it extends):

    pip install torch transformers peft
    python3 scripts/make_vlm_fixtures.py

What it writes (see tests/fixtures/README.md):
- `qwen2_5-vl-tiny/`: a random `Qwen2_5_VLForConditionalGeneration`, f32, untied head, two
  vision blocks (block 0 windowed, block 1 full attention; windows of 2x2 merged tokens, so an
  image of 3x5 merged tokens is cut into full and partial windows), patch 4, temporal patch 2,
  2x2 spatial merge, mrope sections [2, 3, 3]; the qwen2-tiny tokenizer with Qwen's vision
  special tokens appended;
- `qwen2_5-vl-tiny-lora-peft/`: a PEFT LoRA adapter (r 4, alpha 8, the language model's seven
  projections, selected by a regex so that the vision MLPs, which share the names
  gate_proj/up_proj/down_proj, are left alone), random non-zero B;
- `qwen2_5-vl-tiny-vision-lora-peft/`: a PEFT LoRA adapter on the language model's q/v
  projections and every linear of the vision blocks (qkv, proj, gate/up/down), random B;
- `expected/vlm_logits.safetensors`: for the cases `one_image` and `two_images`, the input ids,
  pixel values (random, in the processor's flattened `[patches, C*T*P*P]` layout), image grids
  `(t, h, w)`, transformers' 3-row mrope position ids, and the logits of transformers and of PEFT with each adapter.
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
NAME = "qwen2_5-vl-tiny"
ADAPTER = "qwen2_5-vl-tiny-lora-peft"
VISION_ADAPTER = "qwen2_5-vl-tiny-vision-lora-peft"
SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
PATCH, TEMPORAL, MERGE, CHANNELS = 4, 2, 2, 3
# The language model's projections only: `all-linear` or bare names would also catch the
# vision blocks' gate_proj/up_proj/down_proj.
VISION_TARGETS = (r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
                  r"|model\.visual\.blocks\.\d+\.(attn|mlp)\.(qkv|proj|gate_proj|up_proj|down_proj)")
LM_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def write_tokenizer(dir):
    """qwen2-tiny's tokenizer with the vision special tokens appended (ids 384..387)."""
    src = ROOT / "qwen2-tiny"
    tok = PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json"), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.backend_tokenizer.save(str(dir / "tokenizer.json"))
    config = json.loads((src / "tokenizer_config.json").read_text())
    (dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return tok


def make_model(seed=7):
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=400,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            initializer_range=0.1,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            use_sliding_window=False,
            bos_token_id=None,
            eos_token_id=2,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            in_channels=CHANNELS,
            patch_size=PATCH,
            temporal_patch_size=TEMPORAL,
            spatial_merge_size=MERGE,
            window_size=16,  # 16 // 2 // 4 = windows of 2x2 merged tokens
            fullatt_block_indexes=[1],
            out_hidden_size=64,
            initializer_range=0.1,
        ),
        image_token_id=386,
        video_token_id=387,
        vision_start_token_id=384,
        vision_end_token_id=385,
        tie_word_embeddings=False,
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or "ln_q" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    dir = ROOT / NAME
    if dir.exists():
        shutil.rmtree(dir)
    model.save_pretrained(dir)
    tok = write_tokenizer(dir)
    assert tok.convert_tokens_to_ids(SPECIALS) == [384, 385, 386, 387], tok.convert_tokens_to_ids(SPECIALS)
    return tok


def load(adapter=None):
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ROOT / NAME, dtype=torch.float32,
                                                               attn_implementation="eager")
    model.eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, ROOT / adapter)
        model.eval()
    return model


def make_adapter(name, targets, seed):
    base = load()
    base.name_or_path = NAME
    torch.manual_seed(seed)
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                      target_modules=targets)
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.1 * torch.randn_like(p))
    dir = ROOT / name
    if dir.exists():
        shutil.rmtree(dir)
    peft_model.save_pretrained(dir)
    # PEFT's model card template names this machine's path and nothing else of use.
    (dir / "README.md").unlink(missing_ok=True)


def image_ids(tok, grid):
    t, h, w = grid
    n = t * h * w // (MERGE * MERGE)
    return [384] + [386] * n + [385]


def case_ids(tok, grids, texts):
    """ChatML user turn: text[0] image[0] text[1] image[1] ... then the assistant prompt."""
    ids = tok("<|im_start|>user\n", add_special_tokens=False)["input_ids"]
    for i, text in enumerate(texts):
        ids += tok(text, add_special_tokens=False)["input_ids"]
        if i < len(grids):
            ids += image_ids(tok, grids[i])
    ids += tok("<|im_end|>\n<|im_start|>assistant\nIt shows", add_special_tokens=False)["input_ids"]
    return ids


def expected(tok):
    cases = {
        # 6x10 patches: 3x5 merged tokens, windows of 2x2 merged tokens (full and partial).
        "one_image": ([(1, 6, 10)], ["Look: ", " What is it?"]),
        # Two sizes, text between and after.
        "two_images": ([(1, 4, 8), (1, 6, 6)], ["First ", " and second ", " compared."]),
    }
    base, peft_model, vision_peft = load(), load(ADAPTER), load(VISION_ADAPTER)
    out = {}
    gen = torch.Generator().manual_seed(3)
    for key, (grids, texts) in cases.items():
        ids = torch.tensor([case_ids(tok, grids, texts)])
        patches = sum(t * h * w for t, h, w in grids)
        pixel_values = torch.randn(patches, CHANNELS * TEMPORAL * PATCH * PATCH, generator=gen)
        grid_thw = torch.tensor(grids)
        # The processor's mm_token_type_ids: 1 on image pads (transformers needs them for mrope).
        mm = (ids == 386).int()
        inputs = dict(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid_thw, mm_token_type_ids=mm)
        with torch.no_grad():
            positions, _ = base.model.get_rope_index(ids, mm, image_grid_thw=grid_thw)
            out[f"{key}.logits"] = base(**inputs).logits.float().contiguous()
            out[f"{key}+lora-peft.logits"] = peft_model(**inputs).logits.float().contiguous()
            out[f"{key}+vision-lora-peft.logits"] = vision_peft(**inputs).logits.float().contiguous()
        out[f"{key}.input_ids"] = ids.long()
        out[f"{key}.pixel_values"] = pixel_values.float().contiguous()
        out[f"{key}.image_grid_thw"] = grid_thw.long()
        out[f"{key}.position_ids"] = positions.long().contiguous()
    save_file(out, str(ROOT / "expected" / "vlm_logits.safetensors"), metadata={"format": "pt"})


def main():
    tok = make_model()
    make_adapter(ADAPTER, LM_TARGETS, seed=11)
    make_adapter(VISION_ADAPTER, VISION_TARGETS, seed=13)
    expected(tok)
    for path in [ROOT / NAME, ROOT / ADAPTER, ROOT / VISION_ADAPTER, ROOT / "expected" / "vlm_logits.safetensors"]:
        size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.iterdir()))
        print(f"{path.relative_to(ROOT)}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
