"""The bases part of the report: per layer, its bases side by side (FVU, mean L0, dead fraction,
stability across seeds, detectors and unique concepts, against the units and random rotations);
each basis' directions have their own layer section and cards (``blocks.6#sae``), as units do.

    from unitscope.report.parts import registered_parts
    "bases" in [p.name for p in registered_parts()]

Reads ``basis_metrics`` (:mod:`unitscope.bases.tables`, written by ``unitscope dissect --basis``).
"""

from __future__ import annotations

import math
from typing import Any

from unitscope.bases.tables import TABLE, side_by_side
from unitscope.catalog import Catalog
from unitscope.report.parts import ReportPart, register_part


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = side_by_side(cat, model, layer)
    if not any(r["basis"] != "rotations" for r in rows):
        return None
    return {"rows": [{k: _num(v) for k, v in r.items()} for r in rows]}


register_part(ReportPart("bases", "Bases of the layer", (TABLE,), layer=layer_data, script="bases.js", order=40))
