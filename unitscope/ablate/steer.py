"""Steering through units (Bau et al., PNAS 2020): switch off class A's key units, drive class B's
to a high quantile of their activation, and count how often predictions flip from A to B.

    high = unit_quantiles(train_cache, 0.99)                          # [C]
    rows, edits = steering(cut, val_cache, ranking, high, class_of_output, num_classes, n=5)
    rows[0]   # {"source": A, "target": B, "flip_rate": .., "base_rate": .., "images": ..}

``flip_rate`` is the fraction of class-A images predicted B after the edit; ``base_rate`` the
same fraction without it. Every (A, B) pair runs as one batched edit of the cached layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import Edits, LayerCache, confusion
from unitscope.stats import Quantile


def unit_quantiles(cache: LayerCache, q: float) -> torch.Tensor:
    """Each unit's ``q`` quantile ``[C]`` over every image and position of ``cache`` (streaming sketch)."""
    stat = Quantile()
    for batch in cache.batches:
        z = batch.layer
        stat.add(z if z.dim() in (2, 4) else z.flatten(2))
    return stat.quantiles(q).float()


def steering_edits(ranking: torch.Tensor, high: torch.Tensor, pairs: Sequence[tuple[int, int]], n: int) -> Edits:
    """One edit per (A, B): A's top-``n`` units to 0, B's top-``n`` to ``high`` (B wins on overlap)."""
    c = ranking.shape[1]
    mask = torch.zeros(len(pairs), c, dtype=torch.bool)
    value = torch.zeros(len(pairs), c)
    for k, (a, b) in enumerate(pairs):
        mask[k, ranking[a, :n]] = True
        value[k, ranking[a, :n]] = 0.0
        mask[k, ranking[b, :n]] = True
        value[k, ranking[b, :n]] = high[ranking[b, :n]]
    return Edits(mask, value)


def all_pairs(num_classes: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(num_classes) for b in range(num_classes) if a != b]


def steering(
    cut: FxCut | HookCut,
    cache: LayerCache,
    ranking: torch.Tensor,
    high: torch.Tensor,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    n: int = 5,
    pairs: Sequence[tuple[int, int]] | None = None,
    max_batch: int = 512,
    progress: bool = False,
) -> tuple[list[dict], Edits]:
    """Rows per (A, B) pair (see the module docstring) and the edits used, in the rows' order."""
    pairs = list(pairs) if pairs is not None else all_pairs(num_classes)
    edits = steering_edits(ranking, high, pairs, n)
    none = Edits(torch.zeros(1, edits.mask.shape[1], dtype=torch.bool), torch.zeros(1, edits.mask.shape[1]))
    both = Edits(torch.cat([none.mask, edits.mask]), torch.cat([none.value, edits.value]))
    conf = confusion(cut, cache, both, class_of_output, num_classes, max_batch=max_batch, progress=progress)
    count = conf[0].sum(1)
    rows = []
    for k, (a, b) in enumerate(pairs):
        images = int(count[a])
        rows.append(
            {
                "source": a,
                "target": b,
                "units": n,
                "images": images,
                "flip_rate": float(conf[k + 1, a, b]) / max(images, 1),
                "base_rate": float(conf[0, a, b]) / max(images, 1),
            }
        )
    return rows, edits


def steering_stage(exp, *, n: int = 5, quantile: float = 0.99, examples: int = 4) -> dict:
    """Steering on ``exp`` (an :class:`~unitscope.ablate.experiment.Experiment`): rows in the catalog,
    before/after examples for the pair that flips most; returns the summary."""
    from unitscope.ablate.evaluate import predictions
    from unitscope.ablate.images import write_strip

    n = min(n, exp.units)

    def compute():
        high = unit_quantiles(exp.cache("train"), quantile)
        rows, edits = steering(
            exp.cut,
            exp.cache("val"),
            exp.ranking(),
            high,
            exp.class_of_output,
            exp.num_classes,
            n=n,
            max_batch=exp.max_batch,
            progress=exp.progress,
        )
        best = max(range(len(rows)), key=lambda k: (rows[k]["flip_rate"] - rows[k]["base_rate"], -k))
        a, b = rows[best]["source"], rows[best]["target"]
        preds = predictions(
            exp.cut,
            exp.cache("val"),
            Edits(
                torch.cat([torch.zeros_like(edits.mask[:1]), edits.mask[best : best + 1]]),
                torch.cat([torch.zeros_like(edits.value[:1]), edits.value[best : best + 1]]),
            ),
            exp.class_of_output,
        )
        labels = torch.cat(exp.cache("val").labels)
        chosen = [i for i in range(len(labels)) if labels[i] == a and preds[1, i] == b][:examples]
        shown = []
        for r, i in enumerate(chosen):
            rel = f"{exp.folder.relative_to(exp.out)}/steer_{r}.png"
            write_strip(exp.out / rel, [exp.data.load_pil(exp.val_pos[i])])
            shown.append(
                {
                    "path": rel,
                    "caption": f"a {_name(exp, a)} image: predicted {_name(exp, int(preds[0, i]))}"
                    f" → {_name(exp, int(preds[1, i]))}",
                }
            )
        return {"rows": rows, "best": [a, b], "examples": shown, "quantile": quantile, "n": n}

    result = exp.stage("steering", {"n": n, "quantile": quantile}, compute)
    names = exp.data.class_names
    with exp.catalog() as cat, cat.transaction():
        cat.replace(
            "ablation_steering",
            [{**r, "source": names[r["source"]], "target": names[r["target"]]} for r in result["rows"]],
            model=exp.name,
            layer=exp.layer,
        )
        cat.replace(
            "ablation_examples",
            [{"kind": "steering", "rank": r, **e} for r, e in enumerate(result["examples"])],
            model=exp.name,
            layer=exp.layer,
            kind="steering",
        )
    rows = result["rows"]
    result["flip_rate"] = float(np.mean([r["flip_rate"] for r in rows])) if rows else float("nan")
    result["base_rate"] = float(np.mean([r["base_rate"] for r in rows])) if rows else float("nan")
    return result


def _name(exp, cls: int) -> str:
    return exp.data.class_names[cls] if cls < len(exp.data.class_names) else "other"
