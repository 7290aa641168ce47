"""A run folder's results in Python and in notebooks.

    import unitscope
    run = unitscope.open_run("runs/lite0")
    run                                  # in Jupyter: each layer's summary, top units with exemplar strips
    run.tables                           # ['concepts', 'dissection', 'exemplars', ...]
    df = run["dissection"]               # a pandas DataFrame when pandas is installed, else a list of dicts
    run.query("SELECT unit, iou FROM dissection WHERE concept = ?", ("tree",))
    u = run.unit("layer4", 7)            # what every analysis knows about unit 7 (unitscope.facts)
    u.label, u["dissection"].rows["iou"], u["featvis"].images     # in Jupyter: all of it, images inline

Install pandas for DataFrames: ``pip install 'unitscope[notebook]'``.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unitscope.catalog import Catalog, layer_keys, layer_summary
from unitscope.errors import UsageError
from unitscope.facts import UnitFacts, fact_models, sources, unit_facts, unit_label
from unitscope.runs import CATALOG

TOP_UNITS = 8  # units shown per layer in a notebook


def _frame(rows: list[dict], columns: list[str] | None = None) -> Any:
    """Rows as a pandas DataFrame when pandas can be imported, else the rows themselves."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=columns)


class RunResults:
    """The catalog tables of one run folder; ``run[table]`` reads a whole table."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / CATALOG).is_file():
            raise FileNotFoundError(
                f"{self.path} is not a run folder: it has no catalog.sqlite "
                "(a run folder is what `unitscope dissect --out` writes)"
            )
        self._catalog().close()  # a catalog this version cannot read fails now, naming both versions

    def _catalog(self) -> Catalog:
        return Catalog(self.path / CATALOG, create=False)

    @property
    def tables(self) -> list[str]:
        with self._catalog() as cat:
            return [t for t in cat.tables() if cat.query(f"SELECT 1 FROM {t} LIMIT 1")]

    def __getitem__(self, table: str) -> Any:
        with self._catalog() as cat:
            return _frame(cat.rows(table), cat.columns(table))

    def query(self, sql: str, params: Any = ()) -> Any:
        """One SQL statement over the catalog; a DataFrame (or rows)."""
        with self._catalog() as cat:
            return _frame(cat.query(sql, params))

    def unit(self, layer: str, unit: int, model: str | None = None) -> UnitView:
        """What every registered analysis knows about one unit (:func:`unitscope.facts.unit_facts`);
        ``model`` may be left out when the run holds one model."""
        with self._catalog() as cat:
            models = fact_models(cat)
            if model is None:
                if len(models) > 1:
                    raise UsageError(
                        f"{self.path} holds several models ({', '.join(models)}): "
                        f"pass model=, e.g. run.unit({layer!r}, {unit}, model={models[0]!r})"
                    )
                model = models[0] if models else ""
            facts = unit_facts(cat, model, layer, int(unit))
        titles = {s.name: s.title for s in sources()}
        return UnitView(self.path, model, layer, int(unit), facts, {n: titles.get(n, n) for n in facts})

    def __repr__(self) -> str:
        return f"RunResults({str(self.path)!r}, tables={self.tables})"

    def _repr_html_(self) -> str:
        return run_html(self.path)


@dataclass
class UnitView:
    """One unit's facts by analysis (``u["dissection"]`` a :class:`~unitscope.facts.UnitFacts`);
    ``label`` the first analysis' label. Shows as HTML in Jupyter, images inlined."""

    path: Path
    model: str
    layer: str
    unit: int
    facts: dict[str, UnitFacts]
    titles: dict[str, str]

    @property
    def label(self) -> str | None:
        return unit_label(self.facts)

    def __getitem__(self, analysis: str) -> UnitFacts:
        if analysis not in self.facts:
            raise KeyError(
                f"no facts of {analysis!r} about unit {self.unit} of {self.layer}; "
                f"analyses with facts: {sorted(self.facts)}"
            )
        return self.facts[analysis]

    def __contains__(self, analysis: object) -> bool:
        return analysis in self.facts

    def __repr__(self) -> str:
        return (
            f"<unit {self.unit} of {self.model}/{self.layer}: {self.label or 'no label'}; "
            f"facts from {', '.join(self.facts) or 'no analysis'}>"
        )

    def _repr_html_(self) -> str:
        esc = html.escape
        out = [
            f"<div class='unitscope-unit'><b>{esc(self.layer)} unit {self.unit}</b>"
            f"{': ' + esc(self.label) if self.label else ''}"
        ]
        for name, f in self.facts.items():
            out.append(f"<h4 style='margin:8px 0 2px'>{esc(self.titles.get(name, name))}</h4>")
            if f.label:
                out.append(f"<div>{esc(f.label)}</div>")
            if f.rows:
                out.append(
                    "<table>"
                    + "".join(
                        f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(_show(v))}</td></tr>"
                        for k, v in f.rows.items()
                    )
                    + "</table>"
                )
            out += [_inline_image(self.path, rel, kind) for kind, rel in f.images.items()]
            out += [
                f"<div><a href='{esc(str(self.path / rel))}'>{esc(caption)}</a></div>"
                for caption, rel in f.links.items()
            ]
        out.append("</div>")
        return "".join(out)


def _show(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + " ..."


def open_run(path: str | Path) -> RunResults:
    """The results of the run folder at ``path`` (FileNotFoundError if it is none;
    :class:`~unitscope.catalog.CatalogVersionError` if a newer unitscope wrote its catalog)."""
    return RunResults(path)


def run_html(run_dir: str | Path, top: int = TOP_UNITS) -> str:
    """An HTML summary of a run folder: per layer the detector counts and the ``top`` units by IoU,
    each with its exemplar strip inlined (so the notebook needs no file access)."""
    run_dir = Path(run_dir)
    esc = html.escape
    parts = [f"<div class='unitscope-run'><b>{esc(run_dir.name)}</b>"]
    with Catalog(run_dir / CATALOG, create=False) as cat:
        for model, layer in layer_keys(cat):
            s = layer_summary(cat, model, layer)
            parts.append(
                f"<h4 style='margin:10px 0 4px'>{esc(model)} / {esc(layer)}: {s['detectors']} of "
                f"{s['units']} units are detectors, {s['unique_concepts']} unique concepts</h4>"
            )
            meta = s.get("meta") or {}
            sat, tied = meta.get("saturated_units") or 0, meta.get("tied_units") or 0
            if sat or tied:
                parts.append(
                    f"<p style='color:#b45309;margin:2px 0'>Warning: {sat} units have their threshold at "
                    f"their largest value (empty masks), {tied} units' exemplars all tie; values: "
                    f"{esc(meta.get('activation_values') or 'layer output')}</p>"
                )
            rows = cat.query(
                "SELECT d.unit, d.concept, d.category, d.iou, i.path FROM dissection d "
                "LEFT JOIN unit_images i USING (model, layer, unit) "
                "WHERE d.model = ? AND d.layer = ? ORDER BY d.iou DESC, d.unit LIMIT ?",
                (model, layer, top),
            )
            parts.append("<table><tr><th>unit</th><th>concept</th><th>IoU</th><th>exemplars</th></tr>")
            for r in rows:
                concept = (
                    f"{esc(r['concept'])} <small>({esc(r['category'] or '')})</small>"
                    if r["concept"]
                    else "<i>no activation above threshold</i>"
                )
                iou = "" if r["iou"] is None else f"{r['iou']:.3f}"
                parts.append(
                    f"<tr><td>{r['unit']}</td><td>{concept}</td><td>{iou}</td>"
                    f"<td>{_inline_image(run_dir, r['path'])}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</div>")
    return "".join(parts)


def _inline_image(run_dir: Path, rel: str | None, alt: str = "exemplars") -> str:
    if not rel or not (run_dir / rel).is_file():
        return ""
    kind = "png" if rel.lower().endswith(".png") else "jpeg"
    data = base64.b64encode((run_dir / rel).read_bytes()).decode("ascii")
    return f"<img src='data:image/{kind};base64,{data}' style='height:64px' alt='{html.escape(alt)}'>"
