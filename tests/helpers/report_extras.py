"""Extras for a synthetic run (see ``conftest.build_run``) that the report tests add: feature
visualisations, concept-mask strips and a unit without a concept (NULL).
"""

from __future__ import annotations

from pathlib import Path

from conftest import TOP_K


def _image(path: Path, size: tuple[int, int], colour: tuple[int, int, int], fmt: str) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, colour)
    ImageDraw.Draw(img).ellipse([2, 2, size[0] // 2, size[1] - 3], outline=(0, 229, 255), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)


def add_featvis(run: Path, layer: str = "layer4", units: tuple[int, ...] = (0, 7, 15), model: str = "toy") -> None:
    """A 16x16 PNG per unit in ``unit_visualizations``."""
    import unitscope.report.parts.featvis  # noqa: F401  (defines the table)
    from unitscope.catalog import Catalog

    rows = []
    for u in units:
        rel = f"featvis/{layer}/unit{u:04d}.png"
        _image(run / rel, (16, 16), (200, 40 + 10 * u, 90), "PNG")
        rows.append({"unit": u, "path": rel, "objective": "channel"})
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("unit_visualizations", rows, model=model, layer=layer)


def add_concept_images(run: Path, layer: str = "layer4", model: str = "toy") -> list[str]:
    """A concept-mask strip for every unit of ``layer`` in ``concept_images``; their paths."""
    from unitscope.catalog import Catalog

    with Catalog(run / "catalog.sqlite") as cat:
        units = [r["unit"] for r in cat.rows("dissection", model=model, layer=layer) if r["concept"]]
        rows = []
        for u in units:
            rel = f"images/{model}/{layer}/unit{u:04d}_concept.jpg"
            _image(run / rel, (TOP_K * 24, 24), (30, 90, 90), "JPEG")
            rows.append({"unit": u, "path": rel})
        cat.replace("concept_images", rows, model=model, layer=layer)
    return [r["path"] for r in rows]


def make_null_unit(run: Path, unit: int, layer: str = "layer3", model: str = "toy") -> None:
    """Unit ``unit`` never exceeds its threshold: concept and category NULL, IoU 0, no detector."""
    from unitscope.catalog import Catalog

    with Catalog(run / "catalog.sqlite") as cat:
        cat.query(
            "UPDATE dissection SET concept = NULL, category = NULL, iou = 0, is_detector = 0 "
            "WHERE model = ? AND layer = ? AND unit = ?",
            (model, layer, unit),
        )


def add_unit_arrays(run: Path, layer: str = "layer4", tag: str = "l1", quantiles: bool = True) -> None:
    """What a dissection saves for the unit pages, for ``layer`` of a synthetic run: ``labels.json``
    (label 0 then the concepts), ``layers.json`` and ``arrays/<tag>.safetensors`` with ``iou``
    [units, labels] -- the unit's concept gets its catalog IoU, label j != concept gets
    IoU * j / 100 -- and quantiles at levels 0, 0.5, 0.995, 1 of (0, 0, T, 2 T), T = 1 + unit / 10.
    """
    import json

    import numpy as np
    from conftest import SYNTHETIC_CONCEPTS, SYNTHETIC_LAYERS

    from unitscope.runs import save_arrays

    names = ["-"] + list(SYNTHETIC_CONCEPTS)
    (run / "labels.json").write_text(
        json.dumps({"names": names, "categories": [""] + list(SYNTHETIC_CONCEPTS.values())})
    )
    (run / "layers.json").write_text(json.dumps({tag: layer}))
    units = SYNTHETIC_LAYERS[layer]
    iou = np.zeros((len(units), len(names)), np.float32)
    for u, (concept, best) in enumerate(units):
        iou[u, 1:] = best * np.arange(1, len(names)) / 100
        iou[u, names.index(concept)] = best
    arrays = {"iou": iou, "thresholds": 1 + np.arange(len(units), dtype=np.float32) / 10}
    if quantiles:
        t = arrays["thresholds"]
        arrays["quantile_levels"] = np.array([0, 0.5, 0.995, 1], np.float32)
        arrays["quantiles"] = np.stack([0 * t, 0 * t, t, 2 * t], axis=1)
    save_arrays(run / "arrays" / f"{tag}.safetensors", arrays)
