"""Write a run's report: ``report.json`` (the data), ``report.js`` (the same data for file://)
and ``index.html`` (one static page with the parts' scripts inlined; no CDN, no build step).

    from unitscope.report import write_report
    html = write_report(Path("runs/resnet18-layer4"))     # open html in a browser, offline

``report.json``::

    {"title", "generator", "run", "config",
     "parts": {name: run-level data},                  # e.g. dissection: {"categories": [...]}
     "part_order": [names of the parts used, in order],
     "layers": [{"id": "model/layer", "model", "layer", "units",
                 "parts": {name: section data},        # see unitscope.report.parts.*
                 "unit_pages": {name: page data},      # only what the unit pages need
                 "cards": [{"id": "model/layer/unit", "unit",
                            "parts": {name: card data}}]}]}   # units in ascending order

Each registered :class:`~unitscope.report.parts.ReportPart` with rows in the run adds its data;
the layers are the union over the parts' tables, ordered as the run's config lists them.
"""

from __future__ import annotations

import html as _html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from unitscope.catalog import Catalog, natural_key
from unitscope.report.parts import ReportPart, card_data, part_layers, part_script, registered_parts, used_parts
from unitscope.runs import CATALOG, CONFIG, PAGE, REPORT, REPORT_JS, atomic_write_text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unitscope")
    except PackageNotFoundError:
        return "dev"


def _open_run(run_dir: Path) -> tuple[Path, dict | None]:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    catalog = run_dir / CATALOG
    if not catalog.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no catalog.sqlite")
    config = None
    if (run_dir / CONFIG).is_file():
        config = json.loads((run_dir / CONFIG).read_text())
    return catalog, config


def build_report(run_dir: Path, title: str | None = None) -> dict[str, Any]:
    """The data ``report.json`` holds, read from ``run_dir/catalog.sqlite`` by the registered parts."""
    run_dir = Path(run_dir)
    catalog, config = _open_run(run_dir)
    with Catalog(catalog, create=False) as cat:
        parts = used_parts(cat)
        wanted = [str(x) for x in (config or {}).get("layers") or [] if isinstance(x, str)]
        where = {p.name: part_layers(cat, [p]) for p in parts}  # a part is asked about its own layers only
        keys = sorted(
            set().union(*where.values()),
            key=lambda k: (natural_key(k[0]), wanted.index(k[1]) if k[1] in wanted else len(wanted), natural_key(k[1])),
        )
        layers = [_layer(cat, [p for p in parts if key in where[p.name]], *key) for key in keys]
        run_parts = {p.name: p.run(cat) for p in parts if p.run is not None}
    if title is None:
        models = sorted({ly["model"] for ly in layers})
        what = " · ".join(p.title.lower() for p in parts) or "no results yet"
        title = f"{', '.join(models) or run_dir.resolve().name}: {what}"
    return {
        "title": title,
        "generator": f"unitscope {_version()}",
        "run": run_dir.resolve().name,
        "config": config,
        "parts": {k: v for k, v in run_parts.items() if v is not None},
        "part_order": [p.name for p in parts],
        "part_titles": {p.name: p.title for p in parts},
        "layers": layers,
    }


def _layer(cat: Catalog, parts: list[ReportPart], model: str, layer: str) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    pages: dict[str, Any] = {}
    cards: dict[int, dict[str, Any]] = {}
    for part in parts:
        data = part.layer(cat, model, layer) if part.layer is not None else None
        if data is not None:
            sections[part.name] = data
        page = part.page(cat, model, layer) if part.page is not None else None
        if page is not None:
            pages[part.name] = page
        for unit, row in card_data(part, cat, model, layer).items():
            card = cards.setdefault(int(unit), {"id": f"{model}/{layer}/{int(unit)}", "unit": int(unit), "parts": {}})
            card["parts"][part.name] = row
    return {
        "id": f"{model}/{layer}",
        "model": model,
        "layer": layer,
        "units": len(cards),
        "parts": sections,
        "unit_pages": pages,
        "cards": [cards[u] for u in sorted(cards)],
    }


def _scripts(names: list[str]) -> str:
    """The used parts' scripts as inline ``<script>`` elements (``</`` escaped)."""
    by_name = {p.name: p for p in registered_parts()}
    out = []
    for name in names:
        part = by_name.get(name)
        if part is None or part.script is None:
            continue
        text = part_script(part).replace("</script", "<\\/script")
        out.append(f'<script data-part="{_html.escape(name)}">\n{text}\n</script>')
    return "\n".join(out)


def write_report(run_dir: Path, title: str | None = None) -> Path:
    """Write ``report.json``, ``report.js`` and ``index.html`` into ``run_dir``; return the html path."""
    run_dir = Path(run_dir)
    data = build_report(run_dir, title)
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
    atomic_write_text(run_dir / REPORT, text + "\n")
    # file:// pages cannot fetch() a local file, so the page loads the same data as a script.
    compact = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    compact = compact.replace("</", "<\\/")  # harmless in JSON, safe if ever inlined
    atomic_write_text(run_dir / REPORT_JS, "window.UNITSCOPE_REPORT = " + compact + ";\n")
    template = resources.files("unitscope.report").joinpath("index.html").read_text(encoding="utf-8")
    page = template.replace("{{TITLE}}", _html.escape(data["title"]))
    page = page.replace("<!--{{PARTS}}-->", _scripts(data["part_order"]))
    out = run_dir / PAGE
    atomic_write_text(out, page)
    return out
