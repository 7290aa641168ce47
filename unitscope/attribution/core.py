"""Attribution by gradient x activation (The Building Blocks of Interpretability, Olah et al. 2018).

    s = spatial_attribution(model, x, "blocks.4.1.bn2", target=207)   # [N, h, w]
    c = channel_attribution(model, x, "blocks.4.1.bn2", target=207, steps=16)   # [N, C], path-integrated
    m = layer_to_layer(model, x, "blocks.3.2.bn1", "blocks.4.1.bn2")  # [h2, w2, h1, w1]

A layer's output is replaced (``edit_output``) by a leaf tensor, the rest of the network runs from
it, and the gradient of the target with respect to that leaf is multiplied by the activation.
Spatial attribution sums over channels, channel attribution over positions; where the network
is linear after the layer both add up exactly to the target minus its value at zero activation.
``steps > 0`` integrates the gradient along the path from zero to the activation (midpoint rule).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from unitscope.hooks import Trace

Target = int | Callable[[torch.Tensor], torch.Tensor]


def _target_fn(target: Target) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(target):
        return target
    return lambda out: out.flatten(1)[:, int(target)]


def _replace(store: dict, alpha: float) -> Callable:
    def edit(output: torch.Tensor, layer: str) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(
                f"attribution needs a spatial [N, C, H, W] output at {layer!r}, "
                f"got {getattr(output, 'shape', type(output).__name__)}"
            )
        store["act"] = output.detach()
        store["leaf"] = (output.detach() * alpha).requires_grad_(True)
        return store["leaf"]

    return edit


def gradients(
    model: nn.Module, x: torch.Tensor, layer: str, target: Target, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(activation, d target / d activation)`` at ``layer``, both ``[N, C, h, w]``; the network
    after the layer sees ``alpha * activation``."""
    store: dict = {}
    with torch.enable_grad(), Trace(model, layer, retain_output=False, edit_output=_replace(store, alpha)):
        out = model(x)
        value = _target_fn(target)(out).sum()
        (grad,) = torch.autograd.grad(value, store["leaf"], allow_unused=True)
    act = store["act"]
    return act, grad if grad is not None else torch.zeros_like(act)


def attribution_map(model: nn.Module, x: torch.Tensor, layer: str, target: Target, steps: int = 0) -> torch.Tensor:
    """Gradient x activation ``[N, C, h, w]``; ``steps > 0``: integrated gradients from zero."""
    if steps <= 0:
        act, grad = gradients(model, x, layer, target)
        return act * grad
    total = None
    for k in range(steps):
        act, grad = gradients(model, x, layer, target, alpha=(k + 0.5) / steps)
        total = grad if total is None else total + grad
    return act * total / steps


def spatial_attribution(model: nn.Module, x: torch.Tensor, layer: str, target: Target, steps: int = 0) -> torch.Tensor:
    """Attribution of each position of ``layer`` to ``target``, summed over channels: ``[N, h, w]``."""
    return attribution_map(model, x, layer, target, steps).sum(1)


def channel_attribution(model: nn.Module, x: torch.Tensor, layer: str, target: Target, steps: int = 0) -> torch.Tensor:
    """Attribution of each channel of ``layer`` to ``target``, summed over positions: ``[N, C]``."""
    return attribution_map(model, x, layer, target, steps).sum((2, 3))


def layer_to_layer(model: nn.Module, x: torch.Tensor, layer: str, to_layer: str) -> torch.Tensor:
    """How much each position of ``layer`` contributes to each position of ``to_layer`` (its
    activation summed over channels), by gradient x activation summed over ``layer``'s channels.

    ``x`` is one image ``[1, 3, H, W]``; returns ``[h2, w2, h1, w1]``.
    """
    if x.shape[0] != 1:
        raise ValueError(f"layer_to_layer takes one image [1, 3, H, W], got a batch of {x.shape[0]}")
    store: dict = {}
    with (
        torch.enable_grad(),
        Trace(model, layer, retain_output=False, edit_output=_replace(store, 1.0)),
        Trace(model, to_layer, stop=True, detach=False) as later,
    ):
        model(x)
    if later.output is None:
        raise ValueError(f"{to_layer!r} did not run after {layer!r}; pass an earlier layer first")
    act, leaf = store["act"], store["leaf"]
    total = later.output.sum(1)[0]  # [h2, w2]
    h2, w2 = total.shape
    out = act.new_zeros(h2, w2, *act.shape[2:])
    for i in range(h2):
        for j in range(w2):
            (grad,) = torch.autograd.grad(total[i, j], leaf, retain_graph=True, allow_unused=True)
            if grad is not None:
                out[i, j] = (grad * act).sum(1)[0]
    return out
