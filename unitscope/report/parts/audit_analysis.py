"""Report parts of the auditing and analysis experiments (``unitscope audit count`` / ``audit ablate``).

- ``audit_counts`` ("Auditing by description"): in the first audited layer, the table of units that
  detect or describe each audited concept, layer by layer, beside the reference model's; in every
  layer its own line. Facts of a unit: the audited concepts it detects or describes.
- ``desc_ablation`` ("Ablation by description"): the layer's cumulative ablation curves in the three
  description orderings and the feature orderings (``length_high``, ...; mean and range over seeds,
  and the PNG ``desc-ablation-LAYER.png`` when the run has it), the summary per ordering (area under
  the curve with its seed range and bootstrap interval, gap to random) and the units each ordering
  puts first. Facts: the unit's rank in those orderings.

    from unitscope.facts import unit_facts
    unit_facts(cat, "world_scenes", "features.relu5", 7)["desc_ablation"].rows["first_in"]  # ["single"]
"""

from __future__ import annotations

from typing import Any

from unitscope.audit import tables
from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, register_part

COUNT_KEYS = ("layer", "units", "iou_threshold", "detectors", "significant", "described")


def plot_name(layer: str) -> str:
    """File name of a layer's description-ablation plot in the run folder."""
    return "desc-ablation-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in layer) + ".png"


def count_layer(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = cat.rows("audit_counts", model=model)
    if not any(r["layer"] == layer for r in rows):
        return None
    out: dict[str, Any] = {"concepts": []}
    for concept in sorted({r["concept"] for r in rows}):
        mine = [r for r in rows if r["concept"] == concept]
        audited = [r for r in mine if r["role"] == "audited"]
        ref = {r["layer"]: r for r in mine if r["role"] == "reference"}
        entry: dict[str, Any] = {
            "concept": concept,
            "reference": next(iter(ref.values()))["name"] if ref else None,
            "here": {"audited": _pick(audited, layer), "reference": _pick(list(ref.values()), layer)},
        }
        if audited and audited[0]["layer"] == layer:  # the whole table once, in the first layer
            entry["table"] = [
                {
                    "audited": {k: r[k] for k in COUNT_KEYS},
                    "reference": {k: ref[r["layer"]][k] for k in COUNT_KEYS} if r["layer"] in ref else None,
                }
                for r in audited
            ]
        out["concepts"].append(entry)
    return out


def _pick(rows: list[dict], layer: str) -> dict[str, Any] | None:
    r = next((r for r in rows if r["layer"] == layer), None)
    return {k: r[k] for k in COUNT_KEYS} if r else None


def count_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """The audited concepts the unit detects (its dissection label, a detector) or describes (its
    ``pmi`` description asserts it)."""
    from unitscope.describe.search import positive_concepts

    concepts = sorted({r["concept"] for r in cat.rows("audit_counts", model=model, layer=layer)})
    if not concepts:
        return None
    diss = cat.rows("dissection", model=model, layer=layer, unit=unit)
    desc = (
        cat.rows("descriptions", model=model, layer=layer, unit=unit, kind="pmi")
        if "descriptions" in cat.tables()
        else []
    )
    said = positive_concepts(desc[0]["formula"]) if desc else []
    audits = [
        {
            "concept": c,
            "detects": bool(diss and diss[0]["is_detector"] and (diss[0]["concept"] or "").lower() == c),
            "describes": c in said,
        }
        for c in concepts
    ]
    audits = [a for a in audits if a["detects"] or a["describes"]]
    return UnitFacts(rows={"audits": audits}) if audits else None


def ablation_layer(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    rows = cat.rows("desc_ablation", model=model, layer=layer)
    if not rows:
        return None
    curves: dict[str, dict[str, Any]] = {}
    present = list(dict.fromkeys(r["ordering"] for r in rows))
    for o in [o for o in tables.ORDERINGS if o in present] + [o for o in present if o not in tables.ORDERINGS]:
        mine = [r for r in rows if r["ordering"] == o]
        fr = sorted({r["fraction"] for r in mine})
        at = {f: [r["accuracy"] for r in mine if r["fraction"] == f] for f in fr}
        curves[o] = {
            "fractions": fr,
            "units": [next(r["units"] for r in mine if r["fraction"] == f) for f in fr],
            "mean": [sum(at[f]) / len(at[f]) for f in fr],
            "min": [min(at[f]) for f in fr],
            "max": [max(at[f]) for f in fr],
            "seeds": len({r["seed"] for r in mine}),
        }
    first = {
        o: [
            {k: r[k] for k in ("unit", "rank", "description", "formula")}
            for r in sorted(
                cat.rows("desc_ablation_units", model=model, layer=layer, ordering=o), key=lambda r: r["rank"]
            )
        ]
        for o in ("unrelated", "single")
    }
    summary = (
        cat.rows("desc_ablation_summary", model=model, layer=layer) if "desc_ablation_summary" in cat.tables() else []
    )
    summary.sort(key=lambda r: list(curves).index(r["ordering"]) if r["ordering"] in curves else len(curves))
    png = plot_name(layer)
    return {
        "curves": curves,
        "first": first,
        "summary": [{k: v for k, v in r.items() if k not in ("model", "layer")} for r in summary],
        "plot": png if (cat.path.parent / png).is_file() else None,
    }


def ablation_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """The description orderings that put the unit first, and its rank in each."""
    rows = sorted(cat.rows("desc_ablation_units", model=model, layer=layer, unit=unit), key=lambda r: r["ordering"])
    if not rows:
        return None
    return UnitFacts(
        rows={"first_in": [r["ordering"] for r in rows], "ranks": {r["ordering"]: r["rank"] for r in rows}}
    )


register_part(
    ReportPart(
        "audit_counts",
        "Auditing by description",
        tables.COUNT_TABLES,
        layer=count_layer,
        script="audit_analysis.js",
        order=41,
        facts=count_facts,
    )
)
register_part(
    ReportPart(
        "desc_ablation",
        "Ablation by description",
        tables.ANALYSIS_TABLES,
        layer=ablation_layer,
        script="audit_analysis.js",
        order=42,
        facts=ablation_facts,
    )
)
