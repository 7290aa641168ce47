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
        cat.query("UPDATE dissection SET concept = NULL, category = NULL, iou = 0, is_detector = 0 "
                  "WHERE model = ? AND layer = ? AND unit = ?", (model, layer, unit))
