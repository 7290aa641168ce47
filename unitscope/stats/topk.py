"""Per-unit top-k images with the location of each peak.

from unitscope.stats import TopK
top = TopK(10); top.add(acts, index)  # acts [N, C, H, W] (or [N, C]), index [N] image numbers
values, images, ys, xs = top.result() # each [C, k], best first
"""

from __future__ import annotations

import torch

from unitscope.stats.base import Device, Stat, as_device


class TopK(Stat):
    """Per unit, the ``k`` largest per-image maxima and where they occurred.

    ``add(x, index)``: ``x`` is ``[N, C, H, W]`` (the spatial maximum of each image competes, its
    first position in row-major order is recorded) or ``[N, C]`` (y = x = 0); ``index`` ``[N]`` are
    the images' global indices. Order is by value descending, ties by lower image index, so the
    result is the same whatever the batching or sharding.
    """

    def __init__(self, k: int, device: Device = None) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = int(k)
        self.device = as_device(device)
        self.count = 0  # images seen
        self.values: torch.Tensor | None = None  # [C, k] float32, -inf where empty
        self.image: torch.Tensor | None = None  # [C, k] int64, -1 where empty
        self.y: torch.Tensor | None = None
        self.x: torch.Tensor | None = None

    def add(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """Offer images ``x`` ``[N, C, H, W]`` or ``[N, C]`` with global indices ``index`` ``[N]``."""
        x = x.detach().to(self.device, torch.float32)
        if x.dim() not in (2, 4):
            raise ValueError(f"expected [N, C] or [N, C, H, W], got shape {tuple(x.shape)}")
        index = torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)
        if index.shape[0] != x.shape[0]:
            raise ValueError(f"index has {index.shape[0]} entries for a batch of {x.shape[0]}")
        n, c = x.shape[:2]
        if x.dim() == 4:
            # the maximum and its first position in one reduction ([N, C, H*W] -> [N, C] each): what
            # argmax and a gather give (a NaN counts as the maximum in both), in about 3/4 of argmax's time
            vals, pos = x.flatten(2).max(dim=2)
            ys, xs = pos // x.shape[3], pos % x.shape[3]
        else:
            vals, ys, xs = x, x.new_zeros(n, c, dtype=torch.int64), x.new_zeros(n, c, dtype=torch.int64)
        self._init_units(c)
        self.count += n
        self._select(vals.t(), index[None, :].expand(c, n), ys.t(), xs.t())

    def _init_units(self, c: int) -> None:
        if self.values is None:
            self.values = torch.full((c, self.k), -torch.inf, device=self.device)
            self.image = torch.full((c, self.k), -1, dtype=torch.int64, device=self.device)
            self.y = torch.zeros(c, self.k, dtype=torch.int64, device=self.device)
            self.x = torch.zeros(c, self.k, dtype=torch.int64, device=self.device)
        elif self.values.shape[0] != c:
            raise ValueError(f"TopK holds {self.values.shape[0]} units, got a batch of {c}")

    def _select(self, vals: torch.Tensor, image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
        """Keep the best k of the current entries and candidates (all ``[C, n]``)."""
        vals = torch.cat([self.values, vals], dim=1)
        image = torch.cat([self.image, image], dim=1)
        ys, xs = torch.cat([self.y, ys], dim=1), torch.cat([self.x, xs], dim=1)
        # two stable sorts give a total order: value descending, then image ascending
        by_image = torch.sort(image, dim=1, stable=True).indices
        by_value = torch.sort(vals.gather(1, by_image), dim=1, descending=True, stable=True).indices
        best = by_image.gather(1, by_value)[:, : self.k]
        self.values, self.image = vals.gather(1, best), image.gather(1, best)
        self.y, self.x = ys.gather(1, best), xs.gather(1, best)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values, image, y, x)``, each ``[C, min(k, images seen)]``, best first."""
        if self.values is None:
            raise ValueError("TopK has no data yet: call add() first")
        n = min(self.k, self.count)
        return tuple(t[:, :n].clone() for t in (self.values, self.image, self.y, self.x))  # type: ignore[return-value]

    def _config(self) -> dict[str, int]:
        return {"k": self.k}

    def _data(self) -> dict[str, torch.Tensor]:
        data = {"count": torch.tensor(self.count, dtype=torch.int64)}
        if self.values is not None:
            data.update(values=self.values, image=self.image, y=self.y, x=self.x)
        return data

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.count = int(arrays["count"])
        self.values, self.image = arrays.get("values"), arrays.get("image")
        self.y, self.x = arrays.get("y"), arrays.get("x")

    def _merge(self, other: TopK) -> None:
        if other.values is None:
            return
        self._init_units(other.values.shape[0])
        self.count += other.count
        o = [t.to(self.device) for t in (other.values, other.image, other.y, other.x)]
        self._select(*o)
