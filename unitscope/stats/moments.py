"""Per-unit mean and variance (Welford/Chan, float64), and per-class means of unit activations.

from unitscope.stats import Moments, ClassMeans
m = Moments(); m.add(acts)            # acts [N, C] or [N, C, H, W]
m.mean(), m.std()                     # [C]
cm = ClassMeans(10); cm.add(x, y)     # x [N, C], y [N] class numbers
cm.mean()                             # [10, C]
"""

from __future__ import annotations

import torch

from unitscope.stats.base import Device, Stat, as_device, units_first


class Moments(Stat):
    """Per-unit mean and variance, float64, merged with Chan et al.'s parallel formula.

    ``add(x)``: ``x`` is ``[N, C]`` or ``[N, C, H, W]`` (every spatial position is a sample).
    """

    def __init__(self, device: Device = None) -> None:
        self.device = as_device(device)
        self.count = 0
        self._mean: torch.Tensor | None = None  # [C] float64
        self._m2: torch.Tensor | None = None  # [C] float64, sum of squared deviations

    def add(self, x: torch.Tensor) -> None:
        """Add samples ``x``: ``[N, C]`` or ``[N, C, H, W]``."""
        cols = units_first(x.detach().to(self.device, torch.float64))  # [C, M]
        if cols.shape[1] == 0:
            return
        mean = cols.mean(dim=1)
        m2 = ((cols - mean[:, None]) ** 2).sum(dim=1)
        self._combine(cols.shape[1], mean, m2)

    def _combine(self, n: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        if self._mean is None:
            self.count, self._mean, self._m2 = n, mean.clone(), m2.clone()
            return
        if mean.shape != self._mean.shape:
            raise ValueError(f"Moments holds {self._mean.shape[0]} units, got {mean.shape[0]}")
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def _require_data(self) -> None:
        if self._mean is None:
            raise ValueError("Moments has no data yet: call add() first")

    def mean(self) -> torch.Tensor:
        """``[C]`` float64."""
        self._require_data()
        return self._mean.clone()

    def variance(self, unbiased: bool = True) -> torch.Tensor:
        """``[C]`` float64; NaN for unbiased variance of a single sample."""
        self._require_data()
        dof = self.count - 1 if unbiased else self.count
        return self._m2 / dof if dof > 0 else torch.full_like(self._m2, torch.nan)

    def std(self, unbiased: bool = True) -> torch.Tensor:
        return self.variance(unbiased).sqrt()

    def _config(self) -> dict[str, int]:
        return {}

    def _data(self) -> dict[str, torch.Tensor]:
        data = {"count": torch.tensor(self.count, dtype=torch.int64)}
        if self._mean is not None:
            data.update(mean=self._mean, m2=self._m2)
        return data

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.count = int(arrays["count"])
        self._mean, self._m2 = arrays.get("mean"), arrays.get("m2")

    def _merge(self, other: Moments) -> None:
        if other._mean is not None:
            self._combine(other.count, other._mean.to(self.device), other._m2.to(self.device))


class ClassMeans(Stat):
    """Per-class mean of every unit: ``add(x [N, C], y [N])`` with class labels in ``[0, K)``.

    Sums are float64; ``mean()`` is NaN for classes never seen.
    """

    def __init__(self, num_classes: int, device: Device = None) -> None:
        self.num_classes = int(num_classes)
        self.device = as_device(device)
        self.sums: torch.Tensor | None = None  # [K, C] float64
        self.counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)

    @property
    def count(self) -> torch.Tensor:
        """Samples seen per class, ``[K]`` int64."""
        return self.counts.clone()

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add samples ``x`` ``[N, C]`` with class labels ``y`` ``[N]``."""
        if x.dim() != 2:
            raise ValueError(f"expected x of shape [N, C], got {tuple(x.shape)}")
        y = torch.as_tensor(y, device=self.device).reshape(-1).long()
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{y.shape[0]} labels for {x.shape[0]} samples")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {y.min()}..{y.max()}")
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, x.shape[1], dtype=torch.float64, device=self.device)
        self.sums.index_add_(0, y, x.detach().to(self.device, torch.float64))
        self.counts += torch.bincount(y, minlength=self.num_classes)

    def mean(self) -> torch.Tensor:
        """``[K, C]`` float64."""
        if self.sums is None:
            raise ValueError("ClassMeans has no data yet: call add() first")
        return self.sums / self.counts[:, None].double()  # 0 / 0 -> NaN for unseen classes

    def _config(self) -> dict[str, int]:
        return {"num_classes": self.num_classes}

    def _data(self) -> dict[str, torch.Tensor]:
        data = {"counts": self.counts}
        if self.sums is not None:
            data["sums"] = self.sums
        return data

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.counts, self.sums = arrays["counts"], arrays.get("sums")

    def _merge(self, other: ClassMeans) -> None:
        if other.sums is None:
            return
        if self.sums is None:
            self.sums = torch.zeros_like(other.sums, device=self.device)
        self.sums += other.sums.to(self.device)
        self.counts += other.counts.to(self.device)
