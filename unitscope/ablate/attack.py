"""Adversarial inputs through units: PGD under an L-infinity budget whose objective lowers the
source class's key units and raises the target's, against ordinary targeted PGD on the logits.

    x_adv = pgd(model, x, objective, eps=8 / 255, mean=info.mean, std=info.std)   # x normalised [N, 3, H, W]
    unit_objective(model, "layer4", source_units, target_units)   # objective(x_norm, target) -> [N]
    logit_objective(model)                                        # -cross-entropy to the target

``x`` is the model's normalised input; the attack works in pixel space [0, 1] (it undoes the
normalisation with the model's ``mean``/``std``), so ``eps`` is in pixel units (4/255, 8/255),
and the result stays within ``eps`` of the original pixels and inside [0, 1]. Hooks are held
only while the objective runs (a ``Trace`` context manager), also when it raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from unitscope.ablate.evaluate import logits_of
from unitscope.ablate.selectivity import spatial_mean
from unitscope.hooks import Trace

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def unit_objective(model: nn.Module, layer: str, source_units: torch.Tensor,
                   target_units: torch.Tensor) -> Objective:
    """Per image: mean spatially averaged activation of its target's key units minus its source's.

    ``source_units`` / ``target_units`` ``[N, n]``: key units for each image's source and target.
    """
    def objective(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with Trace(model, layer, detach=False, stop=True) as t:
            model(x)
        acts = spatial_mean(t.output)  # [N, C]
        return acts.gather(1, target_units).mean(1) - acts.gather(1, source_units).mean(1)

    return objective


def logit_objective(model: nn.Module) -> Objective:
    """Ordinary targeted PGD: minus the cross-entropy of the target class."""
    def objective(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(logits_of(model(x)), target, reduction="none")

    return objective


def pgd(x: torch.Tensor, target: torch.Tensor, objective: Objective, *, eps: float, mean: Sequence[float],
        std: Sequence[float], steps: int = 10, step_size: float | None = None) -> torch.Tensor:
    """Maximise ``objective`` within ``eps`` (L-inf, pixel units) of ``x`` ``[N, 3, H, W]`` (normalised);
    returns the normalised adversarial input. ``step_size`` defaults to 2.5 * eps / steps (Madry et al.)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    pixels = (x * s + m).clamp(0, 1).detach()
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    adv = pixels.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        gain = objective((adv - m) / s, target).sum()
        (grad,) = torch.autograd.grad(gain, adv)
        with torch.no_grad():
            adv = adv + alpha * grad.sign()
            adv = torch.minimum(torch.maximum(adv, pixels - eps), pixels + eps).clamp(0, 1)
    return ((adv.detach() - m) / s)


def pixel_distance(x: torch.Tensor, y: torch.Tensor, std: Sequence[float]) -> torch.Tensor:
    """L-inf distance ``[N]`` in pixel units between two normalised batches."""
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return ((x - y) * s).abs().flatten(1).max(1).values


@torch.no_grad()
def unit_shift(model: nn.Module, layer: str, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Mean change ``[C]`` of each unit's spatially averaged activation from ``x`` to ``x_adv``."""
    with Trace(model, layer, stop=True) as t:
        model(x)
    before = spatial_mean(t.output)
    with Trace(model, layer, stop=True) as t:
        model(x_adv)
    return (spatial_mean(t.output) - before).mean(0)
