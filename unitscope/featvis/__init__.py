"""Feature visualisation (Olah et al., Distill 2017; the Lucid library), in PyTorch.

    from unitscope.featvis import render, channel, total_variation
    result = render(model, channel("blocks.2.0.bn1", [0, 1, 2, 3]) - 1e-3 * total_variation(), batch=4)
    save_png(result.images[0], "unit0.png")

``param`` (pixel / Fourier image parameterisations), ``transforms`` (pad, jitter, scale, rotate),
``objectives`` (neuron, channel, direction, class logit, diversity, total variation, L2, match),
``render`` (the optimisation loop, batched over units), ``images`` (PNG and contact sheets).
"""

from unitscope.featvis.images import save_png, sheet, to_pil
from unitscope.featvis.objectives import (Objective, channel, class_logit, direction, diversity, l2, match,
                                          neuron, stack, total_variation)
from unitscope.featvis.param import fft_image, image, pixel_image
from unitscope.featvis.store import visualize_units
from unitscope.featvis.render import RenderResult, evaluate, redirected_relu, render, render_units
from unitscope.featvis.transforms import (compose, jitter, pad, random_rotate, random_scale,
                                          standard_transforms)

__all__ = [
    "Objective", "RenderResult", "channel", "class_logit", "compose", "direction", "diversity", "evaluate",
    "fft_image", "image", "jitter", "l2", "match", "neuron", "pad", "pixel_image", "random_rotate",
    "random_scale", "redirected_relu", "render", "render_units", "save_png", "sheet", "stack",
    "standard_transforms", "to_pil", "total_variation", "visualize_units",
]
