"""Adversarial inputs through units: PGD under an L-infinity budget whose objective lowers the
source class's key units and raises the target's, against ordinary targeted PGD on the logits.

    x_adv = pgd(model, x, objective, eps=8 / 255, mean=info.mean, std=info.std)   # x normalised [N, 3, H, W]
    unit_objective(model, "layer4", source_units, target_units)   # objective(x_norm, target) -> [N]
    logit_objective(model, class_of_output)                       # log p(target class), all its outputs

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


def unit_objective(model: nn.Module, layer: str, source_units: torch.Tensor, target_units: torch.Tensor) -> Objective:
    """Per image: mean spatially averaged activation of its target's key units minus its source's.

    ``source_units`` / ``target_units`` ``[N, n]``: key units for each image's source and target.
    """

    def objective(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with Trace(model, layer, detach=False, stop=True) as t:
            model(x)
        acts = spatial_mean(t.output)  # [N, C]
        return acts.gather(1, target_units).mean(1) - acts.gather(1, source_units).mean(1)

    return objective


def logit_objective(model: nn.Module, class_of_output: torch.Tensor | None = None) -> Objective:
    """Ordinary targeted PGD: minus the cross-entropy of the target output. With ``class_of_output``
    ``[outputs]`` (see :func:`~unitscope.ablate.split.class_map`) the target is a data class and the
    objective is the log of the softmax mass on all of its outputs (the same when each class has one)."""

    def objective(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_of(model(x))
        if class_of_output is None:
            return -F.cross_entropy(logits, target, reduction="none")
        inside = class_of_output.to(logits.device).unsqueeze(0) == target.unsqueeze(1)  # [N, outputs]
        return torch.logsumexp(logits.log_softmax(1).masked_fill(~inside, float("-inf")), 1)

    return objective


def pgd(
    x: torch.Tensor,
    target: torch.Tensor,
    objective: Objective,
    *,
    eps: float,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 10,
    step_size: float | None = None,
) -> torch.Tensor:
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
    return (adv.detach() - m) / s


def pixel_distance(x: torch.Tensor, y: torch.Tensor, std: Sequence[float]) -> torch.Tensor:
    """L-inf distance ``[N]`` in pixel units between two normalised batches."""
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return ((x - y) * s).abs().flatten(1).max(1).values


@torch.no_grad()
def unit_shift(model: nn.Module, layer: str, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Change ``[N, C]`` of each unit's spatially averaged activation from ``x`` to ``x_adv``."""
    with Trace(model, layer, stop=True) as t:
        model(x)
    before = spatial_mean(t.output)
    with Trace(model, layer, stop=True) as t:
        model(x_adv)
    return spatial_mean(t.output) - before


def attack_stage(
    exp,
    *,
    epsilons: Sequence[float] = (4 / 255, 8 / 255),
    images: int = 64,
    steps: int = 10,
    n: int = 5,
    seed: int = 0,
    batch_size: int = 16,
    examples: int = 3,
) -> dict:
    """Both attacks on up to ``images`` correctly classified val images of ``exp`` (an
    :class:`~unitscope.ablate.experiment.Experiment`), each towards a random other class (``seed``)."""
    n = min(n, exp.units)
    key = {"epsilons": [round(e, 8) for e in epsilons], "images": images, "steps": steps, "n": n, "seed": seed}
    result = exp.stage("attacks", key, lambda: _attack(exp, epsilons, images, steps, n, seed, batch_size, examples))
    with exp.catalog() as cat, cat.transaction():
        cat.replace("ablation_attacks", result["rows"], model=exp.name, layer=exp.layer)
        cat.replace(
            "ablation_examples",
            [{"kind": "attack", "rank": r, **e} for r, e in enumerate(result["examples"])],
            model=exp.name,
            layer=exp.layer,
            kind="attack",
        )
    return result


def _attack(exp, epsilons, images, steps, n, seed, batch_size, examples) -> dict:
    from unitscope.ablate.images import amplified_difference, write_strip

    model, info, layer = exp.model, exp.info, exp.layer
    ranking = exp.ranking()
    chosen = _correct_val_images(exp, images)
    gen = torch.Generator().manual_seed(seed)
    y = torch.tensor([exp.data.labels[p] for p in chosen], dtype=torch.long)
    target = (y + 1 + torch.randint(0, exp.num_classes - 1, (len(y),), generator=gen)) % exp.num_classes
    rows, shown = [], []
    for eps in epsilons:
        for method in ("units", "logits"):
            ok, linf, shift, pics = [], [], [], []
            for s in range(0, len(chosen), batch_size):
                x = torch.stack([exp.data[p][0] for p in chosen[s : s + batch_size]]).to(exp.device)
                yb, tb = y[s : s + batch_size], target[s : s + batch_size]
                objective = (
                    unit_objective(model, layer, ranking[yb, :n], ranking[tb, :n])
                    if method == "units"
                    else logit_objective(model, exp.class_of_output)
                )
                adv = pgd(x, tb.to(x.device), objective, eps=eps, mean=info.mean, std=info.std, steps=steps)
                with torch.no_grad():
                    pred = exp.class_of_output[logits_of(model(adv)).argmax(1).cpu()]
                ok.append(pred == tb)
                linf.append(pixel_distance(x, adv, info.std))
                shift.append(unit_shift(model, layer, x, adv))
                if s == 0 and eps == max(epsilons):
                    pics.append((x[:examples], adv[:examples], pred[:examples]))
            ok_all = torch.cat(ok)
            per_image = torch.cat(shift)  # [N, C]
            mean_shift = per_image.mean(0)
            # each image's own source and target key units
            src = float(per_image.gather(1, ranking[y, :n]).mean()) if len(y) else 0.0
            tgt = float(per_image.gather(1, ranking[target, :n]).mean()) if len(y) else 0.0
            moved = torch.argsort(-mean_shift.abs(), stable=True)[:5].tolist()
            rows.append(
                {
                    "method": method,
                    "epsilon": float(eps),
                    "images": len(chosen),
                    "success_rate": float(ok_all.float().mean()) if len(ok_all) else float("nan"),
                    "max_linf": float(torch.cat(linf).max()) if linf else 0.0,
                    "moved_units": ",".join(map(str, moved)),
                    "source_shift": src,
                    "target_shift": tgt,
                }
            )
            for x, adv, pred in pics:
                for r in range(len(x)):
                    clean, bad = _pixels(x[r], info), _pixels(adv[r], info)
                    rel = f"{exp.folder.relative_to(exp.out)}/attack_{method}_{r}.png"
                    write_strip(exp.out / rel, [clean, bad, amplified_difference(clean, bad)])
                    names = exp.data.class_names
                    shown.append(
                        {
                            "path": rel,
                            "caption": f"{method} attack, eps {eps * 255:.0f}/255: "
                            f"{names[int(y[r])]} → {names[int(pred[r])] if int(pred[r]) < len(names) else 'other'}"
                            f" (target {names[int(target[r])]})",
                        }
                    )
    return {"rows": rows, "examples": shown, "images": len(chosen)}


def _correct_val_images(exp, limit: int) -> list[int]:
    """Positions of the first ``limit`` val images the unedited model classifies correctly."""
    from unitscope.ablate.evaluate import Edits, predictions

    cache = exp.cache("val")
    none = Edits(torch.zeros(1, exp.units, dtype=torch.bool), torch.zeros(1, exp.units))
    pred = predictions(exp.cut, cache, none, exp.class_of_output)[0]
    labels = torch.cat(cache.labels)
    return [exp.val_pos[i] for i in range(len(labels)) if pred[i] == labels[i]][:limit]


def _pixels(x: torch.Tensor, info) -> torch.Tensor:
    m = torch.as_tensor(info.mean).reshape(-1, 1, 1)
    s = torch.as_tensor(info.std).reshape(-1, 1, 1)
    return (x.cpu() * s + m).clamp(0, 1)
