"""The catalog table of unit descriptions (importing this module declares it).

- ``descriptions(model, layer, unit, kind, description, formula, length, exemplar_iou, pmi,
  log_prior, f1, iou, auprc, pearson, base_rate, unit_rate, p_f1, p_iou, p_auprc, p_pearson,
  images, search_iou)`` -- one row per unit and ``kind``: ``pmi`` (the chosen description), ``ml``
  (maximum likelihood: the best exemplar IoU), ``fair_label`` (the fair single-label baseline: the
  concept with the best IoU at the dissection's threshold over the search images only, never the
  held-out ones; its IoU there is ``search_iou``) and ``label`` (the dissection's own label, chosen
  on every image, the held-out ones included: a baseline with a leak in its favour).
  ``description`` is the English phrase, ``formula`` the concepts with AND / OR / AND NOT;
  ``exemplar_iou`` and ``pmi`` are on the unit's exemplars (search images); the scores, base
  rate, unit rate and p-values are on ``images`` held-out images (``unitscope.describe.scores``).
"""

from __future__ import annotations

from pathlib import Path

from unitscope.catalog import define_table

_UNIT = (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"))
COLUMNS = (
    ("kind", "TEXT"),
    ("description", "TEXT"),
    ("formula", "TEXT"),
    ("length", "INTEGER"),
    ("exemplar_iou", "REAL"),
    ("pmi", "REAL"),
    ("log_prior", "REAL"),
    ("f1", "REAL"),
    ("iou", "REAL"),
    ("auprc", "REAL"),
    ("pearson", "REAL"),
    ("base_rate", "REAL"),
    ("unit_rate", "REAL"),
    ("p_f1", "REAL"),
    ("p_iou", "REAL"),
    ("p_auprc", "REAL"),
    ("p_pearson", "REAL"),
    ("images", "INTEGER"),
    ("search_iou", "REAL"),
)
define_table(
    "descriptions",
    _UNIT + COLUMNS,
    ("model", "layer", "unit", "kind"),
    indexes={"descriptions_kind": ("kind", "model", "layer", "f1")},
)

TABLES = ("descriptions",)
KINDS = ("pmi", "ml", "fair_label", "label")


def has_descriptions(run: str | Path) -> bool:
    """Whether run folder ``run`` has a catalog with at least one description row."""
    from unitscope.catalog import Catalog
    from unitscope.runs import CATALOG

    if not (Path(run) / CATALOG).exists():
        return False
    with Catalog(Path(run) / CATALOG, create=False) as cat:
        return "descriptions" in cat.tables() and bool(cat.query("SELECT 1 FROM descriptions LIMIT 1"))
