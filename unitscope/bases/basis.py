"""The common ``Basis``: directions [D, C] as rows, encode, decode, metrics, save/load, stability.

b.encode(x)            # x [rows, C] or [N, C, H, W] -> codes [rows, D]
b.decode(codes)        # [rows, D] -> [rows, C]
b.save("out"); load_basis("out")
b.ablation([3]).apply(z)   # z [N, C, H, W] without latent 3's share;  b.objective("blocks.6", 3)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitscope.edits import DirectionEdits
from unitscope.errors import UsageError
from unitscope.runs import atomic_write_text, load_arrays, save_arrays
from unitscope.stats.base import units_first


def rows(x: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` or ``[N, C, H, W]`` -> ``[rows, C]`` float32 (every position a row)."""
    if x.dim() not in (2, 4):
        raise UsageError(f"activations must be [rows, C] or [N, C, H, W], got shape {tuple(x.shape)}")
    return units_first(x.detach()).t().float()


@dataclass
class Basis:
    """``decode(c) = c @ directions + dec_bias``; ``encode(x)`` depends on ``kind``:
    linear (PCA, whitening, ICA): ``(x - mean) @ encoder.T``; topk (SAE): TopK of
    ``relu((x - dec_bias) @ encoder.T + enc_bias)``; nmf: non-negative codes by multiplicative updates."""

    kind: str
    directions: torch.Tensor  # [D, C]
    encoder: torch.Tensor  # [D, C]
    enc_bias: torch.Tensor  # [D]
    dec_bias: torch.Tensor  # [C]
    k: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r = rows(x)
        if self.kind == "nmf":
            return nmf_codes(r, self.directions)
        pre = (r - self.dec_bias) @ self.encoder.t() + self.enc_bias
        if self.kind != "topk":
            return pre
        pre = torch.relu(pre)
        top = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, top.values)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.directions + self.dec_bias

    def ablation(self, latents: Sequence[int]) -> DirectionEdits:
        """One edit per latent: the layer's output without that direction's share (``code * direction``),
        its reconstruction error and the other directions untouched (``unitscope.ablate`` runs it
        like unit edits; ``hooks`` can apply it to a live model with ``edit.apply``)."""
        index = list(latents)
        return DirectionEdits(self.directions[index], lambda r: self.encode(r)[:, index])

    def objective(self, layer: str, latent: int | Sequence[int]) -> Any:
        """A feature-visualisation objective (``unitscope.featvis``): ``latent``'s pre-activation code."""
        from unitscope.featvis.objectives import latent as latent_objective

        bias = self.enc_bias - self.encoder @ self.dec_bias
        return latent_objective(layer, self.encoder, latent, bias, name=f"{self.kind} latent")

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_arrays(
            folder / "basis.safetensors",
            {n: getattr(self, n).detach().cpu().numpy() for n in ("directions", "encoder", "enc_bias", "dec_bias")},
        )
        atomic_write_text(
            folder / "basis.json",
            json.dumps({"kind": self.kind, "k": self.k, "config": self.config, "metrics": self.metrics}, indent=1),
        )
        return folder


def load_basis(folder: str | Path) -> Basis:
    folder = Path(folder)
    if not (folder / "basis.json").exists():
        raise UsageError(f"{folder} holds no basis (no basis.json); fit one with unitscope.bases.fit_*")
    meta = json.loads((folder / "basis.json").read_text())
    arrays = {k: torch.from_numpy(np.array(v)) for k, v in load_arrays(folder / "basis.safetensors").items()}
    return Basis(meta["kind"], k=meta["k"], config=meta["config"], metrics=meta["metrics"], **arrays)


def nmf_codes(r: torch.Tensor, w: torch.Tensor, iters: int = 50, eps: float = 1e-9) -> torch.Tensor:
    """Non-negative ``h`` [rows, D] with ``r ≈ h @ w``: least squares clipped at 0, then
    multiplicative updates with ``w`` fixed; codes under 1e-3 of the row's largest are set to 0."""
    r, w = r.double(), w.double()
    gram = w @ w.t()
    h = torch.linalg.lstsq(gram, (r @ w.t()).t()).solution.t().clamp_min(0) + 1e-3
    for _ in range(iters):
        h = h * (r @ w.t()) / (h @ gram + eps)
    # the updates only shrink a code towards 0 (a 1e-3 start stays about 1e-3 where the answer is 0):
    # codes under 1e-3 of their row's largest are 0, so a direction's "off" is 0 as in the data
    return torch.where(h < 1e-3 * h.amax(1, keepdim=True), torch.zeros_like(h), h).float()


def evaluate(basis: Basis, batches: Iterable[torch.Tensor]) -> dict[str, float]:
    """Streamed, float64: fraction of variance unexplained, mean L0 (codes > 1e-6 in magnitude per
    row) and dead fraction (directions never used)."""
    n, s, ss, resid, l0 = 0, None, None, 0.0, 0.0
    used: torch.Tensor | None = None
    for x in batches:
        r = rows(x)
        codes = basis.encode(r)
        active = codes.abs() > 1e-6
        resid += float(((r.double() - basis.decode(codes).double()) ** 2).sum())
        l0 += float(active.sum())
        used = active.any(0) if used is None else used | active.any(0)
        s = r.double().sum(0) if s is None else s + r.double().sum(0)
        ss = (r.double() ** 2).sum(0) if ss is None else ss + (r.double() ** 2).sum(0)
        n += len(r)
    if n == 0 or s is None or ss is None or used is None:
        raise UsageError("no activations to evaluate the basis on (the batches were empty)")
    total = float((ss - s**2 / n).sum())
    return {"fvu": resid / total, "mean_l0": l0 / n, "dead_fraction": float((~used).double().mean()), "rows": n}


def stability(b1: Basis | torch.Tensor, b2: Basis | torch.Tensor) -> float:
    """Mean |cosine| of directions matched one to one (Hungarian via scipy, else greedy), over
    min(D1, D2) pairs. Accepts a basis or a direction matrix [D, C]."""
    a = b1.directions if isinstance(b1, Basis) else b1
    b = b2.directions if isinstance(b2, Basis) else b2
    a = torch.nn.functional.normalize(a.double(), dim=1)
    b = torch.nn.functional.normalize(b.double(), dim=1)
    cos = (a @ b.t()).abs().cpu().numpy()
    try:
        from scipy.optimize import linear_sum_assignment

        i, j = linear_sum_assignment(-cos)
        return float(cos[i, j].mean())
    except ImportError:  # greedy: the best remaining pair, again and again
        c, picked = cos.copy(), []
        for _ in range(min(c.shape)):
            i, j = np.unravel_index(np.argmax(c), c.shape)
            picked.append(cos[i, j])
            c[i, :], c[:, j] = -1, -1
        return float(np.mean(picked))
