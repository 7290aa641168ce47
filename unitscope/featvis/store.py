"""Feature visualisations in a run folder: PNGs under ``featvis/<layer>/<unit>.png`` and rows of
the catalog table ``unit_visualizations(model, layer, unit, path, objective)``.

    paths = visualize_units(model, "blocks.2.0.bn1", range(64), run_dir, steps=512)
    with Catalog(run_dir / "catalog.sqlite") as cat:
        cat.rows("unit_visualizations", layer="blocks.2.0.bn1")

A rerun skips units whose PNG and row both exist, so an interrupted run resumes; rows of other
units, layers and tables (a dissection's) are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from unitscope.catalog import Catalog, define_table

TABLE = "unit_visualizations"
define_table(TABLE, (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"), ("path", "TEXT"),
                     ("objective", "TEXT")), ("model", "layer", "unit"))


def png_path(layer: str, unit: int) -> str:
    """Where a unit's visualisation lives, relative to the run folder."""
    return f"featvis/{layer}/{unit}.png"


def done_units(run_dir: Path, model_name: str, layer: str) -> set[int]:
    """Units of ``layer`` whose PNG and catalog row both exist."""
    path = Path(run_dir) / "catalog.sqlite"
    if not path.is_file():
        return set()
    with Catalog(path) as cat:
        rows = cat.rows(TABLE, model=model_name, layer=layer)
    return {r["unit"] for r in rows if (Path(run_dir) / r["path"]).is_file()}


def record(run_dir: Path, model_name: str, layer: str, units: Iterable[int], objectives: Iterable[str]) -> None:
    """Upsert one row per unit (other rows stay), in one transaction."""
    with Catalog(Path(run_dir) / "catalog.sqlite") as cat, cat.transaction():
        for unit, objective in zip(units, objectives):
            row = {"path": png_path(layer, unit), "objective": objective}
            cat.replace(TABLE, [row], model=model_name, layer=layer, unit=unit)


def visualize_units(model: nn.Module, layer: str, units: Iterable[int], run_dir: str | Path, *,
                    batch_size: int = 64, **render_kw) -> dict[int, str]:
    """Render the channel objective of each unit not yet done, ``batch_size`` per batch; write
    the PNGs and rows after each batch. Returns ``{unit: path relative to run_dir}`` for all units."""
    from unitscope.featvis.images import save_png
    from unitscope.featvis.objectives import channel
    from unitscope.featvis.render import render_units
    from unitscope.models import get_info

    run_dir = Path(run_dir)
    name = get_info(model).name
    units = list(dict.fromkeys(int(u) for u in units))
    todo = [u for u in units if u not in done_units(run_dir, name, layer)]
    for chunk, result in render_units(model, layer, todo, batch_size=batch_size, **render_kw):
        for unit, img in zip(chunk, result.images):
            save_png(img, run_dir / png_path(layer, unit))
        record(run_dir, name, layer, chunk, [str(channel(layer, u)) for u in chunk])
    return {u: png_path(layer, u) for u in units}
