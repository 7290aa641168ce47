"""Class-critical directions of a layer's bases, written to the catalog for the report (issue 27).

    unitscope ablate critical --model world_scenes --layer features.relu5 --data probe-world \
        --out RUN --bases units,ica,sae --ns 5,10,20 --split 600:1600,1600:2000
    from unitscope.bases.critical import class_critical
    rows = class_critical(cut, train, val, {"units": identity_basis(128), "sae": sae}, class_of_output, names)

For every basis of the layer (``units``, or a basis saved in the dissection run ``RUN/bases``),
each direction is removed alone on the train split (:func:`.importance.direction_importance`,
ranked per class as ``unitscope ablate`` ranks units), then each class's top ``n`` directions are
removed together on the val split, beside ``n`` directions drawn at random (``seeds`` draws). The
rows go to ``basis_critical`` (accuracy of the class before, after; the other classes; random) and
``basis_critical_top`` (each class's top directions, with their single drops); the report's bases
part joins them with the dissection labels and held-out descriptions of those directions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache
from unitscope.bases.basis import Basis, load_basis
from unitscope.bases.importance import direction_importance, top_n_directions
from unitscope.bases.source import SEP, identity_basis
from unitscope.bases.tables import CRITICAL, CRITICAL_TOP
from unitscope.errors import UsageError
from unitscope.runs import CATALOG

DEFAULT_NS = (5, 10, 20)
TOP = 5  # directions per class kept in basis_critical_top (labels, descriptions in the report)


def class_critical(
    cut: FxCut | HookCut,
    train: LayerCache,
    val: LayerCache,
    bases: Mapping[str, Basis],
    class_of_output: torch.Tensor,
    class_names: Sequence[str],
    *,
    ns: Sequence[int] = DEFAULT_NS,
    seeds: int = 3,
    top: int = TOP,
    max_batch: int = 512,
) -> dict[str, dict[str, Any]]:
    """Per basis name: ``{"rows": [...] (basis_critical rows without model/layer), "top": [...]
    (basis_critical_top rows), "directions", "base_accuracy" (train)}``. ``random`` in a row is the
    class's accuracy with ``n`` random directions removed, the mean of ``seeds`` draws (seeded
    0, 1, ...: the same draws for every run)."""
    y = len(class_names)
    out: dict[str, dict[str, Any]] = {}
    for name, basis in bases.items():
        d = basis.directions.shape[0]
        if max(ns) > d:
            raise UsageError(f"--ns {max(ns)} is more than the {d} directions of basis {name!r}; use smaller ns")
        imp = direction_importance(cut, train, basis, class_of_output, y, max_batch=max_batch)
        ranking = imp.ranking()  # [Y, D]
        rows = top_n_directions(cut, val, basis, ranking, class_of_output, y, ns, max_batch=max_batch)
        rand: dict[tuple[int, int], list[float]] = {}
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            shuffled = torch.stack([torch.randperm(d, generator=g) for _ in range(y)])
            for r in top_n_directions(cut, val, basis, shuffled, class_of_output, y, ns, max_batch=max_batch)[1:]:
                rand.setdefault((r["class"], r["n"]), []).append(r["accuracy"])
        out[name] = {
            "directions": d,
            "base_accuracy": imp.base_accuracy,
            "rows": [
                {
                    "class": class_names[r["class"]],
                    "n": r["n"],
                    "before": r["before"],
                    "after": r["accuracy"],
                    "others": r["others"],
                    "random": sum(rand[r["class"], r["n"]]) / seeds if seeds else None,
                }
                for r in rows[1:]
            ],
            "top": [
                {
                    "class": class_names[c],
                    "rank": i,
                    "unit": int(j),
                    "accuracy_drop": float(imp.drop[j, c]),
                    "probability_drop": float(imp.probability_drop[j, c]) if imp.probability_drop is not None else None,
                }
                for c in range(y)
                for i, j in enumerate(ranking[c, :top].tolist())
            ],
        }
    return out


def run_bases(run: str | Path, layer: str, names: Sequence[str], channels: int) -> dict[str, Basis]:
    """``units`` (the identity of ``channels``) and the bases ``names`` fitted on ``layer`` and saved
    in dissection run ``run`` (``run/bases/l<i>/<name>``); an unknown name lists the run's bases."""
    folder = Path(run) / "bases"
    saved: dict[str, Path] = {}
    for fit in sorted(folder.glob("l*/*/fit.json")):
        if json.loads(fit.read_text()).get("want", {}).get("layer") == layer:
            saved[fit.parent.name] = fit.parent
    out: dict[str, Basis] = {}
    for name in names:
        if name == "units":
            out[name] = identity_basis(channels)
        elif name in saved:
            out[name] = load_basis(saved[name])
        else:
            raise UsageError(
                f"{run} has no basis {name!r} of {layer}: it has {', '.join(['units', *sorted(saved)])}; "
                f"fit it with `unitscope dissect --layers {layer} --basis {name} --out {run}`"
            )
    return out


def basis_layer(layer: str, name: str) -> str:
    """The name a basis' directions were dissected as: the layer for ``units``, else ``layer#name``."""
    return layer if name == "units" else f"{layer}{SEP}{name}"


def write_critical(run: str | Path, model: str, layer: str, result: Mapping[str, Mapping[str, Any]]) -> None:
    """``result`` (:func:`class_critical`) into the catalog of ``run``, replacing each basis' earlier rows."""
    from unitscope.catalog import Catalog

    with Catalog(Path(run) / CATALOG) as cat, cat.transaction():
        for name, r in result.items():
            where = {"model": model, "layer": layer, "basis_layer": basis_layer(layer, name)}
            cat.replace(CRITICAL, [{"basis": name, **row} for row in r["rows"]], **where)
            cat.replace(CRITICAL_TOP, list(r["top"]), **where)


def parse_split(text: str, n: int) -> tuple[list[int], list[int]]:
    """``"600:1600,1600:2000"`` -> (train positions, val positions) of a data set of ``n`` images."""
    try:
        parts = [tuple(int(x) for x in p.split(":")) for p in text.split(",")]
        (a, b), (c, d) = parts
    except ValueError:
        raise UsageError(
            f"--split takes train and val positions as START:END,START:END (e.g. 600:1600,1600:2000), got {text!r}"
        ) from None
    if not (0 <= a < b <= n and 0 <= c < d <= n):
        raise UsageError(f"--split {text}: each START:END must lie within the data's {n} images, START < END")
    return list(range(a, b)), list(range(c, d))


def critical_stage(
    exp: Any, names: Sequence[str], ns: Sequence[int], split: str = "", seeds: int = 3
) -> dict[str, Any]:
    """``unitscope ablate critical``: :func:`class_critical` for the bases ``names`` of the
    experiment's layer saved in its run folder (``exp.out``, a ``dissect --basis`` run), on
    ``split`` (or the data's own train/val split), written to the catalog; returns the result."""
    from unitscope.ablate.evaluate import cache_layer

    if split:
        train_pos, val_pos = parse_split(split, len(exp.data))
        caches = [
            cache_layer(exp.cut, exp.data, p, batch_size=exp.batch_size, device=exp.device, progress=exp.progress)
            for p in (train_pos, val_pos)
        ]
    else:
        caches = [exp.cache("train"), exp.cache("val")]
    bases = run_bases(exp.out, exp.layer, names, caches[1].batches[0].layer.shape[1])
    fewest = min(b.directions.shape[0] for b in bases.values())
    ns = sorted({n for n in ns if 0 < n <= fewest})
    if not ns:
        raise UsageError(f"--ns: no size is between 1 and {fewest}, the directions of the smallest basis")
    result = class_critical(
        exp.cut,
        caches[0],
        caches[1],
        bases,
        exp.class_of_output,
        exp.data.class_names,
        ns=ns,
        seeds=seeds,
        max_batch=exp.max_batch,
    )
    write_critical(exp.out, exp.name, exp.layer, result)
    return result


def print_critical(result: Mapping[str, Mapping[str, Any]]) -> None:
    """One line per basis: the class means before, after its top n and after n random directions."""
    for name, r in result.items():
        rows = r["rows"]
        ns = sorted({x["n"] for x in rows})

        def mean(key: str, n: int) -> float:
            v = [x[key] for x in rows if x["n"] == n and x[key] is not None]
            return 100 * sum(v) / len(v) if v else float("nan")

        before = 100 * sum(x["before"] for x in rows if x["n"] == ns[0]) / len([x for x in rows if x["n"] == ns[0]])
        print(
            f"  {name:10s} {r['directions']:5d} directions: class {before:.1f}% -> top "
            + " / ".join(f"{n}: {mean('after', n):.1f}%" for n in ns)
            + "; random "
            + " / ".join(f"{mean('random', n):.1f}%" for n in ns)
        )
