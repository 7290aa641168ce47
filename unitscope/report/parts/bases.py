"""The bases part of the report: per layer, its bases side by side (FVU, mean L0, dead fraction,
stability across seeds, detectors and unique concepts, against the units and random rotations);
each basis' directions have their own layer section and cards (``blocks.6#sae``), as units do.
With ``unitscope ablate critical`` rows, the layer's class-critical directions: per basis a table
of each class's accuracy before and after removing its top n directions (against n random ones),
and those directions' dissection labels and held-out descriptions (``critical``).

    from unitscope.report.parts import registered_parts
    "bases" in [p.name for p in registered_parts()]

Reads ``basis_metrics`` (:mod:`unitscope.bases.tables`, written by ``unitscope dissect --basis``),
``basis_critical`` and ``basis_critical_top`` (``unitscope ablate critical``).
"""

from __future__ import annotations

import math
from typing import Any

from unitscope.bases.tables import CRITICAL, TABLE, critical_view, side_by_side
from unitscope.catalog import Catalog
from unitscope.report.parts import ReportPart, register_part


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = side_by_side(cat, model, layer)
    critical = critical_view(cat, model, layer)
    if not any(r["basis"] != "rotations" for r in rows) and not critical:
        return None
    return {"rows": [{k: _num(v) for k, v in r.items()} for r in rows], "critical": _clean(critical)}


def _clean(x: Any) -> Any:
    """NaN/inf to None, int keys to strings (JSON), all the way down."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return _num(x)


register_part(
    ReportPart("bases", "Bases of the layer", (TABLE, CRITICAL), layer=layer_data, script="bases.js", order=40)
)
