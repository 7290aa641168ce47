"""``unitscope explain``: the building blocks of one image as a static offline page.

    html = write_explain(model, "cat.jpg", "blocks.4.1.bn2", run_dir)   # run_dir/explain/cat/index.html
    explain(model, "cat.jpg", "blocks.4.1.bn2", run_dir).summary()     # the page's data, no page

The page shows the prediction, spatial attribution to the target class, the units with the
largest channel attribution (plain and path-integrated), the semantic dictionary (top units per
position, with dissection labels and visualisations from the run's catalog when present), NMF
neuron groups with one icon each, the activation grid and a feature inversion. All icons are
rendered in one batch. Data sit in ``explain.json`` and inline in ``index.html`` (works offline).
The top units by channel attribution go to the run's catalog (table ``attribution_units``,
:mod:`unitscope.attribution.tables`), so the report, ``serve`` and ``open_run`` list, per unit, the
explained images it led in (:mod:`unitscope.facts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from unitscope.attribution.blocks import (
    feature_inversion,
    grid_vectors,
    layer_activations,
    nmf_groups,
    semantic_dictionary,
)
from unitscope.attribution.core import channel_attribution, spatial_attribution
from unitscope.attribution.result import ExplainResult
from unitscope.featvis.images import save_png
from unitscope.runs import CATALOG, atomic_write_text


@dataclass
class ExplainSettings:
    target: int | None = None  # class to explain; default the top prediction
    k: int = 3  # units per position in the semantic dictionary
    groups: int = 4  # NMF neuron groups
    cells: int = 7  # dictionary and activation grid: at most cells x cells positions
    top_units: int = 8  # units listed by channel attribution
    ig_steps: int = 16  # path-integrated channel attribution steps
    icon_steps: int = 128  # fewer than Lucid's 512: one page renders ~80 icons
    icon_size: int = 64
    inversion_steps: int = 256
    seed: int = 0
    progress: bool = True


def _catalog_units(run_dir: Path, model: str, layer: str) -> tuple[dict[int, str], dict[int, str]]:
    """Each unit's label and visualisation path (relative to run_dir) from the run's unit facts
    (:mod:`unitscope.facts`: a detector's concept first, then any other analysis' label), if any."""
    from unitscope.catalog import Catalog
    from unitscope.facts import layer_facts, unit_image, unit_label

    path = run_dir / CATALOG
    if not path.is_file():
        return {}, {}
    with Catalog(path) as cat:
        facts = layer_facts(cat, model, layer)
    labels = {u: label for u, f in facts.items() if (label := unit_label(f))}
    images = {
        u: image for u, f in facts.items() if (image := unit_image(f, "visualization")) and (run_dir / image).is_file()
    }
    return labels, images


def _overlay(img: torch.Tensor, heat: torch.Tensor, signed: bool = True) -> torch.Tensor:
    """``img`` [3, H, W] in [0, 1] greyed, with ``heat`` [h, w] upsampled on top: red positive,
    blue negative (``signed``) or red alone."""
    h = torch.nn.functional.interpolate(
        heat[None, None].float(), size=img.shape[1:], mode="bilinear", align_corners=False
    )[0, 0]
    h = h / h.abs().max().clamp(min=1e-12)
    grey = img.mean(0, keepdim=True).expand(3, -1, -1) * 0.5 + 0.25
    colour = torch.stack([h.clamp(min=0), torch.zeros_like(h), (-h).clamp(min=0) if signed else torch.zeros_like(h)])
    alpha = h.abs()[None] if signed else h.clamp(min=0)[None]
    return grey * (1 - alpha) + colour * alpha


def _icon_objectives(layer: str, units: list[int], channels: torch.Tensor, vectors: torch.Tensor):
    from unitscope.featvis import channel, direction, stack

    objs = [channel(layer, u) for u in units] + [direction(layer, v) for v in channels]
    objs += [direction(layer, v) for v in vectors]
    return stack(objs)


def _classes(model: nn.Module, x: torch.Tensor, k: int = 5) -> list[dict]:
    from unitscope.models import get_info

    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    top = probs.topk(min(k, len(probs)))
    info = get_info(model)
    return [{"index": int(i), "name": info.class_name(int(i)), "p": float(p)} for p, i in zip(top.values, top.indices)]


def explain(
    model: nn.Module, image_path: str | Path, layer: str, run_dir: str | Path, settings: ExplainSettings | None = None
) -> ExplainResult:
    """Compute everything, write the images, return the page data (paths relative to the page) as an
    :class:`~unitscope.attribution.result.ExplainResult` (a mapping, with ``summary()``)."""
    from unitscope.classify import load_image
    from unitscope.featvis import render
    from unitscope.models import get_info

    s = settings or ExplainSettings()
    run_dir, info = Path(run_dir), get_info(model)
    page = run_dir / "explain" / Path(image_path).stem
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = info.transform()(load_image(image_path))[None].to(device)
    shown = (x[0].cpu() * torch.tensor(info.std).view(3, 1, 1) + torch.tensor(info.mean).view(3, 1, 1)).clamp(0, 1)
    classes = _classes(model, x)
    target = classes[0]["index"] if s.target is None else s.target
    acts = layer_activations(model, x, layer)[0].cpu()  # [C, h, w]
    spatial = spatial_attribution(model, x, layer, target)[0].cpu()
    plain = channel_attribution(model, x, layer, target)[0].cpu()
    integrated = channel_attribution(model, x, layer, target, steps=s.ig_steps)[0].cpu()
    labels, vis = _catalog_units(run_dir, info.name, layer)
    pooled = torch.nn.functional.adaptive_avg_pool2d(
        acts[None], (min(acts.shape[1], s.cells), min(acts.shape[2], s.cells))
    )[0]
    table = semantic_dictionary(pooled, s.k, labels)
    spatial_groups, channels = nmf_groups(acts.clamp(min=0), s.groups, seed=s.seed)
    top_units = torch.argsort(-integrated, stable=True)[: s.top_units].tolist()
    units = sorted({e["unit"] for row in table for cell in row for e in cell} | set(top_units))
    vectors = grid_vectors(acts, s.cells)
    icons = render(
        model,
        _icon_objectives(layer, units, channels, vectors),
        batch=len(units) + len(channels) + len(vectors),
        steps=s.icon_steps,
        size=s.icon_size,
        upsample=False,
        seed=s.seed,
        progress=s.progress,
        desc="explain icons",
    ).images
    inversion = feature_inversion(
        model, x, layer, steps=s.inversion_steps, seed=s.seed, progress=s.progress, desc="feature inversion"
    ).images[0]
    save_png(shown, page / "input.png")
    save_png(_overlay(shown, spatial), page / "attribution.png")
    save_png(inversion, page / "inversion.png")
    unit_icon = {}
    for i, u in enumerate(units):
        save_png(icons[i], page / f"units/{u}.png")
        unit_icon[u] = f"units/{u}.png"
    for g in range(len(channels)):
        save_png(icons[len(units) + g], page / f"groups/icon_{g}.png")
        save_png(_overlay(shown, spatial_groups[g], signed=False), page / f"groups/map_{g}.png")
    for i in range(len(vectors)):
        save_png(icons[len(units) + len(channels) + i], page / f"grid/{i}.png")
    rel = "../../"
    for row in table:
        for cell in row:
            for e in cell:
                e["icon"] = unit_icon[e["unit"]]
                if e["unit"] in vis:
                    e["image"] = rel + vis[e["unit"]]
    cells_h, cells_w = pooled.shape[1:]
    return ExplainResult(
        {
            "model": info.name,
            "layer": layer,
            "image": Path(image_path).name,
            "classes": classes,
            "target": {"index": target, "name": info.class_name(target)},
            "shape": list(acts.shape),
            "attribution_total": float(spatial.sum()),
            "channels": [
                {
                    "unit": u,
                    "attribution": float(plain[u]),
                    "integrated": float(integrated[u]),
                    "label": labels.get(u),
                    "icon": unit_icon[u],
                    "image": rel + vis[u] if u in vis else None,
                }
                for u in top_units
            ],
            "dictionary": table,
            "cells": [int(cells_h), int(cells_w)],
            "groups": [
                {
                    "map": f"groups/map_{g}.png",
                    "icon": f"groups/icon_{g}.png",
                    "units": torch.argsort(-channels[g], stable=True)[:5].tolist(),
                }
                for g in range(len(channels))
            ],
            "grid": [f"grid/{i}.png" for i in range(len(vectors))],
            "settings": vars(s),
        },
        page,
    )


def write_explain(
    model: nn.Module, image_path: str | Path, layer: str, run_dir: str | Path, settings: ExplainSettings | None = None
) -> Path:
    """Write ``run_dir/explain/<image stem>/`` (images, explain.json, index.html); return the html."""
    result = explain(model, image_path, layer, run_dir, settings)
    page, data = result.page, result.data
    text = json.dumps(data, indent=1)
    atomic_write_text(page / "explain.json", text + "\n")
    template = resources.files("unitscope.attribution").joinpath("explain.html").read_text(encoding="utf-8")
    html = template.replace("/*DATA*/null", text.replace("</", "<\\/"))
    atomic_write_text(page / "index.html", html)
    record_units(Path(run_dir), data)
    return page / "index.html"


def record_units(run_dir: Path, data: dict) -> None:
    """Write the page's top units (``data["channels"]``, in rank order) to the run's catalog,
    replacing the rows of an earlier explanation of the same image, layer and class."""
    from unitscope.attribution.tables import TABLE
    from unitscope.catalog import Catalog

    target = data["target"]
    rows = [
        {
            "unit": c["unit"],
            "class_name": target["name"],
            "rank": rank,
            "attribution": c["attribution"],
            "integrated": c["integrated"],
        }
        for rank, c in enumerate(data["channels"])
    ]
    with Catalog(run_dir / CATALOG) as cat:
        cat.replace(
            TABLE,
            rows,
            model=data["model"],
            layer=data["layer"],
            image=Path(data["image"]).stem,
            class_index=target["index"],
        )
