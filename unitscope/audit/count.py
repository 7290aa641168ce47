"""Audit a model through its units: how many, layer by layer, still detect or describe a concept.

    from unitscope.audit.count import count_units, audit_counts, write_counts
    count_units("runs/audit/model", "cabinet")        # rows per layer: units, detectors, significant, described
    rows = audit_counts("runs/audit/model", "runs/audit/reference", "cabinet")   # the model, then the reference
    write_counts("runs/audit/model", rows)            # catalog table ``audit_counts`` (unitscope.audit.tables)

MILAN's auditing experiment (Hernandez et al., ICLR 2022, sec. 5): a model trained on images where a
concept is hidden (face-blurred ImageNet) may still have units for it. Both runs are dissected and
described on the same probe world, where the concept shows. A unit **detects** the concept when its
dissection label (its best concept overall) is the concept with IoU at or above the layer's cut-off
(``is_detector``); it is a **significant** detector when its permutation p-value also passes
Benjamini-Hochberg at the dissection's level over the layer's units
(:func:`unitscope.dissect.significance.significant`); it **describes** the concept when its ``pmi``
description asserts it (the concept is among the formula's positive concepts,
:func:`unitscope.describe.search.positive_concepts`; after AND NOT it does not count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ROLES = ("audited", "reference")


def _model(cat) -> str:
    rows = cat.query("SELECT DISTINCT model FROM layers")
    if len(rows) != 1:
        raise ValueError(f"{cat.path}: expected one dissected model, found {len(rows)}")
    return str(rows[0]["model"])


def count_units(run: str | Path, concept: str, layers: list[str] | None = None) -> list[dict[str, Any]]:
    """Per dissected layer of ``run`` (in dissection order): ``{"name", "layer", "units", "iou_threshold",
    "detectors", "significant", "described"}`` for ``concept`` (module doc). ``significant`` is None when
    the dissection computed no p-values (a unit without one counts as p = 1)."""
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401  (declares the descriptions table)
    from unitscope.describe.search import positive_concepts
    from unitscope.dissect.significance import significant

    concept = concept.lower()
    out = []
    with Catalog(Path(run) / "catalog.sqlite", create=False) as cat:
        name = _model(cat)
        known = {r["name"].lower() for r in cat.query("SELECT name FROM concepts")}
        if known and concept not in known:
            import difflib

            close = difflib.get_close_matches(concept, sorted(known), n=3)
            raise ValueError(
                f"concept {concept!r} is not in the vocabulary of {run}"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        layer_rows = cat.rows("layers", model=name)
        for lr in layer_rows:
            if layers and lr["layer"] not in layers:
                continue
            diss = sorted(cat.rows("dissection", model=name, layer=lr["layer"]), key=lambda r: r["unit"])
            det = np.array([bool(r["is_detector"]) and (r["concept"] or "").lower() == concept for r in diss])
            pv = [r["p_value"] for r in diss]
            sig = None
            if any(p is not None for p in pv):  # a unit without a p-value counts as p = 1
                sig = int((det & significant(np.array([np.nan if p is None else p for p in pv], np.float64))).sum())
            desc = cat.rows("descriptions", model=name, layer=lr["layer"], kind="pmi")
            described = sum(concept in positive_concepts(r["formula"]) for r in desc)
            out.append(
                {
                    "name": name,
                    "layer": lr["layer"],
                    "units": int(lr["units"]),
                    "iou_threshold": float(lr["iou_threshold"]),
                    "detectors": int(det.sum()),
                    "significant": sig,
                    "described": int(described),
                }
            )
    return out


def audit_counts(
    run: str | Path, reference_run: str | Path | None, concept: str, layers: list[str] | None = None
) -> list[dict[str, Any]]:
    """Rows of ``audit_counts``: the audited model's layers (role ``audited``), then the reference's
    (role ``reference``), each keyed by the audited model's name in ``model``."""
    mine = count_units(run, concept, layers)
    if not mine:
        raise ValueError(f"{run} has no dissected layer" + (f" among {', '.join(layers)}" if layers else ""))
    model = mine[0]["name"]
    rows = [dict(r, model=model, concept=concept.lower(), role="audited") for r in mine]
    if reference_run is not None:
        rows += [
            dict(r, model=model, concept=concept.lower(), role="reference")
            for r in count_units(reference_run, concept, layers)
        ]
    return rows


def write_counts(run: str | Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` (:func:`audit_counts`) into the run's catalog, replacing that model's and concept's."""
    from unitscope.audit import tables  # noqa: F401  (declares the table)
    from unitscope.catalog import Catalog

    if not rows:
        return
    with Catalog(Path(run) / "catalog.sqlite") as cat:
        cat.replace("audit_counts", rows, model=rows[0]["model"], concept=rows[0]["concept"])


def format_counts(rows: list[dict[str, Any]]) -> str:
    """The counts as a plain text table: one line per layer, the audited model beside the reference."""
    ref = {r["layer"]: r for r in rows if r["role"] == "reference"}
    head = f"{'layer':18s} {'units':>5s}  {'detect':>6s} {'signif':>6s} {'describe':>8s}"
    lines = [head + ("   | reference: detect signif describe" if ref else "")]

    def cells(r: dict) -> str:
        sig = "-" if r["significant"] is None else str(r["significant"])
        return f"{r['detectors']:6d} {sig:>6s} {r['described']:8d}"

    for r in (r for r in rows if r["role"] == "audited"):
        line = f"{r['layer']:18s} {r['units']:5d}  " + cells(r)
        if r["layer"] in ref:
            line += "   |           " + cells(ref[r["layer"]])
        lines.append(line)
    return "\n".join(lines)
