"""Streamed mean and covariance (a mergeable ``Stat``, float64), PCA and whitening from it.

cov = Covariance(); [cov.add(x) for x in batches]      # x [rows, C] or [N, C, H, W]
b = fit_pca(batches, n_components=8)                   # directions: top eigenvectors
w = fit_whitening(batches, n_components=8)             # encode gives unit-variance codes
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from unitscope.bases.basis import Basis, evaluate
from unitscope.errors import UsageError
from unitscope.stats.base import Device, Stat, as_device, units_first


class Covariance(Stat):
    """Mean ``[C]`` and co-moment ``[C, C]`` in float64, merged with Chan et al.'s formula."""

    def __init__(self, device: Device = None) -> None:
        self.device = as_device(device)
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._com: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        cols = units_first(x.detach().to(self.device, torch.float64))  # [C, M]
        if cols.shape[1] == 0:
            return
        mean = cols.mean(1)
        d = cols - mean[:, None]
        self._combine(cols.shape[1], mean, d @ d.t())

    def _combine(self, n: int, mean: torch.Tensor, com: torch.Tensor) -> None:
        if self._mean is None or self._com is None:
            self.count, self._mean, self._com = n, mean.clone(), com.clone()
            return
        if mean.shape != self._mean.shape:
            raise ValueError(f"Covariance holds {self._mean.shape[0]} units, got {mean.shape[0]}")
        total = self.count + n
        delta = mean - self._mean
        self._com = self._com + com + torch.outer(delta, delta) * (self.count * n / total)
        self._mean = self._mean + delta * (n / total)
        self.count = total

    def mean(self) -> torch.Tensor:
        if self._mean is None:
            raise ValueError("Covariance has no data yet: call add() first")
        return self._mean.clone()

    def covariance(self) -> torch.Tensor:
        """``[C, C]`` float64, unbiased."""
        if self._com is None or self.count < 2:
            raise ValueError("Covariance needs at least 2 samples")
        return self._com / (self.count - 1)

    def _config(self) -> dict[str, int]:
        return {}

    def _data(self) -> dict[str, torch.Tensor]:
        data = {"count": torch.tensor(self.count, dtype=torch.int64)}
        if self._mean is not None and self._com is not None:
            data.update(mean=self._mean, com=self._com)
        return data

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.count = int(arrays["count"])
        self._mean, self._com = arrays.get("mean"), arrays.get("com")

    def _merge(self, other: Covariance) -> None:
        if other._mean is not None and other._com is not None:
            self._combine(other.count, other._mean, other._com)


def covariance_of(batches: Iterable[torch.Tensor]) -> Covariance:
    cov = Covariance()
    for x in batches:
        cov.add(x)
    if cov.count < 2:
        raise UsageError("need at least 2 activation rows to fit a basis (the batches were empty?)")
    return cov


def eigen(cov: Covariance, n_components: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues [D] (descending) and eigenvectors as rows [D, C], each signed so its largest
    entry is positive."""
    vals, vecs = torch.linalg.eigh(cov.covariance())
    vals, vecs = vals.flip(0), vecs.flip(1).t()
    c = vecs.shape[1]
    d = n_components or c
    if not 1 <= d <= c:
        raise UsageError(f"n_components must be between 1 and the layer's {c} channels, got {d}")
    vals, vecs = vals[:d], vecs[:d]
    sign = torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    return vals, vecs * sign


def fit_pca(batches: Iterable[torch.Tensor], n_components: int | None = None) -> Basis:
    """Principal directions (one pass for the covariance, one for the metrics)."""
    cov = covariance_of(batches)
    vals, vecs = eigen(cov, n_components)
    mean = cov.mean().float()
    b = Basis(
        "pca",
        vecs.float(),
        vecs.float(),
        torch.zeros(len(vals)),
        mean,
        config={"n_components": len(vals), "variances": vals.tolist()},
    )
    b.metrics = evaluate(b, batches)
    return b


def fit_whitening(batches: Iterable[torch.Tensor], n_components: int | None = None, eps: float = 1e-8) -> Basis:
    """PCA whitening: codes of unit variance; ``decode`` undoes it."""
    cov = covariance_of(batches)
    vals, vecs = eigen(cov, n_components)
    scale = vals.clamp_min(eps).sqrt()
    mean = cov.mean().float()
    enc = (vecs / scale[:, None]).float()
    b = Basis(
        "whiten", (vecs * scale[:, None]).float(), enc, torch.zeros(len(vals)), mean, config={"n_components": len(vals)}
    )
    b.metrics = evaluate(b, batches)
    return b
