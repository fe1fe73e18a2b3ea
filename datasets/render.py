#!/usr/bin/env python3
"""Renders the demo's text documents to scanned-looking page images, for vision-language
fine-tuning (Qwen2.5-VL style `{"image", "prompt", "completion"}` rows).

The clean side of the existing sets is the page content: `ocr/train.jsonl` completions
(general documents: letters, invoices, notices...) and `domain/train.jsonl` completions
(Brazilian-Portuguese records, JSON with header / margin / footer / text, laid out as a page
with the margin notes in a side column). Each page is typeset with the bundled DejaVu Serif,
then scanned: uneven ink, paper tone, a slight skew, blur and speckle. The row's `prompt` is an
instruction and its `completion` the clean text (ocr) or the JSON (domain), unchanged.

    python3 datasets/render.py                       # the committed datasets/demo-vlm (seed 0)
    python3 datasets/render.py --rows 500 --seed 1 --out /tmp/vlm

Needs Pillow and numpy. Deterministic: all randomness comes from seeded generators, so a seed
and row count give the same pages (byte for byte with the same Pillow/zlib).
"""

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
FONT = HERE / "fonts/DejaVuSerif.ttf"
WIDTH = 480
MARGIN = 18
PROMPTS = {
    "ocr": "Transcribe the page:",
    "domain": "Transcribe the page as JSON with the keys header, margin, footer, text:",
}


def wrap(draw, text, font, width):
    """Greedy word wrap to `width` pixels; a paragraph is one line of the clean text."""
    lines = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            cand = word if not line else line + " " + word
            if line and draw.textlength(cand, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = cand
        lines.append(line)
    return lines


class Page:
    """A white page that grows downwards as blocks of text are set on it."""

    def __init__(self, height):
        self.img = Image.new("L", (WIDTH, height), 255)
        self.draw = ImageDraw.Draw(self.img)

    def block(self, lines, font, x, y, ink, center_width=None):
        step = font.size + 4
        for line in lines:
            dx = 0
            if center_width is not None:
                dx = max(0, (center_width - self.draw.textlength(line, font=font)) / 2)
            self.draw.text((x + dx, y), line, font=font, fill=ink)
            y += step
        return y


def measure(lines, font):
    return len(lines) * (font.size + 4)


def typeset(kind, completion, rng):
    """The clean page, as a greyscale image."""
    body = ImageFont.truetype(str(FONT), rng.choice([12, 13]))
    small = ImageFont.truetype(str(FONT), 10)
    big = ImageFont.truetype(str(FONT), 14)
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    ink = lambda: rng.randint(10, 60)
    if kind == "ocr":
        lines = wrap(scratch, completion, body, WIDTH - 2 * MARGIN)
        page = Page(2 * MARGIN + measure(lines, body))
        page.block(lines, body, MARGIN, MARGIN, ink())
        return page.img
    doc = json.loads(completion)
    column = 130 if doc["margin"] else 0
    text_w = WIDTH - 2 * MARGIN - (column + 10 if column else 0)
    header = wrap(scratch, doc["header"], big, WIDTH - 2 * MARGIN)
    text = wrap(scratch, doc["text"], body, text_w)
    margin = wrap(scratch, doc["margin"], small, column) if column else []
    footer = wrap(scratch, doc["footer"], small, WIDTH - 2 * MARGIN)
    middle = max(measure(text, body), measure(margin, small))
    height = 2 * MARGIN + measure(header, big) + 10 + middle + 12 + measure(footer, small)
    page = Page(height)
    y = page.block(header, big, MARGIN, MARGIN, ink(), center_width=WIDTH - 2 * MARGIN) + 10
    page.block(text, body, MARGIN, y, ink())
    if column:
        # Margin notes and stamps: another pen, often fainter.
        page.block(margin, small, WIDTH - MARGIN - column, y + rng.randint(0, 20), rng.randint(40, 110))
    page.block(footer, small, MARGIN, y + middle + 12, ink())
    return page.img


def scan(img, rng, nrng):
    """Scanner and printer artefacts on a clean page."""
    w, h = img.size
    a = np.asarray(img, dtype=np.float32) / 255.0
    # Uneven ink: a smooth field (a coarse random grid, upsampled) scales how dark ink prints.
    grid = Image.fromarray((nrng.uniform(0.55, 1.0, (4, 3)) * 255).astype(np.uint8), "L")
    field = np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
    a = 1.0 - (1.0 - a) * field
    # Paper tone.
    a = a * rng.uniform(0.90, 0.98)
    img = Image.fromarray(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    # Slight skew, the uncovered corners filled with the paper tone.
    paper = int(255 * 0.94)
    img = img.rotate(rng.uniform(-1.5, 1.5), resample=Image.BICUBIC, expand=False, fillcolor=paper)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    # Speckle: sparse dark dots (dust) and light dropouts.
    a = np.asarray(img, dtype=np.uint8).copy()
    n = int(w * h * rng.uniform(0.0005, 0.002))
    ys, xs = nrng.integers(0, h, n), nrng.integers(0, w, n)
    a[ys, xs] = nrng.integers(0, 90, n).astype(np.uint8)
    m = n // 2
    ys, xs = nrng.integers(0, h, m), nrng.integers(0, w, m)
    a[ys, xs] = np.maximum(a[ys, xs], 200)
    return Image.fromarray(a, "L")


def read(path, n, rng):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rng.sample(rows, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16, help="pages per kind (ocr, domain)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "demo-vlm")
    args = ap.parse_args()
    (args.out / "pages").mkdir(parents=True, exist_ok=True)
    for kind in ["ocr", "domain"]:
        rng = random.Random(f"{kind}-{args.seed}")
        nrng = np.random.default_rng([args.seed, 0 if kind == "ocr" else 1])
        out = []
        for i, row in enumerate(read(HERE / kind / "train.jsonl", args.rows, rng)):
            name = f"pages/{kind}-{i:04d}.png"
            scan(typeset(kind, row["completion"], rng), rng, nrng).save(args.out / name, optimize=True)
            out.append({"image": name, "prompt": PROMPTS[kind], "completion": row["completion"]})
        with open(args.out / f"{kind}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for r in out:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    total = sum(p.stat().st_size for p in (args.out / "pages").glob("*.png"))
    print(f"{args.out}: {2 * args.rows} pages, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
