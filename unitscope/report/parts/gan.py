"""The generator part of the report (``unitscope gan``): per edited layer, the removal curves of a
concept's top units by IoU, by ACE and at random, with 99% intervals; the other labels that change
most; ACE against the IoU ranking at each k; the insertion-by-context tables; the artifact units;
the before/after grids; on each unit's card its IoU rank, ACE mask values and artifact gain, and on
its unit page the grids in which it is one of the units edited.

    from unitscope.facts import unit_facts
    unit_facts(cat, "generator", "layer4", 7)["gan"].images   # {"removal:tree": "gan/layer4/removal_tree.png"}

    from unitscope.report.parts import registered_parts
    "gan" in [p.name for p in registered_parts()]

Reads the tables of :mod:`unitscope.gan.tables`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.gan.tables import TABLES
from unitscope.report.parts import ReportPart, register_part

OTHERS = 4  # other labels shown per removal


def num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _removal(cat: Catalog, model: str, layer: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rows = cat.rows("gan_removal", model=model, layer=layer)
    for concept in sorted({r["concept"] for r in rows}):
        mine = [r for r in rows if r["concept"] == concept]
        curves: dict[str, dict[str, list]] = {}
        for r in sorted((r for r in mine if r["label"] == concept), key=lambda r: (r["ranking"], r["k"])):
            c = curves.setdefault(r["ranking"], {"k": [], "change": [], "ci": []})
            c["k"].append(r["k"])
            c["change"].append(num(r["change"]))
            c["ci"].append(num(r["ci"]))
        iou = [r for r in mine if r["ranking"] == "iou"]
        k_top = max((r["k"] for r in iou if r["k"] <= 20), default=max((r["k"] for r in iou), default=0))
        others = sorted(
            (r for r in iou if r["k"] == k_top and r["label"] != concept and r["before"] >= 0.005),
            key=lambda r: -abs(r["change"]),
        )[:OTHERS]
        before = next((r["before"] for r in mine if r["label"] == concept), None)
        out.append(
            {
                "concept": concept,
                "before": num(before),
                "curves": curves,
                "k_others": k_top,
                "others": [
                    {"label": r["label"], "change": num(r["change"]), "ci": num(r["ci"]), "before": num(r["before"])}
                    for r in others
                ],
            }
        )
    return out


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    where = dict(model=model, layer=layer)
    effects = cat.rows("gan_effects", **where)
    if not effects:
        return None
    insertion: dict[str, list] = {}
    for r in sorted(
        cat.rows("gan_insertion", **where), key=lambda r: (r["concept"], -r["rate"], -r["trials"], r["context"])
    ):
        insertion.setdefault(r["concept"], []).append({k: num(r[k]) for k in ("context", "trials", "appeared", "rate")})
    ace: dict[str, list] = {}
    for r in sorted(cat.rows("gan_unit_effects", **where), key=lambda r: (r["concept"], r["ace_rank"])):
        ace.setdefault(r["concept"], []).append(
            {k: num(r[k]) for k in ("unit", "iou", "iou_rank", "ace_remove", "ace_insert", "ace_rank")}
        )
    artifacts = [
        {k: num(r[k]) for k in ("unit", "gain", "gain_all", "rank")}
        for r in sorted(cat.rows("gan_artifacts", **where), key=lambda r: r["rank"])
    ]
    return {
        "effects": [{k: num(r[k]) for k in ("analysis", "concept", "samples", "seconds", "summary")} for r in effects],
        "removal": _removal(cat, model, layer),
        "insertion": insertion,
        "ace": {c: rows[:10] for c, rows in ace.items()},
        "artifacts": artifacts[:10],
        "examples": [{k: r[k] for k in ("kind", "path", "caption")} for r in cat.rows("gan_examples", **where)],
    }


def _grids(cat: Catalog, model: str, layer: str) -> dict[int, list[dict[str, Any]]]:
    """``{unit: [{"kind", "path", "caption"}]}``: the before/after grids each unit is edited in (by kind,
    rank); grids of runs made before ``gan_examples.units`` was recorded are nobody's."""
    out: dict[int, list[dict[str, Any]]] = {}
    if "gan_examples" not in cat.tables():
        return out
    for r in sorted(cat.rows("gan_examples", model=model, layer=layer), key=lambda r: (r["kind"], r["rank"])):
        for u in json.loads(r.get("units") or "[]"):
            out.setdefault(int(u), []).append({k: r[k] for k in ("kind", "path", "caption")})
    return out


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in cat.rows("gan_unit_effects", model=model, layer=layer):
        out.setdefault(r["unit"], {}).setdefault("effects", []).append(
            {k: num(r[k]) for k in ("concept", "iou", "iou_rank", "ace_remove", "ace_insert", "ace_rank")}
        )
    for r in cat.rows("gan_artifacts", model=model, layer=layer):
        card = out.setdefault(r["unit"], {})
        card["artifact_gain"], card["artifact_rank"] = num(r["gain"]), r["rank"]
    for card in out.values():
        card["best_ace"] = max((e["ace_remove"] or 0 for e in card.get("effects", [])), default=None)
    for unit, grids in _grids(cat, model, layer).items():
        if unit in out:
            out[unit]["grids"] = grids
    return out


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """Per concept (by name) the unit's IoU and rank by it, its ACE mask values and rank by removal
    mask (``rows["effects"]``); its artifact gain on the least realistic samples and on all, and its
    artifact rank; the before/after grids in which it is one of the units edited, as images of the
    grid's kind (``removal:CONCEPT``, ``insertion:CONCEPT``, ``artifacts``) with their captions in
    ``rows["grids"]``. No label: the generator's dissection names its units."""
    present = set(cat.tables())
    where = dict(model=model, layer=layer, unit=unit)
    out = UnitFacts()
    effects = cat.rows("gan_unit_effects", **where) if "gan_unit_effects" in present else []
    if effects:
        out.rows["effects"] = [
            {k: num(r[k]) for k in ("concept", "iou", "iou_rank", "ace_remove", "ace_insert", "ace_rank")}
            for r in sorted(effects, key=lambda r: r["concept"])
        ]
    for r in cat.rows("gan_artifacts", **where) if "gan_artifacts" in present else []:
        out.rows.update(
            {"artifact_gain": num(r["gain"]), "artifact_gain_all": num(r["gain_all"]), "artifact_rank": r["rank"]}
        )
    if not out.rows:
        return None
    grids = _grids(cat, model, layer).get(unit, [])
    if grids:
        out.rows["grids"] = {g["kind"]: g["caption"] for g in grids}
        out.images = {g["kind"]: g["path"] for g in grids}
    return out


register_part(
    ReportPart(
        "gan",
        "Generator effects",
        TABLES,
        layer=layer_data,
        units=unit_data,
        script="gan.js",
        order=35,
        facts=unit_facts,
    )
)
