#!/usr/bin/env python3
"""Builds the committed test fixtures under tests/fixtures/ and the numbers the Rust tests
compare against, with the reference implementations themselves (tokenizers, transformers,
PEFT, PyTorch). Run by hand, never in CI:

    pip install torch transformers peft pyarrow
    python3 scripts/make_fixtures.py
    python3 scripts/make_fixtures.py --only generate   # generation numbers only

What it writes (see tests/fixtures/README.md):
- tokenizers: two byte-level BPE `tokenizer.json` files trained here on a small corpus, one
  ChatML (Qwen2 style, no BOS), one Llama 3 style (BOS added by the post-processor);
- models: `qwen2-tiny` (f32, tied embeddings, q/k/v bias, GQA, rope_theta 1e6),
  `llama-tiny` (bf16, untied, GQA, llama3 RoPE scaling), `mistral-tiny` (f16, sharded,
  sliding window), all random;
- PEFT adapters on qwen2-tiny: `qwen2-tiny-lora-peft` (r 4, all linear layers),
  `qwen2-tiny-rslora-peft` (rsLoRA, q/v), `qwen2-tiny-lora-init` (the start of the LoRA
  parity run), with non-zero B so they change the logits;
- data: JSONL and Parquet rows in TRL's formats;
- expected/: logits (transformers, PEFT), completion log-probs (TRL's tokenisation), SFT
  losses, gradient norms and the loss after three AdamW steps (PyTorch), and greedy
  `model.generate` token ids (plain, LoRA, repetition penalty, extra EOS id).
"""

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
VOCAB = 384

CHATML = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'system' and loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# ---------------------------------------------------------------------------------------------
# Data (TRL's formats). Portuguese accents and a CJK line exercise byte-level BPE.

SFT_ROWS = [
    {"prompt": "Transcreva: Certid\u00e3o de nascimento n\u00ba 1234", "completion": " {\"header\": \"CERTID\u00c3O\", \"text\": \"nascimento 1234\"}"},
    {"prompt": "Clean this OCR line: Tlie qnick brovvn fox", "completion": " The quick brown fox"},
    {"prompt": "What is 2 + 3?", "completion": " 5"},
    {"prompt": "Translate to Portuguese: power of attorney", "completion": " procura\u00e7\u00e3o"},
    {"prompt": "Summarise: The clerk stamped the contract and signed in the margin.", "completion": " A stamped, signed contract."},
    {"prompt": "Fix: rn0dern docurnent", "completion": " modern document"},
    {"prompt": "Name the field: CPF 123.456.789-00", "completion": " cpf"},
    {"prompt": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8:", "completion": " \u3053\u3093\u306b\u3061\u306f"},
]

PAIR_ROWS = [
    {"prompt": "Clean this OCR line: Tlie qnick brovvn fox", "chosen": " The quick brown fox", "rejected": " The the the the the"},
    {"prompt": "Transcreva: Of\u00edcio n\u00ba 12", "chosen": " {\"header\": \"OF\u00cdCIO 12\"}", "rejected": " {\"header\": \"OF\u00cdCIO\", \"header\": \"OF\u00cdCIO\", \"header\":"},
    {"prompt": "What is 2 + 3?", "chosen": " 5", "rejected": " 55555555"},
]

# DPO parity: six pairs (three optimizer steps of two), rejected sides degenerate as in the method.
DPO_ROWS = PAIR_ROWS + [
    {"prompt": "Transcreva: Procura\u00e7\u00e3o", "chosen": " {\"text\": \"procura\u00e7\u00e3o\"}", "rejected": " {\"text\": \"procura procura procura procura"},
    {"prompt": "Fix: rn0dern docurnent", "chosen": " modern document", "rejected": " modern modern modern modern modern"},
    {"prompt": "Name the field: CNPJ 12.345.678/0001-90", "chosen": " cnpj", "rejected": " cpf cpf cpf cpf cpf cpf"},
]

CHAT_ROWS = [
    {"messages": [{"role": "user", "content": "Clean: rnodern"}, {"role": "assistant", "content": "modern"}]},
    {"messages": [
        {"role": "system", "content": "You transcribe records."},
        {"role": "user", "content": "Transcreva: procura\u00e7\u00e3o"},
        {"role": "assistant", "content": "{\"text\": \"procura\u00e7\u00e3o\"}"},
    ]},
    {"messages": [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 4 + 4?"},
        {"role": "assistant", "content": "8"},
    ]},
    {"messages": [{"role": "user", "content": "Fix: Tlie"}, {"role": "assistant", "content": "The"}]},
]

TEXT_ROWS = [
    {"text": "The registry office opened at nine and closed at noon."},
    {"text": "Certid\u00e3o de casamento lavrada no livro B-12, folha 34."},
    {"text": "A quick brown fox jumps over the lazy dog."},
    {"text": "Contrato de loca\u00e7\u00e3o entre as partes abaixo assinadas."},
]

CORPUS_EXTRA = [
    "The quick brown fox jumps over the lazy dog. The clerk stamped the contract.",
    "Certid\u00e3o, procura\u00e7\u00e3o, of\u00edcio, requerimento, contrato de loca\u00e7\u00e3o, cart\u00f3rio.",
    "header margin footer text: the record, the stamp, the signature, the date.",
    "0123456789 CPF CNPJ RG n\u00ba S\u00e3o Paulo Bras\u00edlia Jo\u00e3o Concei\u00e7\u00e3o",
    "You are a helpful assistant. Transcribe the page. Clean this OCR line.",
]


def corpus():
    lines = list(CORPUS_EXTRA)
    for r in SFT_ROWS:
        lines += [r["prompt"], r["completion"]]
    for r in PAIR_ROWS:
        lines += [r["prompt"], r["chosen"], r["rejected"]]
    for r in CHAT_ROWS:
        lines += [m["content"] for m in r["messages"]]
    lines += [r["text"] for r in TEXT_ROWS]
    return lines * 4


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_data():
    d = ROOT / "data"
    write_jsonl(d / "sft.jsonl", SFT_ROWS)
    write_jsonl(d / "pairs.jsonl", PAIR_ROWS)
    write_jsonl(d / "dpo.jsonl", DPO_ROWS)
    write_jsonl(d / "chat.jsonl", CHAT_ROWS)
    write_jsonl(d / "text.jsonl", TEXT_ROWS)
    # Parquet as Hugging Face `datasets` stores these columns: strings, and list<struct>.
    pq.write_table(pa.Table.from_pylist(SFT_ROWS), d / "sft.parquet")
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema([("messages", pa.list_(message))])
    pq.write_table(pa.Table.from_pylist(CHAT_ROWS, schema=schema), d / "chat.parquet")


# ---------------------------------------------------------------------------------------------
# Tokenizers


def train_bpe(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    return tok


def write_tokenizer(dir, style):
    dir.mkdir(parents=True, exist_ok=True)
    if style == "chatml":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = train_bpe(specials)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "chat_template": CHATML,
            "model_max_length": 128,
        }
    else:
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tok = train_bpe(specials)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ])
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "chat_template": LLAMA3,
            "model_max_length": 128,
        }
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.save(str(dir / "tokenizer.json"))
    (dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def load_tokenizer(dir):
    config = json.loads((dir / "tokenizer_config.json").read_text())
    kwargs = {k: v for k, v in config.items() if k.endswith("_token") and v is not None}
    tok = PreTrainedTokenizerFast(tokenizer_file=str(dir / "tokenizer.json"), **kwargs)
    tok.chat_template = config["chat_template"]
    return tok


# ---------------------------------------------------------------------------------------------
# Models


def configs():
    common = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        initializer_range=0.1,
        attention_dropout=0.0,
    )
    qwen = Qwen2Config(
        vocab_size=400,  # larger than the tokenizer, as real Qwen2 checkpoints pad it
        rope_theta=1e6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=2,
        **common,
    )
    llama = LlamaConfig(
        vocab_size=VOCAB,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tie_word_embeddings=False,
        head_dim=16,
        bos_token_id=0,
        eos_token_id=4,
        **common,
    )
    mistral = MistralConfig(
        vocab_size=VOCAB,
        rope_theta=10000.0,
        sliding_window=6,
        tie_word_embeddings=False,
        head_dim=16,
        bos_token_id=0,
        eos_token_id=4,
        **common,
    )
    return {"qwen2-tiny": (qwen, "chatml", torch.float32), "llama-tiny": (llama, "llama3", torch.bfloat16),
            "mistral-tiny": (mistral, "llama3", torch.float16)}


def make_model(name, config, style, dtype, seed):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    # Non-zero norm weights and biases so that every parameter matters in the parity tests.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    dir = ROOT / name
    if dir.exists():
        shutil.rmtree(dir)
    model.to(dtype).save_pretrained(dir, max_shard_size="100KB" if name == "mistral-tiny" else "50MB")
    write_tokenizer(dir, style)


def load(name, adapter=None):
    model = AutoModelForCausalLM.from_pretrained(ROOT / name, dtype=torch.float32, attn_implementation="eager")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, ROOT / adapter, is_trainable=True)
    return model


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(name, seed, b_std, **lora):
    base = load("qwen2-tiny")
    base.name_or_path = "qwen2-tiny"
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", bias="none", lora_dropout=0.0, **lora))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(b_std * torch.randn_like(p))
    dir = ROOT / name
    if dir.exists():
        shutil.rmtree(dir)
    peft_model.save_pretrained(dir)


# ---------------------------------------------------------------------------------------------
# Expected numbers


def completion_ids(tok, prompt, completion):
    """TRL's convention: prompt with special tokens, completion without, EOS appended."""
    p = tok(prompt)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return p, c


def sequence_logp(model, p, c):
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = F.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logp[len(p) - 1:].sum())


def expected_logits(out):
    tensors = {}
    for i, name in enumerate(["qwen2-tiny", "llama-tiny", "mistral-tiny"]):
        g = torch.Generator().manual_seed(100 + i)
        seq = 16 if name == "mistral-tiny" else 12  # longer than Mistral's window of 6
        ids = torch.randint(0, VOCAB, (2, seq), generator=g)
        tensors[f"{name}.input_ids"] = ids
        for key, adapter in [(name, None)] + (
            [("qwen2-tiny+lora-peft", "qwen2-tiny-lora-peft"), ("qwen2-tiny+rslora-peft", "qwen2-tiny-rslora-peft")]
            if name == "qwen2-tiny" else []
        ):
            model = load(name, adapter).eval()
            with torch.no_grad():
                tensors[f"{key}.logits"] = model(input_ids=ids).logits.float().contiguous()
    save_file(tensors, str(out / "logits.safetensors"))


def expected_logprobs(out):
    result = {}
    for key, name, adapter in [
        ("qwen2-tiny", "qwen2-tiny", None),
        ("llama-tiny", "llama-tiny", None),
        ("qwen2-tiny+lora-peft", "qwen2-tiny", "qwen2-tiny-lora-peft"),
    ]:
        tok = load_tokenizer(ROOT / name)
        model = load(name, adapter).eval()
        sft, pairs = [], []
        for i, r in enumerate(SFT_ROWS):
            p, c = completion_ids(tok, r["prompt"], r["completion"])
            sft.append({"index": i, "logp": sequence_logp(model, p, c), "n_tokens": len(c), "prompt_ids": p, "completion_ids": c})
        for i, r in enumerate(PAIR_ROWS):
            p, c = completion_ids(tok, r["prompt"], r["chosen"])
            _, rj = completion_ids(tok, r["prompt"], r["rejected"])
            pairs.append({
                "index": i,
                "logp_chosen": sequence_logp(model, p, c),
                "logp_rejected": sequence_logp(model, p, rj),
                "n_tokens_chosen": len(c),
                "n_tokens_rejected": len(rj),
            })
        result[key] = {"sft": sft, "pairs": pairs}
    (out / "logprobs.json").write_text(json.dumps(result, indent=1) + "\n")


def expected_chat(out):
    """Chat rows rendered by transformers' `apply_chat_template`, and their token ids."""
    result = {}
    for name in ["qwen2-tiny", "llama-tiny"]:
        tok = load_tokenizer(ROOT / name)
        rows = []
        for r in CHAT_ROWS:
            text = tok.apply_chat_template(r["messages"], tokenize=False)
            prompt = tok.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
            rows.append({"text": text, "ids": tok(text, add_special_tokens=False)["input_ids"], "generation_prompt": prompt})
        result[name] = rows
    (out / "chat.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


def batch_loss(model, tok, examples):
    """Mean next-token cross-entropy over completion tokens of a right-padded batch."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    t = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), t), pad)
    mask = torch.zeros((len(examples), t), dtype=torch.long)
    labels = torch.full((len(examples), t), -100)
    for b, (p, c) in enumerate(examples):
        seq = p + c
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        labels[b, len(p) : len(seq)] = torch.tensor(c)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def adamw(model):
    """The trainable parameters and AdamW as the Rust tests configure it: lr 1e-3, eps 1e-8,
    weight decay 0.01 except biases and norm weights (HF Trainer's grouping)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = lambda n: n.endswith("bias") or "norm" in n
    groups = [
        {"params": [p for n, p in params if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0},
    ]
    return params, torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)


def sft_reference(name, adapter):
    """Three AdamW steps (batch 2, file order, clipping 1.0, weight decay 0.01 except biases
    and norms as HF Trainer), then the loss on rows 6-7 with the updated weights."""
    tok = load_tokenizer(ROOT / name)
    model = load(name, adapter).train()
    examples = [completion_ids(tok, r["prompt"], r["completion"]) for r in SFT_ROWS]
    params, opt = adamw(model)
    losses, norms = [], []
    for step in range(3):
        loss = batch_loss(model, tok, examples[2 * step : 2 * step + 2])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
        norms.append(float(norm))
    with torch.no_grad():
        after = float(batch_loss(model, tok, examples[6:8]))
    return {"losses": losses, "grad_norms": norms, "loss_after": after}


def dpo_logps(model, tok, pairs):
    """TRL's layout: 2B right-padded rows, chosen rows then rejected rows. Returns summed
    completion log-probs [2B], per-token log-probs, completion mask, mean logits."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    seqs = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
    t = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), t), pad)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    comp = torch.zeros((len(seqs), t), dtype=torch.bool)
    for b, (p, c) in enumerate(seqs):
        ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        mask[b, : len(p) + len(c)] = 1
        comp[b, len(p) : len(p) + len(c)] = True
    logits = model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1]
    per_token = F.log_softmax(logits, dim=-1).gather(2, ids[:, 1:, None])[..., 0]
    shift_comp = comp[:, 1:]
    per_token = per_token * shift_comp
    return per_token.sum(1), per_token, shift_comp, logits.mean(-1)


def dpo_reference(name, adapter, loss_type, beta=0.1, eps=0.0, sft_weight=0.0):
    """Three DPO steps with TRL 1.x's formulas (trl/trainer/dpo_trainer.py `_compute_loss`):
    sigmoid (with cDPO label smoothing), hinge, ipo (length-normalised), robust, and the "sft"
    term for RPO; the reference is the frozen starting model. Same optimiser settings as
    `sft_reference`. Every metric TRL logs is recorded per step."""
    tok = load_tokenizer(ROOT / name)
    model = load(name, adapter).train()
    ref = load(name, adapter).eval()
    pairs = []
    for r in DPO_ROWS:
        p, c = completion_ids(tok, r["prompt"], r["chosen"])
        _, rj = completion_ids(tok, r["prompt"], r["rejected"])
        pairs.append((p, c, rj))
    params, opt = adamw(model)
    steps = []
    for step in range(3):
        batch = pairs[2 * step : 2 * step + 2]
        logps, per_token, comp, mean_logits = dpo_logps(model, tok, batch)
        with torch.no_grad():
            ref_logps = dpo_logps(ref, tok, batch)[0]
        n = len(batch)
        chosen_lr = logps[:n] - ref_logps[:n]
        rejected_lr = logps[n:] - ref_logps[n:]
        delta = chosen_lr - rejected_lr
        if loss_type == "sigmoid":
            losses = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
        elif loss_type == "hinge":
            losses = torch.relu(1 - beta * delta)
        elif loss_type == "ipo":
            lens = comp.sum(1).float()
            losses = (chosen_lr / lens[:n] - rejected_lr / lens[n:] - 1 / (2 * beta)) ** 2
        elif loss_type == "robust":
            losses = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        loss = losses.mean()
        if sft_weight:
            loss = loss + sft_weight * -per_token[:n][comp[:n]].mean()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            rc, rr = beta * chosen_lr.detach(), beta * rejected_lr.detach()
            steps.append({
                "loss": float(loss),
                "grad_norm": float(norm),
                "rewards/chosen": float(rc.mean()),
                "rewards/rejected": float(rr.mean()),
                "rewards/accuracies": float((rc > rr).float().mean()),
                "rewards/margins": float((rc - rr).mean()),
                "logps/chosen": float(logps[:n].mean()),
                "logps/rejected": float(logps[n:].mean()),
                "logits/chosen": float(mean_logits[:n][comp[:n]].mean()),
                "logits/rejected": float(mean_logits[n:][comp[n:]].mean()),
            })
    return steps


DPO_CASES = {
    "sigmoid": dict(loss_type="sigmoid"),
    "ipo": dict(loss_type="ipo"),
    "hinge": dict(loss_type="hinge"),
    "robust": dict(loss_type="robust", eps=0.1),
    "sigmoid-smoothed": dict(loss_type="sigmoid", eps=0.1),
    "rpo": dict(loss_type="sigmoid", sft_weight=0.5),
}


def expected_dpo(out):
    result = {}
    for case, kwargs in DPO_CASES.items():
        result[f"lora/{case}"] = dpo_reference("qwen2-tiny", "qwen2-tiny-lora-init", **kwargs)
        result[f"full/{case}"] = dpo_reference("qwen2-tiny", None, **kwargs)
    (out / "dpo.json").write_text(json.dumps(result, indent=1) + "\n")
# ---------------------------------------------------------------------------------------------
# Generation (`python3 scripts/make_fixtures.py --only generate`: loads the committed models,
# writes only data/prompts.jsonl and expected/generate.json)

PROMPT_ROWS = [
    {"prompt": "What is 2 + 3?", "reference": "5"},
    {"prompt": "Clean this OCR line: Tlie qnick brovvn fox", "completion": " The quick brown fox"},
    {"prompt": [{"role": "user", "content": "Transcreva: procura\u00e7\u00e3o"}]},
    {"messages": [
        {"role": "system", "content": "You transcribe records."},
        {"role": "user", "content": "Fix: Tlie"},
        {"role": "assistant", "content": "The"},
    ]},
    {"prompt": "Certid\u00e3o"},
]

GENERATE_MAX_NEW_TOKENS = 10


def generation_prompt_ids(tok, row):
    """The prompt as `ladder generate` encodes it: text with special tokens; messages (all but
    a final assistant turn) rendered with the generation prompt, encoded without."""
    if isinstance(row.get("prompt"), str):
        return tok(row["prompt"])["input_ids"]
    messages = row["prompt"] if "prompt" in row else row["messages"]
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def greedy(model, tok, eos, **kwargs):
    """transformers' greedy search, one prompt at a time (no padding), so every row is exactly
    what the model produces for that prompt alone; ladder runs them as one left-padded batch
    and must match row for row."""
    rows = []
    for row in PROMPT_ROWS:
        ids = generation_prompt_ids(tok, row)
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=GENERATE_MAX_NEW_TOKENS,
                eos_token_id=eos,
                pad_token_id=eos[0],
                **kwargs,
            )
        new = out[0, len(ids):].tolist()
        rows.append({
            "prompt_ids": ids,
            "generated_ids": new,
            "text": tok.decode(new, skip_special_tokens=True),
            "finish_reason": "eos" if new and new[-1] in eos else "length",
        })
    return rows


def expected_generate(out):
    write_jsonl(ROOT / "data" / "prompts.jsonl", PROMPT_ROWS)
    cases = {}
    for key, name, adapter in [
        ("qwen2-tiny", "qwen2-tiny", None),
        ("llama-tiny", "llama-tiny", None),
        ("qwen2-tiny+lora-peft", "qwen2-tiny", "qwen2-tiny-lora-peft"),
    ]:
        tok = load_tokenizer(ROOT / name)
        model = load(name, adapter).eval()
        # What ladder stops on: config.json's eos_token_id(s) and the tokenizer's EOS.
        config_eos = model.config.eos_token_id
        eos = sorted(set(([config_eos] if isinstance(config_eos, int) else list(config_eos)) + [tok.eos_token_id]))
        cases[key] = {"eos_token_ids": eos, "rows": greedy(model, tok, eos)}
        if key == "qwen2-tiny":
            penalty = 1.5
            cases["qwen2-tiny/repetition_penalty"] = {
                "eos_token_ids": eos, "repetition_penalty": penalty,
                "rows": greedy(model, tok, eos, repetition_penalty=penalty),
            }
            # An extra EOS id: the third token greedy search picks for the first prompt, so
            # that row (and any other producing it) ends early with finish_reason eos.
            extra = cases["qwen2-tiny"]["rows"][0]["generated_ids"][2]
            cases["qwen2-tiny/eos"] = {"eos_token_ids": eos + [extra], "rows": greedy(model, tok, eos + [extra])}
    result = {"max_new_tokens": GENERATE_MAX_NEW_TOKENS, "cases": cases}
    (out / "generate.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["generate"], help="write only these expected numbers, loading the committed models")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.only == "generate":
        expected_generate(ROOT / "expected")
        print("generation fixtures written to", ROOT)
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    write_data()
    for seed, (name, (config, style, dtype)) in enumerate(configs().items()):
        make_model(name, config, style, dtype, seed)
    make_adapter("qwen2-tiny-lora-peft", 10, 0.1, r=4, lora_alpha=8, target_modules=ALL_LINEAR)
    make_adapter("qwen2-tiny-rslora-peft", 11, 0.1, r=8, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "v_proj"])
    make_adapter("qwen2-tiny-lora-init", 12, 0.02, r=4, lora_alpha=8, target_modules=ALL_LINEAR)
    out = ROOT / "expected"
    out.mkdir(exist_ok=True)
    expected_logits(out)
    expected_logprobs(out)
    expected_chat(out)
    expected_generate(out)
    sft = {
        "qwen2-tiny/full": sft_reference("qwen2-tiny", None),
        "llama-tiny/full": sft_reference("llama-tiny", None),
        "qwen2-tiny/lora": sft_reference("qwen2-tiny", "qwen2-tiny-lora-init"),
    }
    (out / "sft.json").write_text(json.dumps(sft, indent=1) + "\n")
    expected_dpo(out)
    import transformers, peft, tokenizers
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "tokenizers": tokenizers.__version__}
    (out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")
    print("fixtures written to", ROOT, versions)


if __name__ == "__main__":
    main()
