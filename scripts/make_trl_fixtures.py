#!/usr/bin/env python3
"""Token ids and loss masks of conversational rows as TRL itself tokenizes them, for the Rust
tests that pin ladder's chat tokenisation to TRL's (tests/chat_trl.rs). Run by hand, never in
CI, after scripts/make_fixtures.py (it reads the committed qwen2-tiny and llama-tiny folders):

    pip install trl transformers peft pyarrow
    python3 scripts/make_trl_fixtures.py

It calls TRL's own dataset preparation, `SFTTrainer._prepare_dataset` and
`DPOTrainer._prepare_dataset`, on a datasets.Dataset of the rows, so every rule is TRL's:
a conversational prompt is rendered with the generation prompt, prompt + completion is rendered
whole, and the completion is the rest of the tokens after their common prefix, including what
the template writes after the end-of-turn token (ChatML's "\n"); for DPO the prompt is the
shorter of the two common prefixes. It writes:

- data/chat_completion.jsonl: conversational {"prompt","completion"} rows;
- data/chat_pairs.jsonl: conversational {"prompt","chosen","rejected"} rows;
- expected/trl_chat.json, per tokenizer:
  - sft_completion: SFTTrainer's input_ids and targets (labels != -100) for chat_completion rows;
  - sft_messages: for data/chat.jsonl, SFTTrainer's input_ids, and as targets each assistant
    turn as SFTTrainer delimits the completion of the row {prompt: the turns before it,
    completion: it} (TRL itself trains every token of a "messages" row unless
    assistant_only_loss, which needs `{% generation %}` markers the fixture templates lack);
  - dpo: DPOTrainer's prompt_ids, chosen_ids, rejected_ids for chat_pairs rows, and the
    summed completion log-probs transformers gives them (weights upcast to f32);
  - logprobs: the same log-probs for chat_completion rows;
  and a "qwen2-tiny/think" case: qwen2-tiny's tokenizer with a template whose generation prompt
  opens an empty think block that rendered history drops (as Qwen3's does), where the prompt
  alone is not a prefix of prompt + completion (sft_completion, sft_messages and dpo).
"""

import json
import sys
import tempfile
import types
from pathlib import Path

import torch
from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import CHAT_ROWS, CHATML, ROOT, load, load_tokenizer, sequence_logp, write_jsonl  # noqa: E402

import transformers  # noqa: E402
import trl  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return [{"role": "assistant", "content": text}]


CHAT_COMPLETION_ROWS = [
    {"prompt": [user("Clean: rnodern")], "completion": assistant("modern")},
    {"prompt": [{"role": "system", "content": "You transcribe records."}, user("Transcreva: procura\u00e7\u00e3o")],
     "completion": assistant("{\"text\": \"procura\u00e7\u00e3o\"}")},
    {"prompt": [user("What is 2 + 3?"), assistant("5")[0], user("And 4 + 4?")], "completion": assistant("8")},
    # Whitespace at both ends: the Llama 3 template trims it, ChatML keeps it.
    {"prompt": [user("Fix: Tlie")], "completion": assistant(" The\n")},
]

CHAT_PAIR_ROWS = [
    {"prompt": [{"role": "system", "content": "Transcribe."}, user("Tlie qnick fox")],
     "chosen": assistant("The quick fox"), "rejected": assistant("The The The The")},
    {"prompt": [user("Transcreva: Of\u00edcio n\u00ba 12")], "chosen": assistant("{\"header\": \"OF\u00cdCIO 12\"}"),
     "rejected": assistant("{\"header\": \"OF\u00cdCIO\", \"header\": \"OF\u00cdCIO\", \"header\":")},
    {"prompt": [user("What is 2 + 3?"), assistant("5")[0], user("And 4 + 4?")],
     "chosen": assistant("8"), "rejected": assistant("88888888")},
]

# ChatML whose generation prompt opens an empty think block; rendered history has none.
CHATML_THINK = CHATML.replace("'<|im_start|>assistant\\n' }}", "'<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}")
assert CHATML_THINK != CHATML


def sft_prepare(tok, rows):
    """SFTTrainer's own preparation (tokenise, build labels) of `rows`, defaults otherwise."""
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, report_to=[], use_cpu=True, bf16=False)
        # SFTTrainer.__init__ resolves completion_only_loss=None so: completion-only for
        # prompt-completion rows, every token for "messages" rows.
        completion_only = "prompt" in rows[0] and "completion" in rows[0]
        trainer = types.SimpleNamespace(_tokenizer=tok, chat_template=None, completion_only_loss=completion_only)
        return list(SFTTrainer._prepare_dataset(trainer, Dataset.from_list(rows), tok, args, False, None, "train"))


def dpo_prepare(tok, rows):
    """DPOTrainer's own preparation (tokenise, split at the common prefix) of `rows`."""
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, report_to=[], use_cpu=True, bf16=False)
        trainer = types.SimpleNamespace(_tokenizer=tok)
        return list(DPOTrainer._prepare_dataset(trainer, Dataset.from_list(rows), tok, args, "train"))


def targets(example):
    return [label != -100 for label in example["labels"]]


def sft_completion(tok):
    return [{"input_ids": e["input_ids"], "targets": targets(e)} for e in sft_prepare(tok, CHAT_COMPLETION_ROWS)]


def sft_messages(tok):
    """Each conversation's ids, and its assistant turns marked as TRL marks a completion."""
    rows = []
    for r in CHAT_ROWS:
        messages = r["messages"]
        (whole,) = sft_prepare(tok, [{"messages": messages}])
        ids, mask = whole["input_ids"], [False] * len(whole["input_ids"])
        turns = [{"prompt": messages[:i], "completion": [m]} for i, m in enumerate(messages) if m["role"] == "assistant"]
        for turn in sft_prepare(tok, turns):
            n = len(turn["input_ids"])
            assert turn["input_ids"] == ids[:n], "the template is not prefix-stable"
            mask[:n] = [a or b for a, b in zip(mask[:n], targets(turn))]
        rows.append({"input_ids": ids, "targets": mask})
    return rows


def dpo(tok, model):
    rows = []
    for e in dpo_prepare(tok, CHAT_PAIR_ROWS):
        p, c, r = e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]
        row = {"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}
        if model is not None:
            row |= {"logp_chosen": sequence_logp(model, p, c), "logp_rejected": sequence_logp(model, p, r)}
        rows.append(row)
    return rows


def logprobs(examples, model):
    out = []
    for e in examples:
        n = e["targets"].index(True)
        out.append({"logp": sequence_logp(model, e["input_ids"][:n], e["input_ids"][n:]), "n_tokens": len(e["input_ids"]) - n})
    return out


def ladder_before(tok, model):
    """What ladder did before matching TRL 1.x (prompt with the generation prompt, then the bare
    completion and EOS): the log-prob differences, printed for the record."""
    for r in CHAT_PAIR_ROWS:
        p = tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        c = tok(r["chosen"][0]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        yield len(c), sequence_logp(model, p, c)


def main():
    torch.set_num_threads(2)
    write_jsonl(ROOT / "data" / "chat_completion.jsonl", CHAT_COMPLETION_ROWS)
    write_jsonl(ROOT / "data" / "chat_pairs.jsonl", CHAT_PAIR_ROWS)
    cases = {}
    for name in ["qwen2-tiny", "llama-tiny"]:
        tok = load_tokenizer(ROOT / name)
        model = load(name).eval()
        completion = sft_completion(tok)
        cases[name] = {
            "sft_completion": completion,
            "sft_messages": sft_messages(tok),
            "dpo": dpo(tok, model),
            "logprobs": logprobs(completion, model),
        }
        for (n_old, old), new in zip(ladder_before(tok, model), cases[name]["dpo"]):
            print(f"{name}: chosen {n_old} -> {len(new['chosen_ids'])} tokens, logp {old:.4f} -> {new['logp_chosen']:.4f}")
    tok = load_tokenizer(ROOT / "qwen2-tiny")
    tok.chat_template = CHATML_THINK
    cases["qwen2-tiny/think"] = {
        "chat_template": CHATML_THINK,
        "sft_completion": sft_completion(tok),
        "sft_messages": sft_messages(tok),
        "dpo": dpo(tok, None),
    }
    versions = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}
    out = ROOT / "expected" / "trl_chat.json"
    out.write_text(json.dumps({"versions": versions, "cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print("written", out, versions)


if __name__ == "__main__":
    main()
