"""Non-negative matrix factorisation by multiplicative updates, streamed: each pass recomputes every
batch's codes with the directions fixed, sums ``h.T @ x`` and ``h.T @ h``, then updates the directions.

    b = fit_nmf(batches, n_components=8, passes=100, seed=0)   # activations must be >= 0
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unitscope.bases.basis import Basis, evaluate, nmf_codes, rows
from unitscope.errors import UsageError


def fit_nmf(
    batches: Iterable[torch.Tensor], n_components: int, passes: int = 100, seed: int = 0, eps: float = 1e-9
) -> Basis:
    w: torch.Tensor | None = None
    g = torch.Generator().manual_seed(seed)
    for p in range(passes):
        num: torch.Tensor | None = None
        gram: torch.Tensor | None = None
        for i, x in enumerate(batches):
            r = rows(x).double()
            if p == 0 and len(r) and float(r.min()) < 0:
                raise UsageError(
                    f"NMF needs non-negative activations, but batch {i} has a value of "
                    f"{float(r.min()):.4g}; take a layer after a ReLU, or use PCA, ICA or the SAE"
                )
            if w is None:
                w = torch.rand(n_components, r.shape[1], generator=g, dtype=torch.float64) * float(r.mean()) + eps
            h = nmf_codes(r, w.float(), iters=20).double()
            num = h.t() @ r if num is None else num + h.t() @ r
            gram = h.t() @ h if gram is None else gram + h.t() @ h
        if w is None or num is None or gram is None:
            raise UsageError("no activations to fit NMF on (the batches were empty)")
        w = w * num / (gram @ w + eps)
    assert w is not None
    c = w.shape[1]
    b = Basis(
        "nmf",
        w.float(),
        w.float(),
        torch.zeros(n_components),
        torch.zeros(c),
        config={"n_components": n_components, "passes": passes, "seed": seed},
    )
    b.metrics = evaluate(b, batches)
    return b
