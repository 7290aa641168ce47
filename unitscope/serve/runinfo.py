"""What a run folder knows about units, read from its catalog for the probe page.

    from unitscope.serve.runinfo import RunInfo
    run = RunInfo("runs/lite0", model="efficientnet_lite0")
    run.labels("blocks.6")      # {unit: {"concept", "category", "iou", "is_detector"}}
    run.unit("blocks.6", 12)    # dissection, categories, exemplars, strip, visualizations, importance, ...,
                                # and "facts": {analysis: {"label", "rows", "images", "links"}}

``unit`` reads through :func:`unitscope.facts.unit_facts`, the one reader every analysis registers
with (its report part): any registered analysis with rows about the unit appears under ``facts``,
image and link paths as URLs under ``/run/`` (the app serves the run folder there). The older
fields (``dissection``, ``categories``, ``exemplars``, ``strip``, ``visualizations``,
``importance``, ``selectivity``, ``descriptions``) are kept, taken from those facts; a missing
table is no error. Rows are matched on the served model's name; a catalog that holds one model
only is matched whatever that model is called there (a run made under another name of the same
network).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts, fact_layers, fact_models, sources, unit_facts
from unitscope.runs import CATALOG

RUN_URL = "/run/"


class RunInfo:
    """A run folder opened read-only; ``RunInfo(None)`` knows nothing and answers empty."""

    def __init__(self, run: str | Path | None, model: str = ""):
        self.path = Path(run) if run is not None else None
        self.model = model
        self.tables: set[str] = set()
        if self.path is None:
            return
        if not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")
        db = self.path / CATALOG
        if not db.is_file():
            raise FileNotFoundError(f"{self.path} has no catalog.sqlite: is it a unitscope run folder?")
        sources()  # load the analyses' readers now, not in the first requests' threads
        with self._open() as cat:
            self.tables = set(cat.tables())
            models = self._models(cat)
        if model not in models and len(models) == 1:
            self.model = models[0]

    def _open(self) -> Catalog:
        # A fresh connection per call: requests run on several threads.
        assert self.path is not None, "RunInfo(None) opens no catalog"
        return Catalog(self.path / CATALOG, create=False)

    def _models(self, cat: Catalog) -> list[str]:
        return fact_models(cat)

    def _rows(self, cat: Catalog, table: str, layer: str, unit: int | None = None, order: str = "") -> list[dict]:
        if table not in self.tables:
            return []
        sql = f"SELECT * FROM {table} WHERE model = ? AND layer = ?"
        params: list[Any] = [self.model, layer]
        if unit is not None:
            sql += " AND unit = ?"
            params.append(unit)
        return cat.query(sql + (f" ORDER BY {order}" if order else ""), params)

    def values_rules(self) -> dict[str, str]:
        """Per dissected layer, the values the run thresholded ("pre" or "post", from the catalog's
        ``layers.activation_values``; "post" for a run made before it was recorded), so that the live
        maps are on the scale of its thresholds and exemplars."""
        if self.path is None or "layers" not in self.tables:
            return {}
        with self._open() as cat:
            rows = cat.query("SELECT * FROM layers WHERE model = ?", (self.model,))
        return {
            r["layer"]: "pre" if (r.get("activation_values") or "").startswith("pre-activation") else "post"
            for r in rows
        }

    def url(self, rel: str) -> str:
        return RUN_URL + quote(rel.lstrip("/"))

    def layers(self) -> set[str]:
        """Layers the run has any unit rows for (in any registered analysis' tables)."""
        if self.path is None:
            return set()
        with self._open() as cat:
            return fact_layers(cat, self.model)

    def labels(self, layer: str) -> dict[int, dict[str, Any]]:
        """Each dissected unit's best concept (``concept`` None: never above threshold)."""
        if self.path is None:
            return {}
        with self._open() as cat:
            rows = self._rows(cat, "dissection", layer)
        return {
            r["unit"]: {
                "concept": r["concept"],
                "category": r["category"],
                "iou": r["iou"],
                "is_detector": bool(r["is_detector"]),
            }
            for r in rows
        }

    def unit(self, layer: str, unit: int) -> dict[str, Any]:
        """Everything the run folder has about one unit; empty parts where it has nothing."""
        out: dict[str, Any] = {
            "dissection": None,
            "categories": [],
            "exemplars": [],
            "strip": None,
            "visualizations": [],
            "importance": [],
            "selectivity": None,
            "descriptions": [],
            "facts": {},
        }
        if self.path is None:
            return out
        with self._open() as cat:
            facts = unit_facts(cat, self.model, layer, unit)
        out.update(_older_fields(facts, self.url))
        out["facts"] = {name: {"title": title, **f.to_json(self.url)} for name, (title, f) in _titled(facts).items()}
        return out


def _titled(facts: dict[str, UnitFacts]) -> dict[str, tuple[str, UnitFacts]]:
    titles = {s.name: s.title for s in sources()}
    return {name: (titles.get(name, name), f) for name, f in facts.items()}


def _older_fields(facts: dict[str, UnitFacts], url: Callable[[str], str]) -> dict[str, Any]:
    """The fields ``/api/unit`` had before the facts block, taken from the built-in analyses' facts."""
    out: dict[str, Any] = {}
    d = facts.get("dissection")
    if d is not None:
        if "concept" in d.rows:
            out["dissection"] = {k: d.rows[k] for k in ("concept", "category", "iou", "threshold", "is_detector")}
        out["categories"] = d.rows.get("categories", [])
        out["exemplars"] = d.rows.get("exemplars", [])
        out["strip"] = url(d.images["exemplars"]) if "exemplars" in d.images else None
    v = facts.get("featvis")
    if v is not None and "visualization" in v.images:
        out["visualizations"] = [{"objective": v.rows.get("objective"), "url": url(v.images["visualization"])}]
    a = facts.get("ablation")
    if a is not None:
        out["importance"] = a.rows.get("importance", [])
        if "selectivity" in a.rows:
            out["selectivity"] = {k: a.rows[k] for k in ("selectivity", "top_class")}
    t = facts.get("describe")
    if t is not None:
        out["descriptions"] = t.rows.get("descriptions", [])
    return out
