"""Image parameterisations: each returns ``(params, image_fn)``; ``image_fn()`` is ``[N, 3, H, W]`` in [0, 1].

    params, image_fn = fft_image((4, 3, 128, 128))      # Lucid's default: Fourier + decorrelated colour
    opt = torch.optim.Adam(params, lr=0.05)
    img = image_fn()                                    # [4, 3, 128, 128], values in (0, 1)

``pixel_image`` optimises pixels directly; ``fft_image`` optimises a Fourier spectrum scaled by
1/f, so that every frequency starts with equal energy and low frequencies are not starved
(Olah et al. 2017, "Preconditioning and parameterization"). Both map their raw values through
the square root of ImageNet's colour correlation (``decorrelate=True``) and a sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

ImageFn = Callable[[], torch.Tensor]

#: Square root of ImageNet's 3x3 colour covariance (the matrix Lucid uses), rows = RGB.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_MAX_NORM = COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / _MAX_NORM


def decorrelate_color(t: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour channels ``[N, 3, H, W]`` to correlated RGB (multiply by the sqrt)."""
    m = COLOR_CORRELATION_NORMALIZED.to(t.device, t.dtype)
    return torch.einsum("nchw,dc->ndhw", t, m)


def to_valid_rgb(t: torch.Tensor, decorrelate: bool = True, sigmoid: bool = True) -> torch.Tensor:
    """Raw values ``[N, 3, H, W]`` -> RGB in [0, 1]: optional colour decorrelation, then sigmoid
    (or clamping when ``sigmoid=False``)."""
    if decorrelate:
        t = decorrelate_color(t)
    return torch.sigmoid(t) if sigmoid else t.clamp(0, 1)


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Frequency magnitude of each entry of an ``rfft2`` spectrum of an ``h x w`` image ``[h, w//2+1]``."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise ValueError(f"image shape must be [N, 3, H, W] with positive sizes, got {list(shape)}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def pixel_image(
    shape: Sequence[int],
    sd: float = 0.01,
    decorrelate: bool = True,
    sigmoid: bool = True,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Optimise pixels directly; ``shape`` is ``[N, 3, H, W]``."""
    shape = _check_shape(shape)
    raw = (torch.randn(shape, generator=generator) * sd).to(device).requires_grad_(True)
    return [raw], lambda: to_valid_rgb(raw, decorrelate, sigmoid)


def fft_image(
    shape: Sequence[int],
    sd: float = 0.01,
    decay_power: float = 1.0,
    decorrelate: bool = True,
    sigmoid: bool = True,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], ImageFn]:
    """Optimise a Fourier spectrum scaled by ``1 / f**decay_power``; ``shape`` is ``[N, 3, H, W]``."""
    n, c, h, w = _check_shape(shape)
    freqs = rfft2d_freqs(h, w)
    scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power
    # no extra sqrt(h*w): norm="ortho" already is TF's unnormalised irfft2d times sqrt(h*w) / (h*w)
    scale = scale.to(device)
    spectrum = (torch.randn((n, c, h, w // 2 + 1, 2), generator=generator) * sd).to(device).requires_grad_(True)

    def image_fn() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        img = torch.fft.irfft2(coeffs, s=(h, w), norm="ortho") / 4.0
        return to_valid_rgb(img, decorrelate, sigmoid)

    return [spectrum], image_fn


PARAMETERISATIONS = {"fft": fft_image, "pixel": pixel_image}


def image(shape: Sequence[int], param: str = "fft", **kw) -> tuple[list[torch.Tensor], ImageFn]:
    """``fft_image`` or ``pixel_image`` by name."""
    if param not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation {param!r}; choose one of {sorted(PARAMETERISATIONS)}")
    return PARAMETERISATIONS[param](shape, **kw)
