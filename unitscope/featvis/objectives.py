"""Objectives: small values to maximise that combine with ``+``, ``-`` and ``*`` by numbers.

    obj = channel("blocks.2.0.bn1", [0, 1, 2, 3]) - 1e-3 * total_variation()
    str(obj)          # 'Channel [blocks.2.0.bn1, 0..3] - 0.001 * TotalVariation [image]'
    value = obj(acts) # [N]: one value per image of the batch

An objective reads ``acts``, a dict of traced layer outputs keyed by layer name, plus ``"image"``
(the ``[N, 3, H, W]`` image in [0, 1] before transforms) and ``"output"`` (the model's output).
It returns one value per image ``[N]``, so image ``i`` of a batch can serve unit ``units[i]``:
unit arguments take an int (every image) or a sequence of length N (one per image).
Rendering maximises the sum of the values. A layer name ending in ``":pre"`` reads that layer
before its nonlinearity (Lucid's ``pre_relu`` layers): ``channel("bn2:pre", 7)`` keeps a gradient
where ReLU6 has reached its cap of 6 and ``channel("bn2", 7)`` would stop improving.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Acts = dict[str, torch.Tensor]
IMAGE, OUTPUT = "image", "output"
PRE = ":pre"  # suffix of a layer name: the layer before its nonlinearity


class Objective:
    """``fn(acts) -> [N]`` with a readable ``description`` and the ``layers`` it reads."""

    def __init__(self, fn: Callable[[Acts], torch.Tensor], description: str, layers: Sequence[str] = ()):
        self.fn, self.description, self.layers = fn, description, frozenset(layers)

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return self.description

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, numbers.Number):
            return Objective(lambda a: self(a) + other, f"{self} + {other}", self.layers)
        return Objective(lambda a: self(a) + other(a), f"{self} + {other}", self.layers | other.layers)

    def __radd__(self, other: float) -> Objective:  # sum([...]) starts from 0
        return self if other == 0 else self + other

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), f"-({self})", self.layers)

    def __sub__(self, other: Objective | float) -> Objective:
        if isinstance(other, numbers.Number):
            return Objective(lambda a: self(a) - other, f"{self} - {other}", self.layers)
        text = f"({other})" if " + " in str(other) or " - " in str(other) else str(other)
        return Objective(lambda a: self(a) - other(a), f"{self} - {text}", self.layers | other.layers)

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, numbers.Number):
            raise TypeError(f"objectives multiply by numbers only, not {type(k).__name__}")
        text = f"({self})" if " + " in str(self) or " - " in str(self) else str(self)
        return Objective(lambda a: k * self(a), f"{k:g} * {text}", self.layers)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)


def _get(acts: Acts, layer: str) -> torch.Tensor:
    if layer not in acts:
        raise KeyError(f"the objective reads {layer!r}, which was not traced; traced: {sorted(acts)}")
    return acts[layer]


def _per_image(values: int | Sequence[int], n: int, what: str) -> torch.Tensor:
    if isinstance(values, numbers.Integral):
        return torch.full((n,), int(values), dtype=torch.long)
    idx = torch.as_tensor(list(values), dtype=torch.long)
    if len(idx) != n:
        raise ValueError(f"{len(idx)} {what} given for a batch of {n} images; give one per image or a single int")
    return idx


def _units_text(units: int | Sequence[int]) -> str:
    if isinstance(units, numbers.Integral):
        return str(units)
    units = list(units)
    if len(units) > 2 and units == list(range(units[0], units[0] + len(units))):
        return f"{units[0]}..{units[-1]}"
    return ",".join(map(str, units))


def _pick(x: torch.Tensor, units: int | Sequence[int], what: str = "units") -> torch.Tensor:
    """``x[i, units[i]]`` for every image i: ``[N, C, ...] -> [N, ...]``."""
    idx = _per_image(units, x.shape[0], what).to(x.device)
    if int(idx.max()) >= x.shape[1] or int(idx.min()) < 0:
        raise ValueError(f"{what} {idx.unique().tolist()} out of range for {x.shape[1]} channels")
    return x[torch.arange(x.shape[0], device=x.device), idx]


def channel(layer: str, unit: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``unit`` over all positions of ``layer`` ``[N, C, H, W]``."""

    def fn(acts: Acts) -> torch.Tensor:
        picked = _pick(_get(acts, layer), unit)
        return picked.flatten(1).mean(1) if picked.dim() > 1 else picked

    return Objective(fn, f"Channel [{layer}, {_units_text(unit)}]", [layer])


def neuron(layer: str, unit: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``unit`` at one position (default: the centre) of ``layer``."""

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer)
        if a.dim() == 2:
            return _pick(a, unit)
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        return _pick(a[:, :, yy, xx], unit)

    where = "" if y is None and x is None else f" at ({y}, {x})"
    return Objective(fn, f"Neuron [{layer}, {_units_text(unit)}]{where}", [layer])


def direction(layer: str, vector: torch.Tensor, position: str | None = None, cossim_pow: float = 0.0) -> Objective:
    """Dot product of the activation vectors of ``layer`` with ``vector`` (``[C]``, or ``[N, C]`` one
    per image), averaged over positions, or at the centre with ``position="center"``.
    ``cossim_pow > 0`` multiplies by the cosine similarity to that power (Lucid's ``dot_compare``)."""
    if position not in (None, "center"):
        raise ValueError(f"position must be None (mean over space) or 'center', got {position!r}")

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer)
        if a.dim() == 4:
            a = a[:, :, a.shape[2] // 2, a.shape[3] // 2, None, None] if position == "center" else a
            a = a.flatten(2)  # [N, C, P]
        else:
            a = a[:, :, None]
        v = vector.to(a.device, a.dtype)
        v = v.expand(a.shape[0], -1) if v.dim() == 1 else v  # [N, C]
        dot = torch.einsum("ncp,nc->np", a, v)
        if cossim_pow:
            cos = dot / (a.norm(dim=1) * v.norm(dim=1, keepdim=True) + 1e-6)
            dot = dot * cos.clamp(min=0.1) ** cossim_pow
        return dot.mean(1)

    where = " at centre" if position == "center" else ""
    return Objective(fn, f"Direction [{layer}, {tuple(vector.shape)}]{where}", [layer])


def latent(
    layer: str, encoder: torch.Tensor, unit: int | Sequence[int], bias: torch.Tensor | None = None, name: str = "Latent"
) -> Objective:
    """Mean pre-activation code of direction ``unit`` of a basis (``unitscope.bases``) over the positions
    of ``layer``: ``a . encoder[unit] + bias[unit]``, ``encoder`` ``[D, C]`` and ``bias`` ``[D]`` (for a
    basis ``b``: ``b.encoder`` and ``b.enc_bias - b.encoder @ b.dec_bias``). Before the SAE's ReLU and
    TopK, so the gradient never stops; ``unit`` an int or one per image."""

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer)
        a = a.flatten(2) if a.dim() == 4 else a[:, :, None]  # [N, C, P]
        idx = _per_image(unit, a.shape[0], "latents").to(a.device)
        if int(idx.max()) >= encoder.shape[0] or int(idx.min()) < 0:
            raise ValueError(
                f"latents {idx.unique().tolist()} out of range for a basis of {encoder.shape[0]} directions"
            )
        w = encoder.to(a.device, a.dtype)[idx]  # [N, C]
        value = torch.einsum("ncp,nc->np", a, w).mean(1)
        return value + bias.to(a.device, a.dtype)[idx] if bias is not None else value

    return Objective(fn, f"{name} [{layer}, {_units_text(unit)}]", [layer])


def class_logit(index: int | Sequence[int], layer: str | None = None, names: Sequence[str] | None = None) -> Objective:
    """The model output (or ``layer``'s ``[N, K]`` output) for class ``index``; ``names`` for the description."""
    key = layer or OUTPUT

    def fn(acts: Acts) -> torch.Tensor:
        return _pick(_get(acts, key).flatten(1), index, "classes")

    label = _units_text(index)
    if names is not None and isinstance(index, numbers.Integral):
        label = f"{index} {names[index]}"
    return Objective(fn, f"ClassLogit [{label}]", [layer] if layer else [OUTPUT])


def diversity(layer: str) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` to the others'.

    Pushes the images of a batch apart in style (Lucid's diversity term); zero for one image.
    """

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer)
        n = a.shape[0]
        if n < 2:
            return a.new_zeros(n)
        flat = a.flatten(2)  # [N, C, P]
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = F.normalize(gram, dim=1)
        sim = gram @ gram.T
        return -(sim.sum(1) - sim.diagonal()) / (n - 1)

    return Objective(fn, f"Diversity [{layer}]", [layer])


def total_variation(layer: str = IMAGE) -> Objective:
    """Sum of absolute differences of neighbouring pixels, per image (subtract it as a penalty)."""

    def fn(acts: Acts) -> torch.Tensor:
        x = _get(acts, layer)
        dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).sum(1)
        dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).sum(1)
        return dy + dx

    return Objective(fn, f"TotalVariation [{layer}]", [] if layer == IMAGE else [layer])


def l2(layer: str = IMAGE, constant: float = 0.5, epsilon: float = 1e-6) -> Objective:
    """``sqrt(eps + sum((x - constant)^2))`` per image (subtract it as a penalty)."""

    def fn(acts: Acts) -> torch.Tensor:
        x = _get(acts, layer)
        return torch.sqrt(epsilon + ((x - constant) ** 2).flatten(1).sum(1))

    return Objective(fn, f"L2 [{layer}]", [] if layer == IMAGE else [layer])


def match(layer: str, target: torch.Tensor) -> Objective:
    """Minus the squared distance to ``target`` activations ``[1 or N, C, H, W]``, relative to the
    target's squared norm: 0 is a perfect match. Rendering it inverts the layer (feature inversion)."""

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer)
        t = target.to(a.device, a.dtype)
        if t.shape[-2:] != a.shape[-2:] and a.dim() == 4:
            t = F.interpolate(t, size=a.shape[-2:], mode="bilinear", align_corners=False)
        err = ((a - t) ** 2).flatten(1).sum(1)
        return -err / (t**2).flatten(1).sum(1).clamp(min=1e-12)

    return Objective(fn, f"Match [{layer}]", [layer])


def stack(objectives: Sequence[Objective]) -> Objective:
    """Image ``i`` of the batch serves ``objectives[i]``: renders mixed objectives in one batch."""
    objectives = list(objectives)

    def fn(acts: Acts) -> torch.Tensor:
        values = [obj(acts) for obj in objectives]
        if any(v.shape[0] != len(objectives) for v in values):
            raise ValueError(f"stack of {len(objectives)} objectives needs a batch of {len(objectives)} images")
        return torch.stack([v[i] for i, v in enumerate(values)])

    layers = frozenset().union(*(o.layers for o in objectives)) if objectives else frozenset()
    return Objective(fn, "Stack [" + "; ".join(map(str, objectives)) + "]", layers)
