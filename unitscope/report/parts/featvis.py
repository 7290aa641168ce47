"""The feature-visualisation part of the report: each unit's optimised image beside its exemplars,
and a gallery per layer.

    with Catalog(run / "catalog.sqlite") as cat:     # after importing this module
        cat.replace("unit_visualizations", [{"unit": 3, "path": "featvis/layer4/0003.png",
                                            "objective": "channel"}], model="resnet18", layer="layer4")

Table ``unit_visualizations(model, layer, unit, path, objective)``, key (model, layer, unit);
``path`` is a PNG relative to the run folder. The feature-visualisation package defines the same
schema (identical definitions are allowed).
"""

from __future__ import annotations

from typing import Any

from unitscope.catalog import Catalog, define_table
from unitscope.report.parts import ReportPart, register_part

define_table("unit_visualizations", (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"),
                                     ("path", "TEXT"), ("objective", "TEXT")), ("model", "layer", "unit"))


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    """How many units of the layer have a visualisation, and with which objectives."""
    rows = cat.rows("unit_visualizations", model=model, layer=layer)
    if not rows:
        return None
    return {"units": len(rows), "objectives": sorted({r["objective"] or "" for r in rows} - {""})}


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    return {r["unit"]: {"image": r["path"], "objective": r["objective"]}
            for r in cat.rows("unit_visualizations", model=model, layer=layer)}


register_part(ReportPart("featvis", "Feature visualisation", ("unit_visualizations",), layer=layer_data,
                         units=unit_data, script="featvis.js", order=20))
