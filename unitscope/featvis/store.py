"""Feature visualisations in a run folder: PNGs under ``featvis/<layer>/<unit>.png`` and rows of
the catalog table ``unit_visualizations(model, layer, unit, path, objective)``
(:mod:`unitscope.featvis.tables`).

    paths = visualize_units(model, "blocks.2.0.bn1", range(64), run_dir, steps=512)
    with Catalog(run_dir / "catalog.sqlite") as cat:
        cat.rows("unit_visualizations", layer="blocks.2.0.bn1")

A rerun skips units whose PNG and row both exist, so an interrupted run resumes; rows of other
units, layers and tables (a dissection's) are kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from torch import nn

from unitscope.catalog import Catalog
from unitscope.featvis.tables import TABLE
from unitscope.runs import CATALOG, FEATVIS


def png_path(layer: str, unit: int) -> str:
    """Where a unit's visualisation lives, relative to the run folder."""
    return f"{FEATVIS}/{layer}/{unit}.png"


def done_units(run_dir: Path, model_name: str, layer: str, objectives: dict[int, str] | None = None) -> set[int]:
    """Units of ``layer`` whose PNG and catalog row both exist (and, given ``objectives``, whose row
    names the same objective: a rerun with another objective renders the unit again)."""
    path = Path(run_dir) / CATALOG
    if not path.is_file():
        return set()
    with Catalog(path) as cat:
        rows = cat.rows(TABLE, model=model_name, layer=layer)
    return {
        r["unit"]
        for r in rows
        if (Path(run_dir) / r["path"]).is_file() and (objectives is None or objectives.get(r["unit"]) == r["objective"])
    }


def record(run_dir: Path, model_name: str, layer: str, units: Iterable[int], objectives: Iterable[str]) -> None:
    """Upsert one row per unit (other rows stay), in one transaction."""
    with Catalog(Path(run_dir) / CATALOG) as cat, cat.transaction():
        for unit, objective in zip(units, objectives):
            row = {"path": png_path(layer, unit), "objective": objective}
            cat.replace(TABLE, [row], model=model_name, layer=layer, unit=unit)


def visualize_units(
    model: nn.Module,
    layer: str,
    units: Iterable[int],
    run_dir: str | Path,
    *,
    batch_size: int = 64,
    pre_activation: bool = False,
    **render_kw,
) -> dict[int, str]:
    """Render the channel objective of each unit not yet done, ``batch_size`` per batch; write
    the PNGs and rows after each batch. Returns ``{unit: path relative to run_dir}`` for all units.

    ``pre_activation``: maximise the layer before its nonlinearity (``"<layer>:pre"``). Without
    it, units whose objective ends at a bounded activation's cap (ReLU6: 6) are counted and a
    warning suggests it: at the cap the gradient is zero and the picture stops improving."""
    from unitscope.featvis.images import save_png
    from unitscope.featvis.objectives import PRE, channel
    from unitscope.featvis.render import render_units
    from unitscope.models import get_info

    run_dir = Path(run_dir)
    name = get_info(model).name
    traced = layer + PRE if pre_activation else layer
    units = list(dict.fromkeys(int(u) for u in units))
    objectives = {u: str(channel(traced, u)) for u in units}
    todo = [u for u in units if u not in done_units(run_dir, name, layer, objectives)]
    cap = None if pre_activation or not todo else activation_cap(model, layer)
    capped = []
    for chunk, result in render_units(model, traced, todo, batch_size=batch_size, **render_kw):
        for unit, img in zip(chunk, result.images):
            save_png(img, run_dir / png_path(layer, unit))
        record(run_dir, name, layer, chunk, [objectives[u] for u in chunk])
        if cap is not None:
            capped += [u for u, v in zip(chunk, result.values.tolist()) if v >= cap * (1 - 1e-3)]
    if capped:
        warnings.warn(
            f"{len(capped)} of {len(todo)} units of {layer} ended at their activation's cap of {cap:g} "
            f"(units {', '.join(map(str, capped[:10]))}{' ...' if len(capped) > 10 else ''}), where the "
            "gradient is zero: their pictures stay faint. Render them before the nonlinearity with "
            "--pre-activation (pre_activation=True)",
            stacklevel=2,
        )
    return {u: png_path(layer, u) for u in units}


def activation_cap(model: nn.Module, layer: str) -> float | None:
    """The upper bound of the activation that makes ``layer``'s output (ReLU6: 6), or None."""
    from unitscope.layers import pre_activation

    try:
        _, _, act = pre_activation(model, layer)
    except ValueError:
        return None
    if isinstance(act, nn.Hardtanh):  # ReLU6 is a Hardtanh from 0 to 6
        return float(act.max_val)
    if isinstance(act, (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid)):
        return 1.0
    return None
