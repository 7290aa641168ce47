"""The ablation part of the report: cumulative ablation curves, the top-N test, per-class
importance bars with unit labels (dissection's concept and exemplars when the run has them),
steering and attack results with before/after examples; on unit cards the unit's importance per
class and its class selectivity.

    from unitscope.report.parts import registered_parts
    "ablation" in [p.name for p in registered_parts()]

Reads the tables of :mod:`unitscope.ablate.tables` (written by ``unitscope ablate``).
"""

from __future__ import annotations

import math
from typing import Any

from unitscope.ablate.tables import TABLES
from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, has_rows, register_part

KEY_UNITS = 5  # units shown per class in the importance bars


def num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _curves(cat: Catalog, model: str, layer: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in cat.query(
        "SELECT mode, fraction, AVG(accuracy) AS mean, MIN(accuracy) AS lo, MAX(accuracy) AS hi, "
        "COUNT(*) AS seeds FROM ablation_curves WHERE model = ? AND layer = ? "
        "GROUP BY mode, fraction ORDER BY mode, fraction",
        (model, layer),
    ):
        c = out.setdefault(r["mode"], {"fraction": [], "mean": [], "lo": [], "hi": [], "seeds": r["seeds"]})
        for k in ("fraction", "mean", "lo", "hi"):
            c[k].append(num(r[k]))
    return out


def _labels(cat: Catalog, model: str, layer: str) -> tuple[dict[int, str], dict[int, str]]:
    present = set(cat.tables())
    concepts = (
        {r["unit"]: r["concept"] for r in cat.rows("dissection", model=model, layer=layer) if r["concept"]}
        if has_rows(cat, "dissection", present)
        else {}
    )
    images = (
        {r["unit"]: r["path"] for r in cat.rows("unit_images", model=model, layer=layer)}
        if has_rows(cat, "unit_images", present)
        else {}
    )
    return concepts, images


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    where = dict(model=model, layer=layer)
    meta = cat.rows("ablation_layers", **where)
    imp = cat.rows("unit_importance", **where)
    if not meta and not imp:
        return None
    concepts, images = _labels(cat, model, layer)
    per_class: dict[str, list] = {}
    # the experiment's ranking: accuracy drop, ties by probability drop (absent in older runs), unit
    for r in sorted(
        imp, key=lambda r: (r["class"], -r["accuracy_drop"], -(r.get("probability_drop") or 0.0), r["unit"])
    ):
        units = per_class.setdefault(r["class"], [])
        if len(units) < KEY_UNITS:
            units.append(
                {
                    "unit": r["unit"],
                    "drop": num(r["accuracy_drop"]),
                    "concept": concepts.get(r["unit"]),
                    "image": images.get(r["unit"]),
                }
            )
    twins = {}
    for other in cat.query("SELECT DISTINCT model FROM ablation_curves WHERE layer = ? AND model != ?", (layer, model)):
        twins[other["model"]] = _curves(cat, other["model"], layer)
    return {
        "meta": {k: num(v) for k, v in meta[0].items()} if meta else {},
        "curves": _curves(cat, model, layer),
        "twins": twins,
        "importance": [{"class": c, "units": u} for c, u in per_class.items()],
        "topn": [
            {k: num(v) for k, v in r.items() if k not in ("model", "layer")} for r in cat.rows("ablation_topn", **where)
        ],
        "steering": [
            {k: num(r[k]) for k in ("source", "target", "units", "images", "flip_rate", "base_rate")}
            for r in cat.rows("ablation_steering", **where)
        ],
        "attacks": [
            {k: num(v) for k, v in r.items() if k not in ("model", "layer")}
            for r in cat.rows("ablation_attacks", **where)
        ],
        "examples": [
            {k: r[k] for k in ("kind", "rank", "path", "caption")} for r in cat.rows("ablation_examples", **where)
        ],
    }


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in cat.rows("unit_importance", model=model, layer=layer):
        out.setdefault(r["unit"], {"drops": []})["drops"].append({"class": r["class"], "drop": num(r["accuracy_drop"])})
    for card in out.values():
        card["drops"].sort(key=lambda d: -(d["drop"] or 0))
        card["drops"] = card["drops"][:3]
        card["max_drop"] = card["drops"][0]["drop"] if card["drops"] else None
    for r in cat.rows("unit_selectivity", model=model, layer=layer):
        card = out.setdefault(r["unit"], {"drops": [], "max_drop": None})
        card["selectivity"], card["top_class"] = num(r["selectivity"]), r["top_class"]
    return out


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """The unit's accuracy drop per class when it is removed (largest first) and its class selectivity."""
    present = set(cat.tables())
    where = dict(model=model, layer=layer, unit=unit)
    imp = cat.rows("unit_importance", **where) if "unit_importance" in present else []
    sel = cat.rows("unit_selectivity", **where) if "unit_selectivity" in present else []
    if not imp and not sel:
        return None
    imp.sort(key=lambda r: -(num(r["accuracy_drop"]) if num(r["accuracy_drop"]) is not None else -math.inf))
    out = UnitFacts(rows={"importance": [{"class": r["class"], "accuracy_drop": num(r["accuracy_drop"])} for r in imp]})
    if sel:
        out.rows.update({"selectivity": num(sel[0]["selectivity"]), "top_class": sel[0]["top_class"]})
    return out


register_part(
    ReportPart(
        "ablation",
        "Ablation",
        TABLES,
        layer=layer_data,
        units=unit_data,
        script="ablation.js",
        order=30,
        facts=unit_facts,
    )
)
