"""The catalog table of fitted bases (torch-free: the report reads it without the fitting code).

    with Catalog(run / "catalog.sqlite") as cat:
        cat.rows("basis_metrics", model="efficientnet_lite0", layer="blocks.6")   # one row per basis

``basis_metrics(model, layer, basis_layer, basis, spec, directions, fvu, mean_l0, dead_fraction,
stability, fit_seconds, fit_cpu_seconds)``, key (model, layer, basis_layer): ``layer`` the layer the
basis was fitted on, ``basis_layer`` the pseudo-layer its directions were dissected as (the
``layers`` and ``dissection`` tables' name, ``blocks.6#sae``; the layer itself for its units).
``fvu`` is the fraction of variance unexplained, ``mean_l0`` the mean number of non-zero codes per
position, ``dead_fraction`` the share of directions never used, ``stability`` the mean |cosine| of
directions matched one to one with a second fit from another seed (empty where not measured).
:func:`side_by_side` joins them with what dissecting each basis found (the report's bases part).
"""

from __future__ import annotations

from typing import Any

from unitscope.catalog import Catalog, define_table

TABLE = "basis_metrics"
COLUMNS = (
    ("model", "TEXT"),
    ("layer", "TEXT"),
    ("basis_layer", "TEXT"),
    ("basis", "TEXT"),
    ("spec", "TEXT"),
    ("directions", "INTEGER"),
    ("fvu", "REAL"),
    ("mean_l0", "REAL"),
    ("dead_fraction", "REAL"),
    ("stability", "REAL"),
    ("fit_seconds", "REAL"),
    ("fit_cpu_seconds", "REAL"),
)
define_table(TABLE, COLUMNS, ("model", "layer", "basis_layer"))
TABLES = (TABLE,)


def side_by_side(cat: Catalog, model: str, layer: str) -> list[dict[str, Any]]:
    """One row per basis of ``layer`` (its units first), with its metrics and what dissecting it found:
    ``detectors``, ``significant`` (detectors with p < 0.01 after Benjamini-Hochberg) and
    ``unique_concepts`` (from the ``layers`` table), and a
    row ``rotations`` for the mean of the layer's ``--rotations`` (from the ``rotations`` table)."""
    rows = cat.rows(TABLE, model=model, layer=layer) if TABLE in cat.tables() else []
    found = {
        r["layer"]: r
        for r in cat.query(
            "SELECT layer, units, detectors, unique_concepts, detectors_significant FROM layers WHERE model = ?",
            (model,),
        )
    }
    out = []
    for r in sorted(rows, key=lambda r: (ORDER.get(r["basis"], 99), r["basis_layer"])):
        f = found.get(r["basis_layer"], {})
        out.append(
            {
                **{
                    k: r[k]
                    for k in (
                        "basis_layer",
                        "basis",
                        "spec",
                        "directions",
                        "fvu",
                        "mean_l0",
                        "dead_fraction",
                        "stability",
                        "fit_seconds",
                        "fit_cpu_seconds",
                    )
                },
                "detectors": f.get("detectors"),
                "significant": f.get("detectors_significant"),
                "unique_concepts": f.get("unique_concepts"),
            }
        )
    rot = (
        [r for r in cat.rows("rotations", model=model, layer=layer) if r["rotation"] > 0]
        if "rotations" in cat.tables()
        else []
    )
    if rot:
        out.append(
            {
                "basis_layer": layer,
                "basis": "rotations",
                "spec": f"--rotations {len(rot)} (mean)",
                "directions": found.get(layer, {}).get("units"),
                "detectors": sum(r["detectors"] for r in rot) / len(rot),
                "unique_concepts": sum(r["unique_concepts"] for r in rot) / len(rot),
            }
        )
    return out


ORDER = {"units": 0, "rotation": 1, "pca": 2, "whiten": 3, "ica": 4, "nmf": 5, "sae": 6}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The side-by-side rows as a Markdown table (docs, benchmarks)."""

    def f(v: Any, digits: int = 3) -> str:
        return "" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    lines = [
        "| basis | directions | FVU | mean L0 | dead | stability | detectors | significant | unique concepts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['spec']} | {f(r['directions'])} | {f(r.get('fvu'))} | {f(r.get('mean_l0'))} | "
            f"{f(r.get('dead_fraction'))} | {f(r.get('stability'))} | {f(r['detectors'])} | {f(r.get('significant'))} | "
            f"{f(r['unique_concepts'])} |"
        )
    return "\n".join(lines)
