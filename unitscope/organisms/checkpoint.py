"""Checkpoints of the organisms' training loops: named modules and optimiser states in one
safetensors file, then a JSON state beside it (the JSON last: it marks a whole pair).

    from unitscope.organisms.checkpoint import read_checkpoint, write_checkpoint
    write_checkpoint(path, {"step": 100}, {"model": net}, {"opt": opt})   # path.ckpt.safetensors + .ckpt.json
    state = read_checkpoint(path, "cpu", {"model": net}, {"opt": opt})   # None when there is none
    sha256_file(path)                                                     # of a shipped weights file
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from unitscope.runs import atomic_write_bytes, atomic_write_text


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{prefix.name: tensor}`` of ``module``'s state dict, on the CPU."""
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load what :func:`module_tensors` wrote under ``prefix``."""
    n = len(prefix) + 1
    module.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """``{prefix.i.key: tensor}`` of every parameter's state (SGD: momentum_buffer; Adam(W): step,
    exp_avg, exp_avg_sq), on the CPU."""
    return {
        f"{prefix}.{i}.{key}": v.detach().cpu().contiguous()
        for i, s in opt.state_dict()["state"].items()
        for key, v in s.items()
        if isinstance(v, torch.Tensor)
    }


def load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`optimizer_tensors` wrote under ``prefix`` (``prefix.i`` alone, as older
    SGD checkpoints wrote it, is a momentum buffer)."""
    sd = opt.state_dict()
    sd["state"] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            i, _, key = k[len(prefix) + 1 :].partition(".")
            if key == "step":
                v = v.cpu()  # Adam keeps its step count on the CPU
            sd["state"].setdefault(int(i), {})[key or "momentum_buffer"] = v
    opt.load_state_dict(sd)


def write_checkpoint(
    path: Path, state: dict, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> None:
    """``NAME.ckpt.safetensors`` (each module and optimiser under its prefix) then ``NAME.ckpt.json``
    (``state``) beside ``path``; the JSON last: it marks a whole pair."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        tensors.update(module_tensors(prefix, module))
    for prefix, opt in optimizers.items():
        tensors.update(optimizer_tensors(prefix, opt))
    atomic_write_bytes(path.with_suffix(".ckpt.safetensors"), save(tensors))
    atomic_write_text(path.with_suffix(".ckpt.json"), json.dumps(state))


def read_checkpoint(
    path: Path, device, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> dict | None:
    """Load the checkpoint :func:`write_checkpoint` left beside ``path`` into ``modules`` and
    ``optimizers``; returns its state, or None when there is none."""
    meta = path.with_suffix(".ckpt.json")
    if not meta.exists():
        return None
    from safetensors.torch import load_file

    tensors = load_file(str(path.with_suffix(".ckpt.safetensors")), device=str(device))
    for prefix, module in modules.items():
        load_module(prefix, module, tensors)
    for prefix, opt in optimizers.items():
        load_optimizer(prefix, opt, tensors)
    return json.loads(meta.read_text())
