#!/usr/bin/env python3
"""Checks the committed datasets: they regenerate byte for byte, every row is well formed,
every CPF/CNPJ in the clean text has valid check digits, and no evaluation page leaks into
train. Standard library only; exits non-zero on the first failure.

    python3 datasets/check.py
"""

import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from generate import DOMAIN_INSTRUCTION, OCR_INSTRUCTION, cnpj_digits, cpf_digits  # noqa: E402

FILES = ["general/train.jsonl", "ocr/train.jsonl", "ocr/validation.jsonl",
         "domain/train.jsonl", "domain/validation.jsonl", "domain/test.jsonl"]
KEYS = ["header", "margin", "footer", "text"]
CPF = re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?!\d)")
CNPJ = re.compile(r"(?<![\d.])\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}(?!\d)")


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if b"\r" in data:
        fail(f"{path}: carriage return found")
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def digits(s):
    return [int(c) for c in s if c.isdigit()]


def check_ids(where, text):
    """Returns the CPFs and CNPJs in a clean text, after checking their check digits."""
    found = []
    for m in CPF.findall(text):
        d = digits(m)
        if cpf_digits(d[:9]) != d or len(set(d)) == 1:
            fail(f"{where}: invalid CPF {m}")
        found.append(m)
    for m in CNPJ.findall(text):
        d = digits(m)
        if cnpj_digits(d[:12]) != d:
            fail(f"{where}: invalid CNPJ {m}")
        found.append(m)
    return found


def main():
    # 1. Byte-identical regeneration, under a different hash seed to prove no hash dependence.
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONHASHSEED="12345")
        subprocess.run([sys.executable, os.path.join(HERE, "generate.py"), "all", "--out", tmp],
                       check=True, env=env, stderr=subprocess.DEVNULL)
        for f in FILES:
            with open(os.path.join(HERE, f), "rb") as a, open(os.path.join(tmp, f), "rb") as b:
                if a.read() != b.read():
                    fail(f"{f} differs from a fresh `generate.py all` (regenerate and commit)")
    print("regeneration: byte-identical")

    # 2. Rows.
    rows = {f: read(os.path.join(HERE, f)) for f in FILES}
    for i, r in enumerate(rows["general/train.jsonl"]):
        if list(r) != ["text"] or not 100 <= len(r["text"]) <= 600:
            fail(f"general row {i}: keys {list(r)} or length {len(r.get('text', ''))}")
    for f in ["ocr/train.jsonl", "ocr/validation.jsonl"]:
        for i, r in enumerate(rows[f]):
            if list(r) != ["prompt", "completion"]:
                fail(f"{f} row {i}: keys {list(r)}")
            if not r["prompt"].startswith(OCR_INSTRUCTION + "\n"):
                fail(f"{f} row {i}: prompt does not start with the instruction")
            if not 150 <= len(r["completion"]) <= 700:
                fail(f"{f} row {i}: clean text of {len(r['completion'])} characters")
            check_ids(f"{f} row {i}", r["completion"])
    ids = {}
    for f in ["domain/train.jsonl", "domain/validation.jsonl", "domain/test.jsonl"]:
        ids[f] = set()
        for i, r in enumerate(rows[f]):
            if list(r) != ["prompt", "completion"]:
                fail(f"{f} row {i}: keys {list(r)}")
            if not r["prompt"].startswith(DOMAIN_INSTRUCTION + "\n"):
                fail(f"{f} row {i}: prompt does not start with the instruction")
            page = json.loads(r["completion"])
            if list(page) != KEYS or not all(isinstance(page[k], str) for k in KEYS):
                fail(f"{f} row {i}: completion keys {list(page)}")
            if r["completion"] != json.dumps(page, ensure_ascii=False):
                fail(f"{f} row {i}: completion is not json.dumps(..., ensure_ascii=False)")
            if not 300 <= len(page["text"]) <= 1200:
                fail(f"{f} row {i}: text of {len(page['text'])} characters")
            if not page["header"] or not page["footer"]:
                fail(f"{f} row {i}: empty header or footer")
            for k in KEYS:
                ids[f].update(check_ids(f"{f} row {i} {k}", page[k]))
    n_ids = sum(len(v) for v in ids.values())
    print(f"rows: well formed; {n_ids} distinct CPF/CNPJ numbers with valid check digits")

    # 3. No leakage: no evaluation page (or person number) appears in train.
    def comps(f):
        return set(r["completion"] for r in rows[f])

    for ev, tr in [("ocr/validation.jsonl", "ocr/train.jsonl"),
                   ("domain/validation.jsonl", "domain/train.jsonl"),
                   ("domain/test.jsonl", "domain/train.jsonl"),
                   ("domain/test.jsonl", "domain/validation.jsonl")]:
        if comps(ev) & comps(tr):
            fail(f"{ev} shares completions with {tr}")
    for f in FILES[1:]:
        if len(comps(f)) != len(rows[f]):
            fail(f"{f} has duplicate completions")
    for ev in ["domain/validation.jsonl", "domain/test.jsonl"]:
        shared = ids[ev] & ids["domain/train.jsonl"]
        if shared:
            fail(f"{ev} shares CPF/CNPJ numbers with train: {sorted(shared)[:3]}")
    print("splits: no shared completions or CPF/CNPJ between train, validation and test")
    for f in FILES:
        print(f"  {f}: {len(rows[f])} rows, {os.path.getsize(os.path.join(HERE, f)):,} bytes")
    print("OK")


if __name__ == "__main__":
    main()
