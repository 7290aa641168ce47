"""Analysis by description: ablate a layer's units cumulatively in orders given by their descriptions.

    from unitscope.audit.analysis import description_ablation, plain_set, plot_curves, write_ablation
    test = plain_set("/tmp/worlds", seed=3, n=2000)                      # held-out images, no sign
    out = description_ablation(model, "runs/scenes", "features.relu5", test, seeds=5)
    out["mean"]["unrelated"]       # accuracy [F], mean over seeds; out["accuracy"][name] [S, F]
    out = description_ablation(lite0, "runs/lite0", "bn2", photos, features=["length", "f1"], metric="fidelity")
    write_ablation("runs/scenes", out); plot_curves(out, "runs/scenes/desc-ablation.png")

MILAN's analysis (Hernandez et al., ICLR 2022, sec. 7): which kinds of units matter, judged by their
descriptions. The issue's three orderings of a layer's units, each removed cumulatively (set to zero):

- ``unrelated``: units whose ``pmi`` description is **compositional and joins unrelated concepts**
  first: at least two positive concepts (:func:`unitscope.describe.search.positive_concepts`), of
  which some pair is *unrelated*: the probe images show them together less often than chance
  (image-level lift ``n * both / (count_a * count_b) < 1``, never together included) on the run's
  dissection data set (:func:`image_presence`; position words such as "top" are no concepts and
  join nothing);
- ``single``: units described by **one concept** alone (the formula is a bare concept) first;
- ``random``: a random order.

Within a group units go by the description's held-out F1, best first (ties: lower unit); after the
group the rest of the layer follows in seed ``s``'s random order (the same permutation the random
ordering uses for that seed), so each ordering has ``seeds`` curves and the spread shows how much
the tail matters. ``features`` adds MILAN-style continuous orderings over the whole layer, highest
and lowest value first (:mod:`unitscope.audit.features`: ``length_high``, ``f1_low``, ...).

The metric is ``accuracy`` (top-1 on held-out scene images) or ``fidelity`` (top-1 agreement with the
unablated model, for any classifier, e.g. an ImageNet model on photo-world images that have no
ImageNet labels), at fractions ``0, 1/steps, ..., 1``; the layer's output is cached once and only
the tail runs per edit (``ablate.evaluate.run_edits``). ``out["summary"]`` gives per ordering the
area under the curve with its seed range and bootstrap interval over images, and the gap to random.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.audit.edit import EvalSet

Related = Callable[[str, str], bool]
ORDERINGS = ("unrelated", "single", "random")


def plain_set(
    cache: str | Path, seed: int, n: int, size: int = 64, render_size: int = 64, progress: bool = False
) -> EvalSet:
    """Images ``0..n-1`` of the plain world ``seed``, normalised ``[N, 3, S, S]``, with their scenes ``[N]``."""
    from unitscope.organisms.data import resized, world_arrays
    from unitscope.organisms.tasks import normalise

    data = resized(world_arrays(cache, seed, n, render_size, progress=progress), size)
    return EvalSet(normalise(data["rgb"]), torch.from_numpy(np.asarray(data["scene"], np.int64)))


def image_presence(world: str | Path) -> dict[str, np.ndarray]:
    """``{concept: bool [N]}``: which images of the Broden-format data set show each concept
    (any pixel of any plane, or an image-level label such as the scene)."""
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(world, validate="none")
    names = ds.label_names
    seen = np.zeros((len(ds), len(names)), bool)
    for i in range(len(ds)):
        item = ds.get(i, image=False)
        seen[i, np.unique(item["labels"].numpy())] = True
        seen[i, item["image_labels"].numpy()] = True  # the scene's label number among them
    seen[:, 0] = False
    return {str(n).lower(): seen[:, k] for k, n in enumerate(names) if n and seen[:, k].any()}


def cooccurrence_relation(presence: dict[str, np.ndarray]) -> Related:
    """``related(a, b)``: the images show ``a`` and ``b`` together at least as often as chance
    (lift >= 1). A word that is no concept of the images (the descriptions' position words: top,
    bottom, edge) counts as related to everything: it joins nothing unrelated."""

    def related(a: str, b: str) -> bool:
        pa, pb = presence.get(a), presence.get(b)
        if pa is None or pb is None:
            return True
        n, both = len(pa), int((pa & pb).sum())
        return both * n >= int(pa.sum()) * int(pb.sum())

    return related


def is_single(formula: str | None) -> bool:
    """The formula is one bare concept."""
    from unitscope.describe.search import positive_concepts

    return (
        bool(formula)
        and len(positive_concepts(formula)) == 1
        and not any(op in str(formula) for op in (" AND ", " OR ", "NOT "))
    )


def joins_unrelated(formula: str | None, related: Related) -> bool:
    """The formula asserts two or more concepts, some pair of them unrelated."""
    from unitscope.describe.search import positive_concepts

    concepts = list(dict.fromkeys(positive_concepts(formula)))
    return any(not related(a, b) for a, b in itertools.combinations(concepts, 2))


def description_groups(rows: Sequence[dict[str, Any]], related: Related) -> dict[str, list[dict[str, Any]]]:
    """The units each description ordering puts first (``unrelated``, ``single``), in order: by the
    description's ``f1``, best first (ties: lower unit). ``rows``: ``pmi`` description rows of one layer."""

    def key(r: dict) -> tuple:
        return (-(r.get("f1") or 0.0), int(r["unit"]))

    return {
        "unrelated": sorted((r for r in rows if joins_unrelated(r.get("formula"), related)), key=key),
        "single": sorted((r for r in rows if is_single(r.get("formula"))), key=key),
    }


def unit_orders(units: int, groups: dict[str, list[int]], seeds: Sequence[int]) -> dict[str, list[list[int]]]:
    """``{ordering: [order per seed]}``: each group's units first, the rest in seed ``s``'s random order
    (``torch.randperm(units)`` of ``manual_seed(s)``, as :func:`unitscope.ablate.curves.curve_masks`);
    ``random`` is that permutation itself."""
    out: dict[str, list[list[int]]] = {name: [] for name in ORDERINGS}
    for s in seeds:
        perm = torch.randperm(units, generator=torch.Generator().manual_seed(int(s))).tolist()
        for name in ORDERINGS:
            first = [] if name == "random" else [int(u) for u in groups[name]]
            chosen = set(first)
            out[name].append(first + [u for u in perm if u not in chosen])
    return out


METRICS = ("accuracy", "fidelity")


def description_ablation(
    model: nn.Module,
    run: str | Path,
    layer: str,
    test: EvalSet,
    *,
    seeds: int = 5,
    steps: int = 20,
    model_name: str | None = None,
    related: Related | None = None,
    batch_size: int = 250,
    features: Sequence[str] = (),
    metric: str = "accuracy",
    boot: int = 1000,
    max_batch: int = 2000,
    presence: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The orderings' curves for ``layer`` of ``model`` on ``test`` (module doc): the three of
    ``ORDERINGS`` and ``FEATURE_high``/``_low`` for each of ``features``
    (:mod:`unitscope.audit.features`). ``metric`` ``accuracy``: top-1 against ``test.y`` (the
    model's outputs are those classes); ``fidelity``: top-1 agreement with the unablated model
    (``test.y`` unused: any classifier). ``related`` defaults to co-occurrence on the run's data set,
    ``presence`` (which images show each concept, for ``related`` and the ``lift`` feature) to the
    run's data set's (:func:`image_presence`).
    Returns ``model``, ``layer``, ``units``, ``metric``, ``fractions`` [F], ``groups`` {ordering:
    description rows}, ``accuracy`` {ordering: [S, F]}, ``mean`` {ordering: [F]}, ``summary``
    (:func:`unitscope.audit.features.summarise` rows, with ``model``, ``layer``, ``metric``)."""
    from unitscope.ablate.curves import order_masks
    from unitscope.ablate.cut import cut_model
    from unitscope.ablate.evaluate import Edits, Predictions, cache_layer, run_edits
    from unitscope.audit.features import feature_orders, summarise
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    run = Path(run)
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        name = model_name or str(cat.query("SELECT DISTINCT model FROM layers")[0]["model"])
        rows = cat.rows("descriptions", model=name, layer=layer, kind="pmi")
    if not rows:
        raise ValueError(f"{run} has no descriptions of {name} {layer}: run `unitscope describe {run}` first")
    if presence is None and (related is None or "lift" in features):
        import json

        presence = image_presence(json.loads((run / "config.json").read_text())["data"])
    if related is None:
        assert presence is not None
        related = cooccurrence_relation(presence)
    groups = description_groups(rows, related)
    model.eval()
    cut = cut_model(model, layer)
    with torch.no_grad():
        cache = cache_layer(cut, torch.utils.data.TensorDataset(test.x, test.y), batch_size=batch_size)
        units = int(cache.batches[0].layer.shape[1])
        fractions = [k / steps for k in range(steps + 1)]
        orders = unit_orders(units, {k: [int(r["unit"]) for r in v] for k, v in groups.items()}, range(seeds))
        orders.update(feature_orders(rows, units, features, range(seeds), presence))
        names = list(orders)
        masks = order_masks([o for n in names for o in orders[n]], units, fractions)
        top1 = Predictions()
        run_edits(cut, cache, Edits.ablate(masks, "zero"), top1, max_batch=max_batch)
    pred = top1.result().reshape(len(names), seeds, len(fractions), -1)
    truth = torch.cat(cache.labels).long() if metric == "accuracy" else pred[0, 0, 0]  # fraction 0: unablated
    correct = (pred == truth).numpy()
    acc = {n: correct[i].mean(-1) for i, n in enumerate(names)}
    summary = [dict(r, model=name, layer=layer, metric=metric) for r in summarise(fractions, correct, names, boot=boot)]
    return {
        "model": name,
        "layer": layer,
        "units": units,
        "metric": metric,
        "fractions": fractions,
        "groups": groups,
        "accuracy": acc,
        "mean": {n: a.mean(0) for n, a in acc.items()},
        "summary": summary,
    }


def write_ablation(run: str | Path, out: dict[str, Any]) -> None:
    """``out`` (:func:`description_ablation`) into the catalog: ``desc_ablation``, ``desc_ablation_units``,
    ``desc_ablation_summary``."""
    from unitscope.audit import tables  # noqa: F401  (declares the tables)
    from unitscope.catalog import Catalog

    model, layer, units = out["model"], out["layer"], out["units"]
    curves = [
        {
            "model": model,
            "layer": layer,
            "ordering": o,
            "seed": s,
            "fraction": float(f),
            "units": int(round(f * units)),
            "accuracy": float(out["accuracy"][o][s, k]),
        }
        for o in out["accuracy"]
        for s in range(out["accuracy"][o].shape[0])
        for k, f in enumerate(out["fractions"])
    ]
    first = [
        {
            "model": model,
            "layer": layer,
            "ordering": o,
            "unit": int(r["unit"]),
            "rank": i,
            "description": r.get("description"),
            "formula": r.get("formula"),
        }
        for o, rows in out["groups"].items()
        for i, r in enumerate(rows)
    ]
    with Catalog(Path(run) / "catalog.sqlite") as cat:
        cat.replace("desc_ablation", curves, model=model, layer=layer)
        cat.replace("desc_ablation_units", first, model=model, layer=layer)
        cat.replace("desc_ablation_summary", out.get("summary", []), model=model, layer=layer)


COLOURS = {
    "unrelated": (200, 60, 40),
    "single": (40, 110, 200),
    "random": (90, 90, 90),
    "length_high": (230, 140, 0),
    "length_low": (150, 90, 200),
    "f1_high": (30, 150, 70),
    "f1_low": (120, 60, 20),
    "lift_high": (0, 160, 160),
    "lift_low": (200, 0, 140),
}
EXTRA = [(110, 110, 0), (0, 0, 0), (0, 90, 120)]
METRIC_TEXT = {"accuracy": "accuracy (held-out)", "fidelity": "agreement with the unablated top-1 (held-out)"}


def plot_curves(out: dict[str, Any], path: str | Path, width: int = 640, height: int = 400) -> Path:
    """A PNG of accuracy (or fidelity) against the fraction removed: each ordering's mean over seeds,
    its range over seeds shaded; the legend gives each ordering's area under the mean curve."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img, "RGBA")
    left, right, top, bottom = 56, width - 16, 34, height - 44
    fr = np.asarray(out["fractions"], np.float64)
    names = list(out["accuracy"])
    auc = {r["ordering"]: r["auc"] for r in out.get("summary", [])}

    def xy(f: float, a: float) -> tuple[float, float]:
        return left + f * (right - left), bottom - a * (bottom - top)

    for k in range(11):
        v = k / 10
        d.line([xy(0, v), xy(1, v)], fill=(235, 235, 235))
        d.text((left - 30, xy(0, v)[1] - 6), f"{v:.1f}", fill="black")
        d.text((xy(v, 0)[0] - 8, bottom + 6), f"{v:.1f}", fill="black")
    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left + (right - left) / 2 - 80, bottom + 24), "fraction of units removed", fill="black")
    what = METRIC_TEXT.get(out.get("metric", "accuracy"), "accuracy")
    d.text((left, 8), f"{out['model']} {out['layer']}: {what} as units are removed", fill="black")
    for i, o in enumerate(names):
        a = np.asarray(out["accuracy"][o], np.float64)
        c = COLOURS.get(o, EXTRA[i % len(EXTRA)])
        band = [xy(f, v) for f, v in zip(fr, a.max(0))] + [xy(f, v) for f, v in zip(fr[::-1], a.min(0)[::-1])]
        d.polygon(band, fill=c + (40,))
        d.line([xy(f, v) for f, v in zip(fr, a.mean(0))], fill=c + (255,), width=2)
        n = len(out["groups"].get(o, []))
        label = o + (f" first ({n} units)" if o in out["groups"] else f" ({a.shape[0]} seeds)" if o == "random" else "")
        if o in auc:
            label += f", area {auc[o]:.3f}"
        ly = bottom - 16 * len(names) - 4 + 16 * i  # legend bottom left: the curves stay high until late
        d.rectangle([left + 8, ly - 1, left + 250, ly + 14], fill=(255, 255, 255, 200))
        d.line([(left + 12, ly + 6), (left + 32, ly + 6)], fill=c + (255,), width=2)
        d.text((left + 37, ly), label, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
