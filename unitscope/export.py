"""Export a dissection in other tools' formats.

    from unitscope.export import netdissect_tally
    rows = netdissect_tally("runs/lite0", "blocks.6")           # NetDissect-Lite's tally.csv rows
    write_netdissect_tally("runs/lite0", "blocks.6", "tally.csv")

NetDissect-Lite's ``tally.csv`` has one row per unit, best first: ``unit`` (1-based), ``category``,
``label``, ``score`` (the best IoU over all categories), then for each category
``<cat>-label, <cat>-truth, <cat>-activation, <cat>-intersect, <cat>-iou``: the unit's best label
in that category, the label's pixel area (``truth``), the unit's mask area counted for that
category (``activation``; which images count depends on the run's ``--denominator``), their
intersection and IoU. Scores are the IoUs the run itself reports.
"""

from __future__ import annotations

import csv
import json
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np

from unitscope.catalog import category_key
from unitscope.runs import LABELS

_COUNTS = ("intersection", "unit_area", "label_area", "label_category")


def _layer_arrays(run_dir: Path, layer: str) -> dict[str, np.ndarray]:
    from unitscope.dissect import load_layer_arrays

    arrays = load_layer_arrays(run_dir, layer)
    missing = [k for k in _COUNTS if k not in arrays]
    if missing:
        raise ValueError(
            f"{run_dir}: the arrays of layer {layer!r} lack {missing} (written by dissections "
            "since the significance release): rerun `unitscope dissect` on that folder to add them"
        )
    return arrays


def netdissect_tally(run_dir: str | Path, layer: str) -> list[dict[str, Any]]:
    """The rows of NetDissect-Lite's ``tally.csv`` for one dissected layer, best unit first."""
    run_dir = Path(run_dir)
    labels_file = run_dir / LABELS
    if not labels_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no labels.json: is it the folder of a dissection?")
    labels = json.loads(labels_file.read_text())
    names, label_cats = labels["names"], labels["categories"]
    a = _layer_arrays(run_dir, layer)
    iou, inter, unit_area, label_area = a["iou"], a["intersection"], a["unit_area"], a["label_area"]
    cat_index = {label_cats[l]: int(a["label_category"][l]) for l in range(1, len(names)) if label_cats[l]}
    categories = sorted(cat_index, key=category_key)
    per_cat = {}  # category -> (best label [C], its IoU [C])
    for c in categories:
        members = np.array([l for l in range(1, len(names)) if label_cats[l] == c])
        best = members[iou[:, members].argmax(axis=1)]
        per_cat[c] = (best, iou[np.arange(len(best)), best])
    scores = np.stack([per_cat[c][1] for c in categories], axis=1)  # [C, G]
    rows = []
    for u in np.argsort(-scores.max(axis=1), kind="stable"):
        g = int(scores[u].argmax())
        best_cat = categories[g]
        row: dict[str, Any] = {
            "unit": int(u) + 1,
            "category": best_cat,
            "label": names[per_cat[best_cat][0][u]],
            "score": float(scores[u, g]),
        }
        for c in categories:
            label = int(per_cat[c][0][u])
            row[f"{c}-label"] = names[label]
            row[f"{c}-truth"] = int(label_area[label])
            row[f"{c}-activation"] = int(unit_area[u, cat_index[c]])
            row[f"{c}-intersect"] = int(inter[u, label])
            row[f"{c}-iou"] = float(per_cat[c][1][u])
        rows.append(row)
    return rows


def write_netdissect_tally(run_dir: str | Path, layer: str, path: str | Path) -> Path:
    """Write :func:`netdissect_tally` as CSV with NetDissect-Lite's column order; returns ``path``."""
    from unitscope.runs import atomic_write_text

    rows = netdissect_tally(run_dir, layer)
    categories = [k[: -len("-label")] for k in rows[0] if k.endswith("-label")] if rows else []
    fields = ["unit", "category", "label", "score"] + [
        f"{c}-{x}" for c in categories for x in ("label", "truth", "activation", "intersect", "iou")
    ]
    buf = StringIO()
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)
