"""Shared fixtures: keep small and generic.

``make_run(path, model=..., layers=...)`` builds a synthetic dissection run folder (catalog,
config.json, tiny JPEG exemplar strips) from :data:`SYNTHETIC_LAYERS`, whose numbers the report
and compare tests pin by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SYNTHETIC_CONCEPTS = {
    "dog": "object",
    "cat": "object",
    "car": "object",
    "tree": "object",
    "eye": "part",
    "wheel": "part",
    "street": "scene",
    "wood": "material",
    "metal": "material",
    "striped": "texture",
    "dotted": "texture",
    "red": "color",
    "blue": "color",
}

# layer -> per unit (best concept, IoU). Detectors are IoU > 0.04.
SYNTHETIC_LAYERS = {
    # 10 detectors, 5 concepts: color 6 (red 4, blue 2), texture 3 (striped 2, dotted 1), part 1
    "layer3": [
        ("red", 0.12),
        ("blue", 0.09),
        ("striped", 0.07),
        ("dotted", 0.05),
        ("red", 0.045),
        ("wood", 0.03),
        ("metal", 0.02),
        ("striped", 0.08),
        ("red", 0.06),
        ("blue", 0.01),
        ("eye", 0.041),
        ("dog", 0.035),
        ("street", 0.02),
        ("red", 0.15),
        ("dotted", 0.039),
        ("car", 0.005),
        ("wheel", 0.03),
        ("tree", 0.004),
        ("blue", 0.055),
        ("striped", 0.025),
    ],
    # 13 detectors, 9 concepts: object 8 (dog 3, car 2, tree 2, cat 1), part 2, scene 1,
    # material 1, color 1
    "layer4": [
        ("dog", 0.25),
        ("dog", 0.18),
        ("cat", 0.14),
        ("car", 0.11),
        ("wheel", 0.09),
        ("eye", 0.08),
        ("street", 0.07),
        ("dog", 0.06),
        ("tree", 0.05),
        ("wood", 0.045),
        ("red", 0.043),
        ("striped", 0.02),
        ("cat", 0.03),
        ("car", 0.035),
        ("metal", 0.01),
        ("dotted", 0.0),
        ("dog", 0.038),
        ("tree", 0.042),
        ("blue", 0.015),
        ("car", 0.2),
    ],
}
SYNTHETIC_ROTATIONS = {"layer4": [(0, 13, 9), (1, 4, 3), (2, 5, 4)]}
IOU_THRESHOLD = 0.04
TOP_K = 4


def _strip(path: Path, seed: int, k: int = TOP_K, size: int = 24) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (k * size, size), (40, 40, 40))
    draw = ImageDraw.Draw(img)
    for i in range(k):
        shade = (seed * 37 + i * 53) % 200 + 30
        draw.rectangle([i * size + 2, 2, i * size + size - 3, size - 3], fill=(shade, 120, 255 - shade))
        draw.rectangle([i * size + 6, 6, i * size + 14, 14], outline=(255, 220, 0), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=80)


def build_run(
    path: Path, model: str = "toy", layers: dict | None = None, rotations: dict | None = None, images: bool = True
) -> Path:
    """Write a synthetic dissection run folder at ``path`` and return it."""
    from unitscope.catalog import Catalog

    layers = SYNTHETIC_LAYERS if layers is None else layers
    rotations = SYNTHETIC_ROTATIONS if rotations is None else rotations
    categories = sorted(set(SYNTHETIC_CONCEPTS.values()))
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(
        json.dumps({"model": model, "layers": list(layers), "quantile": 0.005, "iou_threshold": IOU_THRESHOLD})
    )
    with Catalog(path / "catalog.sqlite") as cat:
        cat.replace("concepts", [{"name": n, "category": c} for n, c in SYNTHETIC_CONCEPTS.items()])
        for li, (layer, units) in enumerate(layers.items()):
            diss, per_cat, ex, imgs = [], [], [], []
            for u, (concept, iou) in enumerate(units):
                category = SYNTHETIC_CONCEPTS[concept]
                diss.append(
                    dict(
                        unit=u,
                        concept=concept,
                        category=category,
                        iou=iou,
                        is_detector=iou > IOU_THRESHOLD,
                        threshold=1.0 + u / 10,
                    )
                )
                for c in categories:
                    if c == category:
                        per_cat.append(dict(unit=u, category=c, concept=concept, iou=iou))
                    else:
                        other = min(n for n, cc in SYNTHETIC_CONCEPTS.items() if cc == c)
                        per_cat.append(dict(unit=u, category=c, concept=other, iou=round(iou / 3, 4)))
                for r in range(TOP_K):
                    ex.append(
                        dict(
                            unit=u,
                            rank=r,
                            image=(u * 13 + r * 7 + li) % 100,
                            activation=10.0 - r - u / 10,
                            y=r % 7,
                            x=(u + r) % 7,
                        )
                    )
                if images:
                    rel = f"images/{model}/{layer}/unit{u:04d}.jpg"
                    _strip(path / rel, seed=u + 100 * li)
                    imgs.append(dict(unit=u, path=rel))
            dets = [c for c, i in units if i > IOU_THRESHOLD]
            cat.replace(
                "layers",
                [
                    dict(
                        units=len(units),
                        height=7,
                        width=7,
                        images=100,
                        quantile=0.005,
                        iou_threshold=IOU_THRESHOLD,
                        detectors=len(dets),
                        unique_concepts=len(set(dets)),
                    )
                ],
                model=model,
                layer=layer,
            )
            where = dict(model=model, layer=layer)
            cat.replace("dissection", diss, **where)
            cat.replace("dissection_category", per_cat, **where)
            cat.replace("exemplars", ex, **where)
            cat.replace("unit_images", imgs, **where)
            cat.replace(
                "rotations",
                [dict(rotation=r, detectors=d, unique_concepts=n) for r, d, n in rotations.get(layer, [])],
                **where,
            )
    return path


@pytest.fixture
def make_run():
    """``make_run(path, model="toy", layers=None, rotations=None, images=True) -> Path``."""
    return build_run


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    """A synthetic run folder (model "toy", layers layer3 and layer4) under ``tmp_path/run``."""
    return build_run(tmp_path / "run")
