"""Random transforms for feature visualisation: plain callables ``[N, 3, H, W] -> [N, 3, H', W']``.

    t = compose(pad(12), jitter(8), random_scale([0.9, 1.0, 1.1]), random_rotate(range(-10, 11)))
    x = t(img)                     # fresh random draws on every call
    t = standard_transforms()      # Lucid's standard set

Each image of a batch gets its own jitter offset and rotation angle; a scale is drawn per call
(all images must keep one size). Resampling uses ``torch.nn.functional.grid_sample`` (bilinear,
``align_corners=False``), so the transforms are differentiable and run on any device without
kornia. ``generator=`` makes the draws reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _choice(values: Sequence[float], n: int, generator: torch.Generator | None) -> torch.Tensor:
    idx = torch.randint(len(values), (n,), generator=generator)
    return torch.tensor([float(values[i]) for i in idx.tolist()])


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels (``mode``: constant, reflect, replicate)."""
    if width < 0:
        raise ValueError(f"pad width must be >= 0, got {width}")

    def _pad(x: torch.Tensor) -> torch.Tensor:
        if mode == "constant":
            return F.pad(x, (width,) * 4, mode="constant", value=value)
        return F.pad(x, (width,) * 4, mode=mode)

    _pad.__qualname__ = f"pad({width}, {mode!r})"
    return _pad


def jitter(d: int, generator: torch.Generator | None = None) -> Transform:
    """Random crop of ``[H - d, W - d]``: each image shifted by its own 0..d pixels in y and x."""
    if d < 0:
        raise ValueError(f"jitter must be >= 0 pixels, got {d}")

    def _jitter(x: torch.Tensor) -> torch.Tensor:
        if d == 0:
            return x
        n, _, h, w = x.shape
        if d >= min(h, w):
            raise ValueError(f"jitter({d}) needs images larger than {d} pixels, got {h}x{w}")
        offs = torch.randint(d + 1, (n, 2), generator=generator).tolist()
        return torch.stack([x[i, :, oy : oy + h - d, ox : ox + w - d] for i, (oy, ox) in enumerate(offs)])

    _jitter.__qualname__ = f"jitter({d})"
    return _jitter


def resample(
    x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int] | None = None, padding_mode: str = "border"
) -> torch.Tensor:
    """Apply affine maps ``theta [N, 2, 3]`` (output -> input, normalised coordinates) to ``x``."""
    n, c, h, w = x.shape
    oh, ow = size or (h, w)
    grid = F.affine_grid(theta.to(x.device, x.dtype), [n, c, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_scale(scales: Iterable[float], generator: torch.Generator | None = None) -> Transform:
    """Resize by a factor drawn from ``scales`` (one per call): ``[N, 3, H, W] -> [N, 3, sH, sW]``."""
    scales = [float(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales}")

    def _scale(x: torch.Tensor) -> torch.Tensor:
        s = float(_choice(scales, 1, generator)[0])
        n, _, h, w = x.shape
        size = (max(1, round(h * s)), max(1, round(w * s)))
        if size == (h, w):
            return x
        theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
        return resample(x, theta, size)

    _scale.__qualname__ = f"random_scale({scales})"
    return _scale


def rotation_theta(angles_deg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Affine maps ``[N, 2, 3]`` that rotate images of ``h x w`` pixels by ``angles_deg`` about their centre.

    Positive angles turn the image counter-clockwise as displayed (as ``torch.rot90``).
    """
    a = angles_deg.double() * math.pi / 180
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.zeros(len(a), 2, 3, dtype=torch.float64)
    # Pixel-space rotation written in normalised coordinates (x spans W, y spans H).
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    return theta.float()


def random_rotate(angles: Iterable[float], generator: torch.Generator | None = None) -> Transform:
    """Rotate each image by its own angle (degrees) drawn from ``angles``; the size stays."""
    angles = [float(a) for a in angles]
    if not angles:
        raise ValueError("random_rotate needs at least one angle")

    def _rotate(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        drawn = _choice(angles, n, generator)
        if not drawn.any():
            return x
        return resample(x, rotation_theta(drawn, h, w))

    _rotate.__qualname__ = f"random_rotate({len(angles)} angles)"
    return _rotate


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` left to right."""

    def _compose(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    _compose.__qualname__ = "compose(" + ", ".join(getattr(t, "__qualname__", "?") for t in transforms) + ")"
    return _compose


def standard_transforms(generator: torch.Generator | None = None) -> Transform:
    """Lucid's ``standard_transforms``: pad 12, jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4."""
    return compose(
        pad(12, mode="constant", value=0.5),
        jitter(8, generator),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)], generator),
        random_rotate(list(range(-10, 11)) + 5 * [0], generator),
        jitter(4, generator),
    )
