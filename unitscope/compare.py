"""Compare dissection runs: detector units per category, per layer, side by side.

    rows = compare_runs([Path("runs/a"), Path("runs/b")])
    print(format_table(rows))         # rows = categories, columns = run / model / layer

Each row of :func:`compare_runs` is one (run, model, layer, category) with ``detectors`` (units
whose best concept is in that category and passes the IoU threshold), ``unique_concepts`` (distinct
concepts among them), ``units`` (units in the layer) and ``share`` (that category's fraction of the
column's detectors: what a layer devotes its detectors to, comparable across layers of different
widths and training tasks). Every column has a row for every category seen in any run (zeros
included), so the table is rectangular.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from unitscope.catalog import Catalog, category_key, layer_keys, layer_summary
from unitscope.runs import CATALOG

FIELDS = ("run", "model", "layer", "category", "detectors", "unique_concepts", "units", "share")


def _catalog_path(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file() and path.name == CATALOG:
        return path
    catalog = path / CATALOG
    if not catalog.is_file():
        raise FileNotFoundError(f"{path} is not a run folder: it has no catalog.sqlite")
    return catalog


def compare_runs(paths: list[Path]) -> list[dict]:
    """Detectors and unique concepts per category for every layer of every run (see module doc)."""
    if not paths:
        raise ValueError("give at least one run folder")
    columns, categories = [], set()
    for path in paths:
        with Catalog(_catalog_path(path), create=False) as cat:
            categories |= {r["category"] for r in cat.query("SELECT DISTINCT category FROM concepts")}
            keys = layer_keys(cat)
            if not keys:
                raise ValueError(f"{path} has no dissection results yet")
            for model, layer in keys:
                s = layer_summary(cat, model, layer)
                categories |= {c["category"] for c in s["categories"]}
                columns.append((str(path), s))
    categories.discard(None)
    rows = []
    for run, s in columns:
        per = {c["category"]: c for c in s["categories"]}
        total = sum(per.get(category, {}).get("detectors", 0) for category in categories)
        for category in sorted(categories, key=category_key):
            c = per.get(category, {})
            n = c.get("detectors", 0)
            rows.append(
                {
                    "run": run,
                    "model": s["model"],
                    "layer": s["layer"],
                    "category": category,
                    "detectors": n,
                    "unique_concepts": c.get("unique_concepts", 0),
                    "units": s["units"],
                    "share": round(n / total, 4) if total else 0.0,
                }
            )
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def format_table(rows: list[dict]) -> str:
    """Rows = categories, columns = run / model / layer; cells ``detectors (unique concepts)``, then
    each category's share of the column's detectors (per cent)."""
    cols: dict[tuple, dict] = {}
    cats: list[str] = []
    for r in rows:
        cols.setdefault((r["run"], r["model"], r["layer"]), {})[r["category"]] = r
        if r["category"] not in cats:
            cats.append(r["category"])
    keys = list(cols)
    header = [
        ["run"] + [k[0] for k in keys],
        ["model"] + [k[1] for k in keys],
        ["category \\ layer"] + [k[2] for k in keys],
    ]
    body = [[category] + [_cell(cols[k].get(category)) for k in keys] for category in cats]
    total = ["total"] + [
        f"{sum(r['detectors'] for r in cols[k].values())} ({sum(r['unique_concepts'] for r in cols[k].values())})"
        for k in keys
    ]
    units = ["units"] + [str(next(iter(cols[k].values()))["units"]) for k in keys]
    table = header + body + [total, units]
    widths = [max(len(line[j]) for line in table) for j in range(len(keys) + 1)]

    def fmt(line: list[str]) -> str:
        return "  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])])

    rule = "-" * (sum(widths) + 2 * len(keys))
    lines = [fmt(x) for x in header] + [rule] + [fmt(x) for x in body] + [rule, fmt(total), fmt(units)]
    lines.append("cells: detector units (unique concepts)")
    shares = [
        [category] + [f"{100 * cols[k][category]['share']:.0f}%" if category in cols[k] else "0%" for k in keys]
        for category in cats
    ]
    lines += ["", "share of each column's detectors by category"] + [fmt(x) for x in shares]
    return "\n".join(line.rstrip() for line in lines)


def _cell(r: dict | None) -> str:
    return "0 (0)" if r is None else f"{r['detectors']} ({r['unique_concepts']})"
