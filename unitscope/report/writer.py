"""Write a run's report: ``report.json`` (the data), ``report.js`` (the same data for file://)
and ``index.html`` (one static page, no CDN, no build step).

    from unitscope.report import write_report
    html = write_report(Path("runs/resnet18-layer4"))     # open html in a browser, offline

``report.json``::

    {"title", "generator", "config", "categories": [...],   # categories in NetDissect order
     "layers": [{"id": "model/layer", "model", "layer", "units", "dissected", "height", "width", "images",
                 "quantile", "iou_threshold", "detectors", "unique_concepts",
                 "categories": [{"category", "detectors", "unique_concepts"}],
                 "concepts": [{"concept", "category", "detectors"}],      # the bar chart
                 "histogram": {"edges": [...], "counts": [...]},          # IoU of every unit
                 "rotations": [{"rotation", "detectors", "unique_concepts"}],
                 "cards": [{"id": "model/layer/unit", "unit", "concept", "category", "iou",
                            "is_detector", "threshold", "image", "labels": [{"category",
                            "concept", "iou"}], "exemplars": [{"rank", "image", "activation",
                            "y", "x"}]}]}]}                              # units by IoU, descending
"""

from __future__ import annotations

import html as _html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from unitscope.catalog import Catalog, category_key, layer_keys, layer_summary, natural_key
from unitscope.runs import atomic_write_text

HIST_BINS = 20  # IoU histogram: this many bins of a round width covering 0 .. max IoU


def _histogram(values: list[float], threshold: float | None) -> dict[str, Any]:
    """Bins of a round width (0.005, 0.01, 0.02, 0.025, 0.05 ... ) from 0 to past the maximum."""
    top = max([v for v in values] + [threshold or 0.0, 1e-6])
    width = top / HIST_BINS
    exp = 10 ** math.floor(math.log10(width))
    width = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= width * (1 - 1e-9))
    n = max(1, math.ceil(top / width - 1e-9))
    if n * width <= top:
        n += 1  # the maximum falls in a half-open bin, never on the last edge
    counts = [0] * n
    for v in values:
        counts[min(n - 1, max(0, int(math.floor(v / width + 1e-9))))] += 1
    return {"edges": [round(i * width, 10) for i in range(n + 1)], "counts": counts}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unitscope")
    except PackageNotFoundError:
        return "dev"


def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(run_dir: Path, title: str | None = None) -> dict[str, Any]:
    """The data ``report.json`` holds, read from ``run_dir/catalog.sqlite``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    catalog = run_dir / "catalog.sqlite"
    if not catalog.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no catalog.sqlite")
    config = None
    if (run_dir / "config.json").is_file():
        config = json.loads((run_dir / "config.json").read_text())
    version = _version()

    with Catalog(catalog, create=False) as cat:
        keys = layer_keys(cat)
        wanted = [str(x) for x in (config or {}).get("layers") or [] if isinstance(x, str)]
        keys.sort(key=lambda k: (natural_key(k[0]), wanted.index(k[1]) if k[1] in wanted else len(wanted),
                                 natural_key(k[1])))
        layers = [_layer(cat, model, layer) for model, layer in keys]
        categories = sorted({c["category"] for c in cat.rows("concepts")}
                            | {u["category"] for ly in layers for u in ly["cards"]} - {None},
                            key=category_key)
    if title is None:
        models = sorted({ly["model"] for ly in layers})
        title = f"{', '.join(models) or run_dir.resolve().name}: network dissection"
    return {"title": title, "generator": f"unitscope {version}", "run": run_dir.resolve().name,
            "config": config, "categories": categories, "layers": layers}


def _layer(cat: Catalog, model: str, layer: str) -> dict[str, Any]:
    s = layer_summary(cat, model, layer)
    meta = s.pop("meta")
    where = dict(model=model, layer=layer)
    labels: dict[int, list] = {}
    for r in cat.rows("dissection_category", **where):
        labels.setdefault(r["unit"], []).append(
            {"category": r["category"], "concept": r["concept"], "iou": _num(r["iou"])})
    exemplars: dict[int, list] = {}
    for r in cat.rows("exemplars", **where):
        exemplars.setdefault(r["unit"], []).append(
            {k: _num(r[k]) for k in ("rank", "image", "activation", "y", "x")})
    images = {r["unit"]: r["path"] for r in cat.rows("unit_images", **where)}
    units = []
    for r in cat.rows("dissection", **where):
        u = r["unit"]
        units.append({
            "id": f"{model}/{layer}/{u}", "unit": u, "concept": r["concept"],
            "category": r["category"], "iou": _num(r["iou"]), "is_detector": bool(r["is_detector"]),
            "threshold": _num(r["threshold"]), "image": images.get(u),
            "labels": sorted(labels.get(u, []), key=lambda x: category_key(x["category"])),
            "exemplars": exemplars.get(u, []),
        })
    units.sort(key=lambda x: (-(x["iou"] or 0.0), x["unit"]))
    concepts = cat.query(
        "SELECT concept, category, COUNT(*) AS detectors FROM dissection "
        "WHERE model = ? AND layer = ? AND is_detector != 0 GROUP BY category, concept",
        (model, layer))
    concepts.sort(key=lambda c: (category_key(c["category"]), -c["detectors"], c["concept"] or ""))
    out = {"id": f"{model}/{layer}", "model": model, "layer": layer}
    for k in ("units", "dissected", "detectors", "unique_concepts"):
        out[k] = s[k]
    for k in ("height", "width", "images", "quantile", "iou_threshold"):
        out[k] = _num(meta.get(k))
    out["categories"] = s["categories"]
    out["concepts"] = concepts
    out["histogram"] = _histogram([x["iou"] or 0.0 for x in units], out["iou_threshold"])
    out["rotations"] = [{k: r[k] for k in ("rotation", "detectors", "unique_concepts")}
                        for r in cat.rows("rotations", **where)]
    out["cards"] = units
    return out


def write_report(run_dir: Path, title: str | None = None) -> Path:
    """Write ``report.json``, ``report.js`` and ``index.html`` into ``run_dir``; return the html path."""
    run_dir = Path(run_dir)
    data = build_report(run_dir, title)
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    atomic_write_text(run_dir / "report.json", text + "\n")
    # file:// pages cannot fetch() a local file, so the page loads the same data as a script.
    compact = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    compact = compact.replace("</", "<\\/")  # harmless in JSON, safe if ever inlined
    atomic_write_text(run_dir / "report.js", "window.UNITSCOPE_REPORT = " + compact + ";\n")
    template = resources.files("unitscope.report").joinpath("index.html").read_text(encoding="utf-8")
    page = template.replace("{{TITLE}}", _html.escape(data["title"]))
    out = run_dir / "index.html"
    atomic_write_text(out, page)
    return out
