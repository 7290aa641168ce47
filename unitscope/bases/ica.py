"""FastICA (symmetric, logcosh) on PCA-whitened activations, streamed: one pass per iteration.

b = fit_ica(batches, n_components=8, passes=40, seed=0)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unitscope.bases.basis import Basis, evaluate, rows
from unitscope.bases.pca import covariance_of, eigen


def _decorrelate(w: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(w @ w.t())
    return vecs @ torch.diag(vals.clamp_min(1e-12).rsqrt()) @ vecs.t() @ w


def fit_ica(batches: Iterable[torch.Tensor], n_components: int, passes: int = 40, seed: int = 0) -> Basis:
    """Independent directions: whiten to ``n_components``, then ``passes`` FastICA updates; each
    component signed so that its codes have positive skew (a sparse feature's "on" is high)."""
    cov = covariance_of(batches)
    vals, vecs = eigen(cov, n_components)
    mean, scale = cov.mean(), vals.clamp_min(1e-12).sqrt()
    k = vecs / scale[:, None]  # [D, C] whitening
    g = torch.Generator().manual_seed(seed)
    w = _decorrelate(torch.randn(n_components, n_components, generator=g, dtype=torch.float64))
    for _ in range(passes):
        ezg, egp, n = torch.zeros_like(w), torch.zeros(n_components, dtype=torch.float64), 0
        for x in batches:
            z = (rows(x).double() - mean) @ k.t()  # [rows, D]
            t = torch.tanh(z @ w.t())
            ezg += t.t() @ z
            egp += (1 - t**2).sum(0)
            n += len(z)
        w = _decorrelate(ezg / n - (egp / n)[:, None] * w)
    skew = torch.zeros(n_components, dtype=torch.float64)
    for x in batches:  # each component signed so its codes are skewed to the positive side (a feature's "on")
        skew += (((rows(x).double() - mean) @ k.t() @ w.t()) ** 3).sum(0)
    w = w * torch.where(skew < 0, -1.0, 1.0).to(w)[:, None]
    unmix = (w @ k).float()  # [D, C]
    mixing = (w @ (vecs * scale[:, None])).float()  # rows: x - mean ≈ s @ mixing
    b = Basis(
        "ica",
        mixing,
        unmix,
        torch.zeros(n_components),
        mean.float(),
        config={"n_components": n_components, "passes": passes, "seed": seed},
    )
    b.metrics = evaluate(b, batches)
    return b
