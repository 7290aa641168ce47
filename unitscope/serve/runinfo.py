"""What a run folder knows about units, read from its catalog for the probe page.

    from unitscope.serve.runinfo import RunInfo
    run = RunInfo("runs/lite0", model="efficientnet_lite0")
    run.labels("blocks.6")      # {unit: {"concept", "category", "iou", "is_detector"}}
    run.unit("blocks.6", 12)    # dissection, categories, exemplars, images, visualizations, importance

Reads whichever of the tables ``dissection``, ``dissection_category``, ``exemplars``,
``unit_images``, ``unit_visualizations``, ``unit_importance``, ``unit_selectivity`` and ``descriptions`` exist; a
missing table is no error. Image paths come back as URLs under ``/run/`` (the app serves the run folder there).
Rows are matched on the served model's name; a catalog that holds one model only is matched
whatever that model is called there (a run made under another name of the same network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from unitscope.catalog import Catalog

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
        db = self.path / "catalog.sqlite"
        if not db.is_file():
            raise FileNotFoundError(f"{self.path} has no catalog.sqlite: is it a unitscope run folder?")
        with self._open() as cat:
            self.tables = set(cat.tables())
            models = self._models(cat)
        if model not in models and len(models) == 1:
            self.model = models[0]

    def _open(self) -> Catalog:
        # A fresh connection per call: requests run on several threads.
        return Catalog(self.path / "catalog.sqlite", create=False)

    def _models(self, cat: Catalog) -> list[str]:
        found: set[str] = set()
        for table in ("dissection", "unit_images", "unit_visualizations", "unit_importance"):
            if table in self.tables:
                found |= {r["model"] for r in cat.query(f"SELECT DISTINCT model FROM {table}")}
        return sorted(found)

    def _rows(self, cat: Catalog, table: str, layer: str, unit: int | None = None,
              order: str = "") -> list[dict]:
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
        return {r["layer"]: "pre" if (r.get("activation_values") or "").startswith("pre-activation") else "post"
                for r in rows}

    def url(self, rel: str) -> str:
        return RUN_URL + quote(rel.lstrip("/"))

    def layers(self) -> set[str]:
        """Layers the run has any unit rows for."""
        if self.path is None:
            return set()
        with self._open() as cat:
            return {r["layer"] for t in ("dissection", "unit_images", "unit_visualizations")
                    if t in self.tables
                    for r in cat.query(f"SELECT DISTINCT layer FROM {t} WHERE model = ?", (self.model,))}

    def labels(self, layer: str) -> dict[int, dict[str, Any]]:
        """Each dissected unit's best concept (``concept`` None: never above threshold)."""
        if self.path is None:
            return {}
        with self._open() as cat:
            rows = self._rows(cat, "dissection", layer)
        return {r["unit"]: {"concept": r["concept"], "category": r["category"], "iou": r["iou"],
                            "is_detector": bool(r["is_detector"])} for r in rows}

    def unit(self, layer: str, unit: int) -> dict[str, Any]:
        """Everything the run folder has about one unit; empty parts where it has nothing."""
        out: dict[str, Any] = {"dissection": None, "categories": [], "exemplars": [],
                               "strip": None, "visualizations": [], "importance": [], "selectivity": None,
                               "descriptions": []}
        if self.path is None:
            return out
        with self._open() as cat:
            diss = self._rows(cat, "dissection", layer, unit)
            if diss:
                d = diss[0]
                out["dissection"] = {k: d[k] for k in ("concept", "category", "iou", "threshold")}
                out["dissection"]["is_detector"] = bool(d["is_detector"])
            out["categories"] = [{k: r[k] for k in ("category", "concept", "iou")}
                                 for r in self._rows(cat, "dissection_category", layer, unit, "iou DESC")]
            out["exemplars"] = [{k: r[k] for k in ("rank", "image", "activation", "y", "x")}
                                for r in self._rows(cat, "exemplars", layer, unit, "rank")]
            strips = self._rows(cat, "unit_images", layer, unit)
            out["strip"] = self.url(strips[0]["path"]) if strips else None
            out["visualizations"] = [{"objective": r.get("objective"), "url": self.url(r["path"])}
                                     for r in self._rows(cat, "unit_visualizations", layer, unit)]
            out["importance"] = [{"class": r.get("class"), "accuracy_drop": r.get("accuracy_drop")}
                                 for r in self._rows(cat, "unit_importance", layer, unit,
                                                     "accuracy_drop DESC")]
            sel = self._rows(cat, "unit_selectivity", layer, unit)
            out["selectivity"] = {k: sel[0].get(k) for k in ("selectivity", "top_class")} if sel else None
            out["descriptions"] = [{k: v for k, v in r.items() if k not in ("model", "layer", "unit")}
                                   for r in self._rows(cat, "descriptions", layer, unit, "kind DESC")]  # pmi, ml, label
        return out
