"""Edit a model through its unit descriptions: remove the units a text query finds (MILAN, sec. 6).

    from unitscope.audit.edit import cue_sets, edit_experiment
    sets = cue_sets(cache="/tmp/worlds", seed=3, n=2000)           # clean / agree / conflict test images
    val = cue_sets(cache="/tmp/worlds", seed=4, n=1000)
    out = edit_experiment(model, "runs/cue", "sign", val, sets)     # the run is dissected and described
    out["results"]      # rows of edit_results: none, described, random (5 draws), important
    out["edit"].save("cue.edit.json")                              # create_model("cue.edit.json") reloads it

Steps, as MILAN's editing experiment on a model trained with a spurious cue:

1. **Find** the units whose descriptions match ``query`` (:func:`unitscope.describe.search.search_units`
   on the run's ``pmi`` descriptions, every described layer, match >= ``min_match``).
2. **Order** them by single-unit validation accuracy: each removed alone (set to zero), the accuracy
   on cue-conflicting validation images; best first.
3. **Choose how many**: remove the first k of that order (k = 1..10, then every second to 20, every
   fifth after, and all: :func:`counts`); keep the count with the best
   conflicting validation accuracy whose clean validation accuracy is within ``tolerance`` of the
   unedited model's (ties: fewer units).
4. **Test** on held-out images: the edit against as many random units of the same layers (same
   count per layer, ``draws`` draws) and as many most important units (per layer, the largest
   single-unit drop of clean validation accuracy on the first ``importance_images``), on clean,
   agreeing and conflicting images.

Everything runs the live model with :class:`unitscope.hooks.Ablate` (``unitscope.edits`` underneath),
so an edit spanning several layers is evaluated as it will be served.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unitscope.edited import EditFile
from unitscope.hooks import Ablate
from unitscope.runs import CATALOG

Removal = dict[str, list[int]]  # layer -> units set to zero


@dataclass
class EvalSet:
    """Normalised images ``x`` ``[N, 3, S, S]`` and their scene ``y`` ``[N]``."""

    x: torch.Tensor
    y: torch.Tensor


SETS = ("clean", "agree", "conflict")


def cue_sets(
    cache: str | Path, seed: int, n: int, size: int = 64, render_size: int = 64, progress: bool = False
) -> dict[str, EvalSet]:
    """Images ``0..n-1`` of world ``seed``: without a sign (``clean``), with a sign naming their scene
    (``agree``) and with one naming another scene (``conflict``); the scenes under the signs are the same
    images in all three (:mod:`unitscope.world.cue` draws the sign from its own stream)."""
    from unitscope.organisms.data import resized, world_arrays
    from unitscope.organisms.tasks import normalise
    from unitscope.world.cue import CueSpec

    specs = {"clean": None, "agree": CueSpec(1.0, 1.0), "conflict": CueSpec(1.0, 0.0)}
    out = {}
    for name, spec in specs.items():
        data = resized(world_arrays(cache, seed, n, render_size, progress=progress, cue=spec), size)
        out[name] = EvalSet(normalise(data["rgb"]), torch.from_numpy(np.asarray(data["scene"], np.int64)))
    return out


@torch.no_grad()
def accuracy(model: nn.Module, data: EvalSet, removal: Removal | None = None, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on ``data`` with ``removal``'s units set to zero."""
    model.eval()
    correct = 0
    with ExitStack() as stack:
        for layer, units in (removal or {}).items():
            if units:
                stack.enter_context(Ablate(model, layer, units))
        for s in range(0, len(data.y), batch_size):
            correct += int((model(data.x[s : s + batch_size]).argmax(1) == data.y[s : s + batch_size]).sum())
    return correct / max(1, len(data.y))


def removal_of(units: Sequence[tuple[str, int]]) -> Removal:
    out: Removal = {}
    for layer, unit in units:
        out.setdefault(layer, []).append(int(unit))
    return out


def find_units(run: str | Path, query: str, layers: list[str] | None = None, min_match: float = 0.5) -> list[dict]:
    """Description rows (with ``match``) of the units whose descriptions match ``query``."""
    from unitscope.describe.search import search_units

    return [h for h in search_units(run, query, layers=layers, limit=0) if h["match"] >= min_match]


def order_units(model: nn.Module, hits: list[dict], val_conflict: EvalSet) -> list[dict]:
    """``hits`` with ``single_accuracy`` (conflicting validation images, the unit alone removed), best first."""
    rows = [dict(h, single_accuracy=accuracy(model, val_conflict, {h["layer"]: [int(h["unit"])]})) for h in hits]
    rows.sort(key=lambda r: (-r["single_accuracy"], -r["match"], r["layer"], r["unit"]))
    return rows


def counts(n: int) -> list[int]:
    """The numbers of units tried: every one up to 10, every second to 20, every fifth after, and ``n``."""
    ks = [k for k in range(1, n + 1) if k <= 10 or (k <= 20 and k % 2 == 0) or k % 5 == 0]
    return ks if not n or ks[-1] == n else ks + [n]


def choose_count(
    model: nn.Module, ordered: list[dict], val: dict[str, EvalSet], tolerance: float = 0.02
) -> tuple[int, list[dict]]:
    """(how many of ``ordered`` to remove, the validation curve ``[{"k", "clean", "conflict"}]``)."""
    base_clean = accuracy(model, val["clean"])
    curve = [{"k": 0, "clean": base_clean, "conflict": accuracy(model, val["conflict"])}]
    for k in counts(len(ordered)):
        removal = removal_of([(r["layer"], r["unit"]) for r in ordered[:k]])
        curve.append(
            {
                "k": k,
                "clean": accuracy(model, val["clean"], removal),
                "conflict": accuracy(model, val["conflict"], removal),
            }
        )
    allowed = [c for c in curve if c["clean"] >= base_clean - tolerance - 1e-12]
    best = max(allowed, key=lambda c: (c["conflict"], -c["k"]))
    return best["k"], curve


def layer_units(model: nn.Module, layer: str, example: torch.Tensor) -> int:
    """Number of units of ``layer`` (one forward pass on ``example`` ``[1, 3, S, S]``)."""
    from unitscope.hooks import Trace, unit_dim

    with torch.no_grad(), Trace(model, layer) as t:
        model(example)
    return int(t.output.shape[unit_dim(t.output)])


def importance_ranking(model: nn.Module, layer: str, val_clean: EvalSet) -> list[int]:
    """Units of ``layer`` by decreasing single-unit drop of clean validation accuracy (ties: lower unit)."""
    base = accuracy(model, val_clean)
    n = layer_units(model, layer, val_clean.x[:1])
    drops = [base - accuracy(model, val_clean, {layer: [u]}) for u in range(n)]
    return sorted(range(n), key=lambda u: (-drops[u], u))


def edit_experiment(
    model: nn.Module,
    run: str | Path,
    query: str,
    val: dict[str, EvalSet],
    test: dict[str, EvalSet],
    *,
    layers: list[str] | None = None,
    min_match: float = 0.5,
    tolerance: float = 0.02,
    draws: int = 5,
    seed: int = 0,
    model_name: str | None = None,
    checkpoint: str | None = None,
    importance_images: int = 500,
    say=print,
) -> dict:
    """Find, order, choose and test (module doc). Returns ``units`` (rows of ``edit_units``),
    ``results`` (rows of ``edit_results``), ``curve`` (validation) and ``edit`` (an :class:`EditFile`)."""
    from unitscope.models import get_info

    name = model_name or get_info(model).name
    hits = find_units(run, query, layers, min_match)
    if not hits:
        raise ValueError(
            f"no unit of {run} has a description matching {query!r} (match >= {min_match}); "
            f"try `unitscope search {run} {query!r}` or another query"
        )
    say(
        f"{len(hits)} units match {query!r}: "
        + ", ".join(f"{h['layer']}:{h['unit']}" for h in hits[:12])
        + (" ..." if len(hits) > 12 else "")
    )
    ordered = order_units(model, hits, val["conflict"])
    k, curve = choose_count(model, ordered, val, tolerance)
    chosen = ordered[:k]
    removal = removal_of([(r["layer"], r["unit"]) for r in chosen])
    at = next(c for c in curve if c["k"] == k)
    say(
        f"removing {k} of them (validation: conflict {curve[0]['conflict']:.3f} -> {at['conflict']:.3f}, "
        f"clean {curve[0]['clean']:.3f} -> {at['clean']:.3f})"
    )

    def row(kind: str, draw: int, rem: Removal) -> dict:
        accs = {s: accuracy(model, test[s], rem) for s in SETS}
        return {
            "model": name,
            "query": query,
            "kind": kind,
            "draw": draw,
            "units": sum(len(v) for v in rem.values()),
            **accs,
        }

    results = [row("none", 0, {}), row("described", 0, removal)]
    gen = torch.Generator().manual_seed(seed)
    sizes = {layer: layer_units(model, layer, val["clean"].x[:1]) for layer in removal}
    for d in range(draws):
        rand = {
            layer: sorted(torch.randperm(sizes[layer], generator=gen)[: len(u)].tolist())
            for layer, u in removal.items()
        }
        results.append(row("random", d, rand))
    few = EvalSet(val["clean"].x[:importance_images], val["clean"].y[:importance_images])
    important = {layer: sorted(importance_ranking(model, layer, few)[: len(u)]) for layer, u in removal.items()}
    results.append(row("important", 0, important))
    units = [
        {
            "model": name,
            "query": query,
            "layer": r["layer"],
            "unit": int(r["unit"]),
            "rank": i,
            "description": r["description"],
            "formula": r["formula"],
            "match": r["match"],
            "single_accuracy": r["single_accuracy"],
            "removed": int(i < k),
        }
        for i, r in enumerate(ordered)
    ]
    rand_rows = [r for r in results if r["kind"] == "random"]
    about = {
        "query": query,
        "run": str(run),
        "found": len(hits),
        "removed": k,
        "tolerance": tolerance,
        "order": "single-unit accuracy on cue-conflicting validation images, best first (MILAN)",
        "test": {
            r["kind"] if r["kind"] != "random" else f"random{r['draw']}": {s: r[s] for s in SETS} for r in results
        },
        "random_mean": {s: float(np.mean([r[s] for r in rand_rows])) for s in SETS} if rand_rows else {},
    }
    edit = EditFile(
        name, [{"layer": layer, "units": sorted(u), "mode": "zero"} for layer, u in removal.items()], checkpoint, about
    )
    return {"units": units, "results": results, "curve": curve, "edit": edit, "removal": removal}


def write_tables(run: str | Path, out: dict) -> None:
    """Rows of ``out`` (:func:`edit_experiment`) into the run's catalog (tables ``edit_units``, ``edit_results``)."""
    from unitscope.audit import tables  # noqa: F401  (declares the tables)
    from unitscope.catalog import Catalog

    if not out["results"]:
        return
    model, query = out["results"][0]["model"], out["results"][0]["query"]
    with Catalog(Path(run) / CATALOG) as cat:
        cat.replace("edit_units", out["units"], model=model, query=query)
        cat.replace("edit_results", out["results"], model=model, query=query)
