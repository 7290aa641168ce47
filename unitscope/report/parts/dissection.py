"""The dissection part of the report: per layer the headline, detectors per concept, the IoU
histogram and the rotation check; per unit its concept, IoU, exemplar strip (with the concept's
ground-truth mask as a second strip) and its best concept of every other category; on the unit
page (data from :mod:`unitscope.report.unit_page`) its top 10 concepts, full-size exemplars, an
activation histogram and its place in the layer.

    from unitscope.report.parts import registered_parts
    [p.name for p in registered_parts()]     # ["dissection", "featvis", ...]

A unit whose concept is NULL (its map never exceeds its threshold) keeps ``concept: null``; the
page says "no activation above threshold". Detectors are units with IoU > ``iou_threshold``.
The layer section says which values were thresholded (``activation_values``: the pre-activation
of a bounded activation, or the layer's output) and warns when ``saturated_units`` have their
threshold at their largest value or ``tied_units`` have all exemplars at one value.
"""

from __future__ import annotations

import math
from typing import Any

from unitscope.catalog import Catalog, category_key, layer_summary
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, has_rows, register_part
from unitscope.report.unit_page import unit_pages

HIST_BINS = 20  # IoU histogram: this many bins of a round width covering 0 .. max IoU
TABLES = ("layers", "dissection", "dissection_category", "exemplars", "unit_images", "rotations", "concept_images")


def num(value: Any) -> Any:
    """NaN and infinities -> None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def histogram(values: list[float], threshold: float | None) -> dict[str, Any]:
    """Bins of a round width (0.005, 0.01, 0.02, 0.025, 0.05 ... ) from 0 to past the maximum."""
    top = max(list(values) + [threshold or 0.0, 1e-6])
    width = top / HIST_BINS
    exp = 10 ** math.floor(math.log10(width))
    width = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= width * (1 - 1e-9))
    n = max(1, math.ceil(top / width - 1e-9))
    if n * width <= top:
        n += 1  # the maximum falls in a half-open bin, never on the last edge
    counts = [0] * n
    for v in values:
        counts[min(n - 1, max(0, int(math.floor(v / width + 1e-9))))] += 1
    return {"edges": [round(i * width, 10) for i in range(n + 1)], "counts": counts}


def run_data(cat: Catalog) -> dict[str, Any]:
    """``{"categories": [...]}`` in NetDissect order: the page colours categories by it."""
    names = {r["category"] for r in cat.rows("concepts")}
    names |= {r["category"] for r in cat.query("SELECT DISTINCT category FROM dissection")}
    return {"categories": sorted(names - {None}, key=category_key)}


def layer_data(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    """Counts, the bar chart, the IoU histogram and the rotation rows of one layer."""
    where = dict(model=model, layer=layer)
    if not cat.query("SELECT 1 AS x FROM dissection WHERE model = ? AND layer = ? LIMIT 1", (model, layer)):
        return None
    s = layer_summary(cat, model, layer)
    meta = s.pop("meta")
    out = {k: s[k] for k in ("units", "dissected", "detectors", "unique_concepts", "categories")}
    for k in (
        "height",
        "width",
        "images",
        "quantile",
        "iou_threshold",
        "detectors_significant",
        "images_needed",
        "activation_values",
        "saturated_units",
        "tied_units",
    ):  # the last three: None in older runs
        out[k] = num(meta.get(k))
    concepts = cat.query(
        "SELECT concept, category, COUNT(*) AS detectors FROM dissection "
        "WHERE model = ? AND layer = ? AND is_detector != 0 AND concept IS NOT NULL "
        "GROUP BY category, concept",
        (model, layer),
    )
    concepts.sort(key=lambda c: (category_key(c["category"]), -c["detectors"], c["concept"] or ""))
    out["concepts"] = concepts
    ious = [num(r["iou"]) or 0.0 for r in cat.rows("dissection", **where)]
    out["histogram"] = histogram(ious, out["iou_threshold"])
    out["rotations"] = [
        {k: r[k] for k in ("rotation", "detectors", "unique_concepts")} for r in cat.rows("rotations", **where)
    ]
    bases = cat.rows("layer_bases", **where) if "layer_bases" in cat.tables() else []
    out["privileged"] = bool(bases[0]["privileged"]) if bases else None  # None: not recorded
    return out


def unit_data(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, Any]]:
    """Each dissected unit's card rows: concept, IoU, strips, exemplars, other categories."""
    where = dict(model=model, layer=layer)
    labels: dict[int, list] = {}
    for r in cat.rows("dissection_category", **where):
        labels.setdefault(r["unit"], []).append(
            {"category": r["category"], "concept": r["concept"], "iou": num(r["iou"])}
        )
    exemplars: dict[int, list] = {}
    for r in cat.rows("exemplars", **where):
        exemplars.setdefault(r["unit"], []).append({k: num(r[k]) for k in ("rank", "image", "activation", "y", "x")})
    images = {r["unit"]: r["path"] for r in cat.rows("unit_images", **where)}
    masks = (
        {r["unit"]: r["path"] for r in cat.rows("concept_images", **where)} if has_rows(cat, "concept_images") else {}
    )
    out = {}
    for r in cat.rows("dissection", **where):
        u = r["unit"]
        out[u] = {
            "concept": r["concept"],
            "category": r["category"],
            "iou": num(r["iou"]),
            "is_detector": bool(r["is_detector"]),
            "threshold": num(r["threshold"]),
            "image": images.get(u),
            "mask_image": masks.get(u),
            "labels": sorted(labels.get(u, []), key=lambda x: category_key(x["category"])),
            "exemplars": exemplars.get(u, []),
        }
    return out


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """One unit's concept (its label when it is a detector), IoU, threshold and p-value, its best
    concept per category (IoU descending), its exemplars (by rank) and strips."""
    present = set(cat.tables())
    where = dict(model=model, layer=layer, unit=unit)

    def rows(table: str) -> list[dict]:
        return cat.rows(table, **where) if table in present else []

    out = UnitFacts()
    for d in rows("dissection"):
        out.label = d["concept"] if d["is_detector"] and d["concept"] else None
        out.rows.update(
            {
                "concept": d["concept"],
                "category": d["category"],
                "iou": num(d["iou"]),
                "threshold": num(d["threshold"]),
                "is_detector": bool(d["is_detector"]),
                "p_value": num(d.get("p_value")),
            }
        )
    best = sorted(rows("dissection_category"), key=lambda r: -(num(r["iou"]) if num(r["iou"]) is not None else -1.0))
    if best:
        out.rows["categories"] = [
            {"category": r["category"], "concept": r["concept"], "iou": num(r["iou"])} for r in best
        ]
    exemplars = rows("exemplars")
    if exemplars:
        out.rows["exemplars"] = [{k: num(r[k]) for k in ("rank", "image", "activation", "y", "x")} for r in exemplars]
    for table, kind in (("unit_images", "exemplars"), ("concept_images", "mask")):
        for r in rows(table):
            out.images[kind] = r["path"]
    return out if out.rows or out.images else None


register_part(
    ReportPart(
        "dissection",
        "Network dissection",
        TABLES,
        layer=layer_data,
        units=unit_data,
        script="dissection.js",
        order=0,
        run=run_data,
        page=unit_pages,
        facts=unit_facts,
    )
)
