"""The audit part of the report: the editing experiment (``unitscope edit``, docs/audit.md).

In each layer with units found by the edit's text query: those units in MILAN's order with their
single-unit validation accuracy and whether the edit removed them; in the first such layer, the
test table (nothing removed, the described units, as many random units (each draw and their mean),
as many most important units) on clean, agreeing and conflicting images. On cards: the unit's
match and whether it is removed. Reads ``edit_units`` and ``edit_results`` (:mod:`unitscope.audit.tables`).

    from unitscope.facts import unit_facts
    unit_facts(cat, "scenes", "layer4", 7)["audit"].rows["removed_by"]   # ["text"]: the edits that removed it
"""

from __future__ import annotations

from typing import Any

from unitscope.audit import tables
from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, register_part


def _results(cat: Catalog, model: str, query: str) -> list[dict[str, Any]]:
    rows = cat.rows("edit_results", model=model, query=query) if "edit_results" in cat.tables() else []
    order = {k: i for i, k in enumerate(tables.KINDS)}
    rows.sort(key=lambda r: (order.get(r["kind"], 99), r["draw"]))
    rand = [r for r in rows if r["kind"] == "random"]
    if rand:  # the mean of the random draws, after them
        mean = {s: sum(r[s] for r in rand) / len(rand) for s in ("clean", "agree", "conflict")}
        at = max(i for i, r in enumerate(rows) if r["kind"] == "random") + 1
        rows.insert(at, {"kind": "random mean", "draw": len(rand), "units": rand[0]["units"], **mean})
    return [{k: r[k] for k in ("kind", "draw", "units", "clean", "agree", "conflict")} for r in rows]


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = cat.rows("edit_units", model=model, layer=layer)
    if not rows:
        return None
    out: dict[str, Any] = {"queries": []}
    for query in sorted({r["query"] for r in rows}):
        mine = sorted((r for r in rows if r["query"] == query), key=lambda r: r["rank"])
        layers = sorted({r["layer"] for r in cat.rows("edit_units", model=model, query=query)})
        entry = {
            "query": query,
            "layers": layers,
            "units": [
                {k: r[k] for k in ("unit", "rank", "description", "match", "single_accuracy", "removed")} for r in mine
            ],
        }
        if layer == layers[0]:
            entry["results"] = _results(cat, model, query)
        out["queries"].append(entry)
    return out


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in cat.rows("edit_units", model=model, layer=layer):
        out.setdefault(r["unit"], {"queries": []})["queries"].append(
            {"query": r["query"], "rank": r["rank"], "single_accuracy": r["single_accuracy"], "removed": r["removed"]}
        )
    return out


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """Each edit whose text query found the unit (``rows["queries"]``, by query): the unit's rank in
    MILAN's order, its description and formula, the match, the validation accuracy with it alone
    removed, whether the edit removed it; ``rows["removed_by"]`` the queries of the edits that did.
    Label: the unit's description as the edits read it (the first query's row)."""
    rows = sorted(cat.rows("edit_units", model=model, layer=layer, unit=unit), key=lambda r: r["query"])
    if not rows:
        return None
    queries = [
        {
            "query": r["query"],
            "rank": r["rank"],
            "description": r["description"],
            "formula": r["formula"],
            "match": r["match"],
            "single_accuracy": r["single_accuracy"],
            "removed": bool(r["removed"]),
        }
        for r in rows
    ]
    return UnitFacts(
        label=rows[0]["description"] or None,
        rows={"queries": queries, "removed_by": [q["query"] for q in queries if q["removed"]]},
    )


register_part(
    ReportPart(
        "audit",
        "Editing by description",
        tables.TABLES,
        layer=layer_data,
        units=unit_data,
        script="audit.js",
        order=40,
        facts=unit_facts,
    )
)
