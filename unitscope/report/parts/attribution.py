"""The attribution part of the report: per unit, the images ``unitscope explain`` explained in
which it was among the top units by channel attribution, with links to their pages.

    from unitscope.facts import unit_facts
    unit_facts(cat, "resnet18", "layer4", 7)["attribution"].links   # {"explain cat": "explain/cat/index.html"}

Reads the table ``attribution_units`` (:mod:`unitscope.attribution.tables`). No script: cards and
unit pages draw its facts plainly (the label-less rows, the links).
"""

from __future__ import annotations

from unitscope.attribution.tables import TABLE
from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts
from unitscope.report.parts import ReportPart, register_part


def unit_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    """``rows["explained"]``: one entry per explained image and class, largest integrated attribution
    first; ``links``: each image's explain page."""
    rows = cat.rows(TABLE, model=model, layer=layer, unit=unit)
    if not rows:
        return None
    rows.sort(key=lambda r: (-(r["integrated"] or 0.0), r["image"], r["class_index"]))
    return UnitFacts(
        rows={
            "explained": [
                {
                    "image": r["image"],
                    "class": r["class_name"],
                    "rank": r["rank"],
                    "integrated": r["integrated"],
                    "attribution": r["attribution"],
                }
                for r in rows
            ]
        },
        links={f"explain {r['image']}": f"explain/{r['image']}/index.html" for r in rows},
    )


register_part(ReportPart("attribution", "Attribution", (TABLE,), facts=unit_facts, order=40))
