"""The descriptions part of the report: each unit's English description with its held-out scores,
on cards and unit pages (sortable by score, filtered by the description's words), and per layer
how the chosen descriptions compare with the single labels: the fair baseline (chosen on the
search images) and the dissection's own (chosen on every image, the held-out ones included).

Reads the catalog table ``descriptions`` (:mod:`unitscope.describe.tables`).
"""

from __future__ import annotations

from typing import Any

from unitscope.catalog import Catalog
from unitscope.describe import tables
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, register_part

_SCORES = ("f1", "iou", "auprc", "pearson")
# kinds on cards and unit pages: the chosen description, the fair single-label baseline (chosen on
# the search images) and the dissection's own label (chosen on every image, held-out ones included)
_SHOWN = {"pmi": "chosen", "fair_label": "fair_label", "label": "label"}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = cat.rows("descriptions", model=model, layer=layer)
    if not rows:
        return None
    by = {k: [r for r in rows if r["kind"] == k and r["description"]] for k in tables.KINDS}
    out: dict[str, Any] = {"units": len({r["unit"] for r in rows})}
    for kind, rs in by.items():
        out[kind] = {
            "described": len(rs),
            "distinct": len({r["description"] for r in rs}),
            **{m: _mean([r[m] for r in rs]) for m in _SCORES},
            "significant": sum(1 for r in rs if r["p_f1"] is not None and r["p_f1"] < 0.01),
        }
    return out


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in cat.rows("descriptions", model=model, layer=layer):
        if not r["description"] or r["kind"] not in _SHOWN:
            continue
        entry = {
            "description": r["description"],
            "formula": r["formula"],
            **{m: r[m] for m in _SCORES},
            **{f"p_{m}": r[f"p_{m}"] for m in _SCORES},
            "base_rate": r["base_rate"],
        }
        out.setdefault(r["unit"], {})[_SHOWN[r["kind"]]] = entry
    return {u: v for u, v in out.items() if "chosen" in v}


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """Every description of the unit (kinds pmi, ml, fair_label, label, then any other, such as
    caption; the chosen one, pmi, is its label)."""
    rows = cat.rows("descriptions", model=model, layer=layer, unit=unit)
    if not rows:
        return None
    order = {k: i for i, k in enumerate(tables.KINDS)}
    rows.sort(key=lambda r: (order.get(r["kind"], len(order)), r["kind"] or ""))
    chosen = next((r["description"] for r in rows if r["kind"] == "pmi" and r["description"]), None)
    return UnitFacts(
        label=chosen,
        rows={
            "description": chosen,
            "descriptions": [{k: v for k, v in r.items() if k not in ("model", "layer", "unit")} for r in rows],
        },
    )


register_part(
    ReportPart(
        "describe",
        "Descriptions",
        ("descriptions",),
        layer=layer_data,
        units=unit_data,
        script="describe.js",
        order=25,
        facts=unit_facts,
    )
)
