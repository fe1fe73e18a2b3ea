#!/usr/bin/env python3
"""Builds the reference numbers for the 8-bit AdamW optimiser: four steps of torchao's
`torchao.optim.AdamW8bit` on two CPU f32 parameters, run eagerly. Run by hand, never in CI:

    pip install torch safetensors
    pip install torchao==0.18.0 --no-deps
    python3 scripts/make_adamw8bit_fixtures.py

torchao's `step` wraps the update in `torch.compile(single_param_adam, ...)`; this script
replaces `torch.compile` by the identity while it runs, so the numbers are those of the plain
eager PyTorch ops (no Dynamo, no Inductor, no C++ compiler; it needs no GPU and runs in
seconds).

Setup (seeded with `torch.manual_seed(0)`, everything f32 on the CPU):
- `big`: 4,096 values, `randn * 0.1`. torchao quantises its state (numel >= 4096 and a multiple
  of the block size): 16 blocks of 256, each stored as uint8 codes into a 256-entry dynamic
  map plus one f32 absmax scale per block (signed map for `exp_avg`, unsigned for
  `exp_avg_sq`);
- `small`: 100 values, `randn * 0.1`. torchao keeps its state in plain f32;
- optimiser: `AdamW8bit([big, small], lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
  weight_decay=0.01, block_size=256)`, one parameter group;
- gradient of step t (t = 1..4), drawn in this order: `randn(4096)` for `big`, then
  `u = rand(16) * -4` (uniform in [-4, 0]) and each block b of 256 multiplied by `10 ** u[b]`,
  so the block scales span four decades; then `randn(100) * 0.5` for `small`.

Writes tests/fixtures/expected/adamw8bit.safetensors, all tensors f32 (uint8 codes widened):
- `qmap_signed`, `qmap_unsigned`: torchao's `create_dynamic_map(signed=True/False)`, 256 values
  each, as torchao makes its qmap tensor (`torch.tensor(list, dtype=torch.float32)`);
- `big.init`, `small.init`: the parameters before the first step;
- for t in 1..4: `big.grad.{t}`, `small.grad.{t}`; `big.param.{t}`, `small.param.{t}` (after
  step t); `big.exp_avg.codes.{t}`, `big.exp_avg.scale.{t}`, `big.exp_avg_sq.codes.{t}`,
  `big.exp_avg_sq.scale.{t}` (the quantised state after step t); `small.exp_avg.{t}`,
  `small.exp_avg_sq.{t}` (the plain state after step t).
The metadata holds the torch and torchao versions and the hyper-parameters.
"""

import contextlib
import json
import struct
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests/fixtures/expected/adamw8bit.safetensors"

SEED = 0
BIG_NUMEL = 4096
SMALL_NUMEL = 100
BLOCK_SIZE = 256
STEPS = 4
LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01


@contextlib.contextmanager
def eager_torch_compile():
    """Replaces `torch.compile` by the identity (counting the calls) for the `with` block."""
    original = torch.compile
    calls = []

    def identity(fn=None, **kwargs):
        calls.append(kwargs)
        if fn is None:  # decorator form: torch.compile(**kwargs)(fn)
            return lambda f: f
        return fn

    torch.compile = identity
    try:
        yield calls
    finally:
        torch.compile = original


def sort_metadata_in_place(path):
    """safetensors writes `__metadata__` in hash-map order, which changes from run to run;
    rewrites the header with the metadata keys sorted (same bytes, same length), so that
    reruns give a byte-identical file."""
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        new = new.ljust(n, b" ")  # safetensors pads its header with spaces
        assert len(new) == n and json.loads(new) == json.loads(raw)
        f.seek(8)
        f.write(new)


def main():
    import torchao
    from torchao.optim import AdamW8bit
    from torchao.optim.quant_utils import create_dynamic_map
    from torchao.optim.subclass_8bit import OptimState8bit

    torch.set_default_dtype(torch.float32)
    device = torch.device("cpu")
    tensors = {}

    # Exactly as OptimState8bit.zeros builds its qmap.
    tensors["qmap_signed"] = torch.tensor(create_dynamic_map(signed=True), dtype=torch.float32)
    tensors["qmap_unsigned"] = torch.tensor(create_dynamic_map(signed=False), dtype=torch.float32)
    for name in ("qmap_signed", "qmap_unsigned"):
        assert tensors[name].shape == (256,), name

    torch.manual_seed(SEED)
    big = (torch.randn(BIG_NUMEL, device=device) * 0.1).requires_grad_()
    small = (torch.randn(SMALL_NUMEL, device=device) * 0.1).requires_grad_()
    tensors["big.init"] = big.detach().clone()
    tensors["small.init"] = small.detach().clone()

    opt = AdamW8bit(
        [big, small],
        lr=LR,
        betas=BETAS,
        eps=EPS,
        weight_decay=WEIGHT_DECAY,
        block_size=BLOCK_SIZE,
    )
    lr_value = opt.param_groups[0]["lr"]

    n_blocks = BIG_NUMEL // BLOCK_SIZE
    started = time.perf_counter()
    with eager_torch_compile() as compile_calls:
        for t in range(1, STEPS + 1):
            g_big = torch.randn(BIG_NUMEL, device=device)
            u = torch.rand(n_blocks, device=device) * -4.0  # uniform in [-4, 0]
            g_big = (g_big.view(n_blocks, BLOCK_SIZE) * torch.pow(10.0, u).view(-1, 1)).view(-1)
            g_small = torch.randn(SMALL_NUMEL, device=device) * 0.5
            big.grad = g_big
            small.grad = g_small
            opt.step()

            st_big = opt.state[big]
            st_small = opt.state[small]
            for key in ("exp_avg", "exp_avg_sq"):
                assert isinstance(st_big[key], OptimState8bit), type(st_big[key])
                assert st_big[key].block_size == BLOCK_SIZE
                assert st_big[key].codes.dtype is torch.uint8
                assert type(st_small[key]) is torch.Tensor, type(st_small[key])
                assert st_small[key].dtype is torch.float32
            assert st_big["exp_avg"].signed and not st_big["exp_avg_sq"].signed
            assert torch.equal(st_big["exp_avg"].qmap, tensors["qmap_signed"])
            assert torch.equal(st_big["exp_avg_sq"].qmap, tensors["qmap_unsigned"])

            tensors[f"big.grad.{t}"] = g_big.clone()
            tensors[f"small.grad.{t}"] = g_small.clone()
            tensors[f"big.param.{t}"] = big.detach().clone()
            tensors[f"small.param.{t}"] = small.detach().clone()
            for key in ("exp_avg", "exp_avg_sq"):
                tensors[f"big.{key}.codes.{t}"] = st_big[key].codes.to(torch.float32)
                tensors[f"big.{key}.scale.{t}"] = st_big[key].scale.detach().clone()
                tensors[f"small.{key}.{t}"] = st_small[key].detach().clone()
    elapsed = time.perf_counter() - started

    # Eager check: torchao asked for one compile per parameter per step and got the identity;
    # Dynamo never captured a frame.
    assert len(compile_calls) == 2 * STEPS, compile_calls
    from torch._dynamo.utils import counters

    assert not counters["stats"].get("calls_captured"), dict(counters["stats"])
    assert not counters["frames"].get("ok"), dict(counters["frames"])

    for name, value in tensors.items():
        assert value.dtype is torch.float32 and value.device.type == "cpu", name
        tensors[name] = value.contiguous()

    metadata = {
        "torch": torch.__version__,
        "torchao": torchao.__version__,
        "optimizer": "torchao.optim.AdamW8bit (eager, torch.compile replaced by identity)",
        "lr": repr(LR),
        "lr_is_tensor": str(isinstance(lr_value, torch.Tensor)),
        "beta1": repr(BETAS[0]),
        "beta2": repr(BETAS[1]),
        "eps": repr(EPS),
        "weight_decay": repr(WEIGHT_DECAY),
        "block_size": str(BLOCK_SIZE),
        "steps": str(STEPS),
        "seed": str(SEED),
        "big_numel": str(BIG_NUMEL),
        "small_numel": str(SMALL_NUMEL),
    }
    EXPECTED.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(EXPECTED), metadata=metadata)
    sort_metadata_in_place(EXPECTED)
    print(
        f"wrote {EXPECTED.relative_to(ROOT)}: {len(tensors)} tensors, "
        f"{EXPECTED.stat().st_size} bytes; {STEPS} steps in {elapsed:.3f} s; "
        f"lr is {type(lr_value).__name__}"
    )


if __name__ == "__main__":
    main()
