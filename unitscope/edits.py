"""One edit primitive for a layer's units: what ablation, steering and a generator's object removal
and insertion share.

    e = Edits.ablate(torch.eye(C, dtype=torch.bool))                 # K = C single-unit removals (zero)
    e = Edits.ablate(mask, "mean", mean=means)                       # or "noise" (mean=, std=)
    e = Edits.ablate(mask, "quantile", value=levels)                 # units forced to a per-unit level [C]
    e = Edits(mask, value)                                           # steering: any value per edit and unit
    e = e.within(region)                                             # only where region [H, W] / [K, H, W] holds
    z_edited = e.apply(z)                                            # [N, C, ...] -> [K * N, C, ...]

An edit ``k`` replaces unit ``c`` of a layer's output by ``value[k, c]`` wherever ``mask[k, c]``
holds (and, with a region, only at the positions of ``region[k]``), adding ``std[c] * N(0, 1)``
per element for noise. Every ablation mode is such an edit: ``zero`` (value 0), ``mean`` (the
unit's mean), ``constant`` (a number or a value per unit), ``noise`` (the unit's mean plus its own
spread) and ``quantile`` (a level of the unit's own distribution, e.g. its 99.5th percentile, to
switch it *on*). ``hooks.ablation`` / ``hooks.Ablate`` apply one edit to a live model; the ablation
stages (``unitscope.ablate``) apply ``K`` edits of a cached layer in one tail pass and score them
with a pluggable scorer (``ablate.evaluate.run_edits``).

A direction of a basis (``unitscope.bases``) is ablated by :class:`DirectionEdits`: edit ``k``
subtracts ``code_k(z) * direction_k`` from every position, so what the basis does not explain
(its reconstruction error) and every other direction's share stay as they were:

    e = DirectionEdits(basis.directions[[3, 7]], lambda r: basis.encode(r)[:, [3, 7]])  # K = 2
    z_edited = e.apply(z)                                            # [N, C, H, W] -> [2 * N, C, H, W]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["MODES", "DirectionEdits", "Edits", "unit_mask"]

MODES = ("zero", "mean", "constant", "noise", "quantile")


@dataclass
class Edits:
    """``K`` edits of a layer with ``C`` units: ``mask`` bool ``[K, C]``, ``value`` ``[K, C]``,
    ``noise_std`` ``[C]`` or None (no noise), ``region`` bool ``[K or 1, H, W]`` or None (everywhere)."""

    mask: torch.Tensor
    value: torch.Tensor
    noise_std: torch.Tensor | None = None
    region: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.mask = torch.as_tensor(self.mask, dtype=torch.bool)
        self.value = torch.as_tensor(self.value, dtype=torch.float32)
        if self.mask.dim() != 2 or self.value.shape != self.mask.shape:
            raise ValueError(
                f"edits need mask and value of one shape [K, C]; got {tuple(self.mask.shape)} "
                f"and {tuple(self.value.shape)}"
            )
        if self.region is not None:
            self.region = torch.as_tensor(self.region, dtype=torch.bool)
            if self.region.dim() == 2:
                self.region = self.region.unsqueeze(0)
            if self.region.dim() != 3 or self.region.shape[0] not in (1, len(self)):
                raise ValueError(
                    f"a region is [H, W], [1, H, W] or [K, H, W] with K = {len(self)} edits; "
                    f"got {tuple(self.region.shape)}"
                )

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def units(self) -> int:
        return self.mask.shape[1]

    @classmethod
    def ablate(
        cls,
        mask: torch.Tensor,
        mode: str = "zero",
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        value: float | torch.Tensor | None = None,
    ) -> Edits:
        """The units of each row of ``mask`` ``[K, C]`` set by ``mode``: ``zero``; ``mean`` (``mean``
        ``[C]``); ``noise``: Gaussian with each unit's ``mean`` and ``std`` ``[C]``; ``constant``
        (``value``: a number, ``[C]`` or ``[K, C]``); ``quantile`` (``value`` ``[C]``: each unit's level,
        e.g. ``stats.Quantile(...).quantiles(0.995)``)."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mode not in MODES:
            raise ValueError(f"unknown ablation mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode in ("mean", "noise") and mean is None:
            raise ValueError(f"{mode} ablation needs each unit's mean (mean=[C], e.g. from stats.Moments)")
        if mode == "noise" and std is None:
            raise ValueError("noise ablation needs each unit's standard deviation (std=[C])")
        if mode in ("constant", "quantile") and value is None:
            what = "a number or a value per unit" if mode == "constant" else "each unit's level [C]"
            raise ValueError(f"{mode} edits need value= ({what})")
        if mode == "zero":
            filled = torch.zeros(mask.shape)
        else:
            source = mean if mode in ("mean", "noise") else value
            filled = _per_unit(source, mask.shape, mode)
        return cls(mask, filled, std.float().reshape(-1) if mode == "noise" else None)

    def within(self, region: torch.Tensor) -> Edits:
        """The same edits applied only where ``region`` (bool ``[H, W]``, or ``[K, H, W]`` per edit)
        holds; elsewhere the layer keeps its values."""
        return Edits(self.mask, self.value, self.noise_std, region)

    def __getitem__(self, rows: slice) -> Edits:
        region = self.region if self.region is None or self.region.shape[0] == 1 else self.region[rows]
        return Edits(self.mask[rows], self.value[rows], self.noise_std, region)

    def apply(self, z: torch.Tensor, generator: torch.Generator | None = None, dim: int = 1) -> torch.Tensor:
        """``z`` ``[N, C, ...]`` (units along ``dim``) -> ``[K * N, C, ...]``: block ``k`` is ``z``
        under edit ``k``. Noise is drawn on the CPU from ``generator``, in one ``[K, N, ...]`` draw."""
        if dim != 1:
            return self.apply(z.movedim(dim, 1), generator).movedim(1, dim)
        k, n, c = len(self), z.shape[0], z.shape[1]
        if self.units != c:
            raise ValueError(f"the edits are for {self.units} units; the layer has {c}")
        shape = (k, 1, c) + (1,) * (z.dim() - 2)
        mask = self.mask.to(z.device).reshape(shape)
        if self.region is not None:
            if z.dim() != 4 or tuple(self.region.shape[1:]) != tuple(z.shape[2:]):
                raise ValueError(
                    f"a region of shape {tuple(self.region.shape[1:])} does not fit the layer's "
                    f"maps {tuple(z.shape[2:])}"
                )
            mask = mask & self.region.to(z.device).reshape(self.region.shape[0], 1, 1, *z.shape[2:])
        value = self.value.to(z.device, z.dtype).reshape(shape)
        out = torch.where(mask, value, z.unsqueeze(0))  # [K, N, C, ...]
        if self.noise_std is not None:
            std = self.noise_std.to(z.device, z.dtype).reshape((1, 1, c) + (1,) * (z.dim() - 2))
            noise = torch.randn(out.shape, generator=generator, dtype=z.dtype, device="cpu").to(z.device)
            out = out + mask * std * noise
        return out.reshape(k * n, *z.shape[1:])


class DirectionEdits(Edits):
    """``K`` direction ablations: ``directions`` ``[K, C]`` (a basis' decoder rows) and ``codes``, a
    function of rows ``[M, C]`` -> their codes ``[M, K]`` on those directions (the basis' encoder).
    Edit ``k`` maps each position's vector ``x`` to ``x - codes(x)[k] * directions[k]``; with a
    ``region``, only there. ``mask`` and ``value`` are empty (no unit is replaced)."""

    def __init__(
        self,
        directions: torch.Tensor,
        codes: Callable[[torch.Tensor], torch.Tensor],
        region: torch.Tensor | None = None,
    ) -> None:
        directions = torch.as_tensor(directions, dtype=torch.float32)
        if directions.dim() != 2:
            raise ValueError(f"directions are [K, C]; got {tuple(directions.shape)}")
        self.directions, self.codes = directions, codes
        super().__init__(torch.zeros(directions.shape, dtype=torch.bool), torch.zeros(directions.shape), None, region)

    def within(self, region: torch.Tensor) -> DirectionEdits:
        return DirectionEdits(self.directions, self.codes, region)

    def __getitem__(self, rows: slice) -> DirectionEdits:
        index = torch.arange(len(self))[rows]
        region = self.region if self.region is None or self.region.shape[0] == 1 else self.region[rows]
        return DirectionEdits(self.directions[rows], lambda r: self.codes(r)[:, index], region)

    def apply(self, z: torch.Tensor, generator: torch.Generator | None = None, dim: int = 1) -> torch.Tensor:
        """``z`` ``[N, C, ...]`` -> ``[K * N, C, ...]``: block ``k`` is ``z`` without direction ``k``."""
        if dim != 1:
            return self.apply(z.movedim(dim, 1), generator).movedim(1, dim)
        k, n, c = len(self), z.shape[0], z.shape[1]
        if self.units != c:
            raise ValueError(f"the directions have {self.units} entries; the layer has {c} units")
        rows = z.movedim(1, -1).reshape(-1, c)  # [M, C], positions in (n, ...) order
        codes = self.codes(rows).to(z.dtype)  # [M, K]
        if codes.shape != (len(rows), k):
            raise ValueError(f"codes gave {tuple(codes.shape)} for {len(rows)} rows and {k} directions")
        part = codes.t()[:, :, None] * self.directions.to(z)[:, None, :]  # [K, M, C]
        part = part.reshape(k, n, *z.shape[2:], c).movedim(-1, 2)  # [K, N, C, ...]
        if self.region is not None:
            if z.dim() != 4 or tuple(self.region.shape[1:]) != tuple(z.shape[2:]):
                raise ValueError(
                    f"a region of shape {tuple(self.region.shape[1:])} does not fit the layer's "
                    f"maps {tuple(z.shape[2:])}"
                )
            part = part * self.region.to(z.device).reshape(self.region.shape[0], 1, 1, *z.shape[2:])
        return (z.unsqueeze(0) - part).reshape(k * n, *z.shape[1:])


def unit_mask(units: Sequence[int] | torch.Tensor, n_units: int, what: str = "the layer") -> torch.Tensor:
    """A one-edit mask ``[1, C]`` with ``units`` set; a unit outside ``0..C-1`` is an error naming ``what``."""
    index = torch.as_tensor(list(units) if not isinstance(units, torch.Tensor) else units, dtype=torch.long)
    if len(index) and (int(index.max()) >= n_units or int(index.min()) < 0):
        raise ValueError(f"{what} has {n_units} units; asked to edit {index.tolist()}")
    mask = torch.zeros(1, n_units, dtype=torch.bool)
    mask[0, index] = True
    return mask


def _per_unit(source: float | torch.Tensor, shape: torch.Size, mode: str) -> torch.Tensor:
    """``source`` (a number, ``[C]`` or ``[K, C]``) filled out to ``[K, C]``."""
    v = torch.as_tensor(source, dtype=torch.float32)
    k, c = shape
    if v.dim() == 0 or tuple(v.shape) in ((c,), (k, c)):
        return v.expand(shape).clone()
    raise ValueError(f"{mode} edits need a number, [C] = [{c}] or [K, C] = [{k}, {c}] values; got {tuple(v.shape)}")
