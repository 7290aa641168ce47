"""The feature-visualisation part of the report: each unit's optimised image beside its exemplars,
and a gallery per layer.

    with Catalog(run / "catalog.sqlite") as cat:     # after importing this module
        cat.replace("unit_visualizations", [{"unit": 3, "path": "featvis/layer4/0003.png",
                                            "objective": "channel"}], model="resnet18", layer="layer4")

Reads the table ``unit_visualizations(model, layer, unit, path, objective)`` of
:mod:`unitscope.featvis.tables`; ``path`` is a PNG relative to the run folder.
"""

from __future__ import annotations

from typing import Any

from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.featvis.tables import TABLE
from unitscope.report.parts import ReportPart, register_part


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    """How many units of the layer have a visualisation, and with which objectives."""
    rows = cat.rows(TABLE, model=model, layer=layer)
    if not rows:
        return None
    return {"units": len(rows), "objectives": sorted({r["objective"] or "" for r in rows} - {""})}


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    return {
        r["unit"]: {"image": r["path"], "objective": r["objective"]} for r in cat.rows(TABLE, model=model, layer=layer)
    }


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """The unit's visualisation (image kind ``visualization``) and its objective."""
    rows = cat.rows(TABLE, model=model, layer=layer, unit=unit)
    if not rows:
        return None
    return UnitFacts(rows={"objective": rows[0]["objective"]}, images={"visualization": rows[0]["path"]})


register_part(
    ReportPart(
        "featvis",
        "Feature visualisation",
        (TABLE,),
        layer=layer_data,
        units=unit_data,
        script="featvis.js",
        order=20,
        facts=unit_facts,
    )
)
