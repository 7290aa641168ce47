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

# class-critical directions (:mod:`.critical`, ``unitscope ablate critical``): per basis and class,
# the val accuracy of the class before and after removing its top n directions (ranked by ablation
# on train), the other classes' mean after, and n random directions' (mean of seeds)
CRITICAL = "basis_critical"
define_table(
    CRITICAL,
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("basis_layer", "TEXT"),
        ("basis", "TEXT"),
        ("class", "TEXT"),
        ("n", "INTEGER"),
        ("before", "REAL"),
        ("after", "REAL"),
        ("others", "REAL"),
        ("random", "REAL"),
    ),
    ("model", "layer", "basis_layer", "class", "n"),
)
# each class's top directions (rank 0 first) with their single drops on train
CRITICAL_TOP = "basis_critical_top"
define_table(
    CRITICAL_TOP,
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("basis_layer", "TEXT"),
        ("class", "TEXT"),
        ("rank", "INTEGER"),
        ("unit", "INTEGER"),
        ("accuracy_drop", "REAL"),
        ("probability_drop", "REAL"),
    ),
    ("model", "layer", "basis_layer", "class", "rank"),
)
TABLES = (TABLE, CRITICAL, CRITICAL_TOP)


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


def critical_view(cat: Catalog, model: str, layer: str) -> list[dict[str, Any]]:
    """Per basis of ``layer`` with ``basis_critical`` rows (its units first): ``{"basis",
    "basis_layer", "ns", "classes": [{"class", "before", "after" {n: acc}, "others" {n},
    "random" {n}, "top": [direction rows]}], "mean": {...}}``. A direction row is its
    ``basis_critical_top`` row with the direction's dissection label (``concept``, ``label_iou``,
    ``is_detector``) and its chosen description (``description``, ``f1``, ``iou``, ``auprc``,
    ``p_f1``, ``p_iou``, ``p_auprc``: held-out scores, ``descriptions`` kind ``pmi``) where the run
    has them. ``mean``: the class means of before / after / others / random, and over every class's
    top directions: the share that are detectors, mean label IoU, distinct labels, how many are
    described, mean held-out F1 / IoU / AUPRC, and the share with ``p_f1 < 0.01``."""
    present = set(cat.tables())
    if CRITICAL not in present:
        return []
    rows = cat.rows(CRITICAL, model=model, layer=layer)
    tops = cat.rows(CRITICAL_TOP, model=model, layer=layer) if CRITICAL_TOP in present else []
    out = []
    for bl in sorted({r["basis_layer"] for r in rows}, key=lambda b: (b != layer, b)):
        mine = [r for r in rows if r["basis_layer"] == bl]
        labels = (
            {r["unit"]: r for r in cat.rows("dissection", model=model, layer=bl)} if "dissection" in present else {}
        )
        described = (
            {r["unit"]: r for r in cat.rows("descriptions", model=model, layer=bl, kind="pmi")}
            if "descriptions" in present
            else {}
        )
        ns = sorted({r["n"] for r in mine})
        classes: list[dict[str, Any]] = []
        for name in dict.fromkeys(r["class"] for r in mine):
            by_n = {r["n"]: r for r in mine if r["class"] == name}
            top = []
            for t in sorted(
                (t for t in tops if t["basis_layer"] == bl and t["class"] == name), key=lambda t: t["rank"]
            ):
                lab, desc = labels.get(t["unit"], {}), described.get(t["unit"], {})
                top.append(
                    {
                        "unit": t["unit"],
                        "accuracy_drop": t["accuracy_drop"],
                        "concept": lab.get("concept"),
                        "label_iou": lab.get("iou"),
                        "is_detector": lab.get("is_detector"),
                        **{k: desc.get(k) for k in ("description", "f1", "iou", "auprc", "p_f1", "p_iou", "p_auprc")},
                    }
                )
            classes.append(
                {
                    "class": name,
                    "before": by_n[ns[0]]["before"],
                    **{k: {n: by_n[n][k] for n in ns} for k in ("after", "others", "random")},
                    "top": top,
                }
            )
        out.append(
            {"basis": mine[0]["basis"], "basis_layer": bl, "ns": ns, "classes": classes, "mean": _means(classes, ns)}
        )
    return out


def _mean(values: list[Any]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def _means(classes: list[dict[str, Any]], ns: list[int]) -> dict[str, Any]:
    top = [t for c in classes for t in c["top"]]
    described = [t for t in top if t["description"] is not None]
    return {
        "before": _mean([c["before"] for c in classes]),
        **{k: {n: _mean([c[k][n] for c in classes]) for n in ns} for k in ("after", "others", "random")},
        "directions": len(top),
        "detectors": _mean([1.0 if t["is_detector"] else 0.0 for t in top if t["is_detector"] is not None]),
        "label_iou": _mean([t["label_iou"] for t in top]),
        "distinct_labels": len({t["concept"] for t in top if t["concept"]}),
        "described": len(described),
        **{k: _mean([t[k] for t in described]) for k in ("f1", "iou", "auprc")},
        "significant": _mean([1.0 if (t["p_f1"] is not None and t["p_f1"] < 0.01) else 0.0 for t in described]),
    }


def critical_markdown(view: list[dict[str, Any]]) -> str:
    """:func:`critical_view` as the Markdown table of docs/bases.md: one row per basis, means over classes."""

    def pct(v: Any) -> str:
        return "" if v is None else f"{100 * v:.1f}%"

    def num(v: Any) -> str:
        return "" if v is None else f"{v:.3f}"

    if not view:
        return ""
    ns = view[0]["ns"]
    slash = " / ".join(str(n) for n in ns)
    lines = [
        f"| basis | class before | after removing its top {slash} | others | {slash} random "
        "| top: detectors | label IoU | distinct labels | described | F1 | IoU | AUPRC | p(F1) < 0.01 |",
        "|---" * 13 + "|",
    ]
    for b in view:
        m = b["mean"]
        lines.append(
            f"| {b['basis']} | {pct(m['before'])} | {' / '.join(pct(m['after'][n]) for n in b['ns'])} | "
            f"{pct(m['others'][b['ns'][-1]])} | {' / '.join(pct(m['random'][n]) for n in b['ns'])} | "
            f"{pct(m['detectors'])} | {num(m['label_iou'])} | {m['distinct_labels']} | "
            f"{m['described']} of {m['directions']} | {num(m['f1'])} | {num(m['iou'])} | {num(m['auprc'])} | "
            f"{pct(m['significant'])} |"
        )
    return "\n".join(lines)
