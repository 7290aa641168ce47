"""Feature visualisation (Olah et al., Distill 2017; the Lucid library), in PyTorch.

    from unitscope.featvis import render, channel, total_variation
    result = render(model, channel("blocks.2.0.bn1", [0, 1, 2, 3]) - 1e-3 * total_variation(), batch=4)
    save_png(result.images[0], "unit0.png")
    result.summary()                       # "4 images of 128 px after 512 steps; objective ..."

``param`` (pixel / Fourier image parameterisations), ``transforms`` (pad, jitter, scale, rotate),
``objectives`` (neuron, channel, direction, class logit, diversity, total variation, L2, match),
``render`` (the optimisation loop, batched over units), ``images`` (PNG and contact sheets),
``store`` (``visualize_units``: a run folder's units), ``tables`` (the catalog tables, torch-free:
this package loads its modules on first use).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from unitscope.plugins import lazy_exports

_FROM = {
    "save_png": "images",
    "sheet": "images",
    "to_pil": "images",
    **{
        name: "objectives"
        for name in (
            "Objective",
            "channel",
            "class_logit",
            "direction",
            "diversity",
            "l2",
            "match",
            "neuron",
            "stack",
            "total_variation",
        )
    },
    "fft_image": "param",
    "image": "param",
    "pixel_image": "param",
    "visualize_units": "store",
    **{name: "render" for name in ("RenderResult", "evaluate", "redirected_relu", "render", "render_units")},
    **{
        name: "transforms"
        for name in ("compose", "jitter", "pad", "random_rotate", "random_scale", "standard_transforms")
    },
}

if TYPE_CHECKING:
    from unitscope.featvis.images import save_png, sheet, to_pil
    from unitscope.featvis.objectives import (
        Objective,
        channel,
        class_logit,
        direction,
        diversity,
        l2,
        match,
        neuron,
        stack,
        total_variation,
    )
    from unitscope.featvis.param import fft_image, image, pixel_image
    from unitscope.featvis.render import RenderResult, evaluate, redirected_relu, render, render_units
    from unitscope.featvis.store import visualize_units
    from unitscope.featvis.transforms import compose, jitter, pad, random_rotate, random_scale, standard_transforms


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


class _Package(types.ModuleType):
    """``unitscope.featvis.render`` stays the function when the submodule of that name is imported
    first (the import system then sets the package attribute to the module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "render" and isinstance(value, types.ModuleType):
            value = value.render
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Objective",
    "RenderResult",
    "channel",
    "class_logit",
    "compose",
    "direction",
    "diversity",
    "evaluate",
    "fft_image",
    "image",
    "jitter",
    "l2",
    "match",
    "neuron",
    "pad",
    "pixel_image",
    "random_rotate",
    "random_scale",
    "redirected_relu",
    "render",
    "render_units",
    "save_png",
    "sheet",
    "stack",
    "standard_transforms",
    "to_pil",
    "total_variation",
    "visualize_units",
]
