"""Feature visualisation's catalog table (importing this module declares it; torch-free).

    from unitscope.featvis.tables import TABLE
    with Catalog(run / "catalog.sqlite") as cat:
        cat.rows(TABLE, model="resnet18", layer="layer4")

- ``unit_visualizations(model, layer, unit, path, objective)``, key (model, layer, unit) -- ``path``
  a PNG relative to the run folder (``featvis/<layer>/<unit>.png``), ``objective`` the objective
  that rendered it (``channel(layer, unit)``; a rerun with another objective renders it again)
"""

from __future__ import annotations

from unitscope.catalog import define_table

TABLE = "unit_visualizations"
define_table(
    TABLE,
    (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"), ("path", "TEXT"), ("objective", "TEXT")),
    ("model", "layer", "unit"),
)

#: every table this module declares
TABLES = (TABLE,)
