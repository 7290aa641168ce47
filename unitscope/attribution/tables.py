"""Attribution's catalog table (importing this module declares it; torch-free).

    from unitscope.attribution.tables import TABLE
    with Catalog(run / "catalog.sqlite") as cat:
        cat.rows(TABLE, model="resnet18", layer="layer4", unit=7)   # the explained images it led in

- ``attribution_units(model, layer, unit, image, class_index, class_name, rank, attribution,
  integrated)``, key (model, layer, image, class_index, unit) -- for each image ``unitscope explain``
  explained (``image``: its page, ``explain/<image>/index.html``) and the class it explained, the
  units with the largest path-integrated channel attribution (``rank`` 0 the largest);
  ``attribution`` is gradient x activation summed over positions, ``integrated`` the same along
  the path from a zero layer (their sum over all units is the class logit's change)
"""

from __future__ import annotations

from unitscope.catalog import define_table

TABLE = "attribution_units"
define_table(
    TABLE,
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("unit", "INTEGER"),
        ("image", "TEXT"),
        ("class_index", "INTEGER"),
        ("class_name", "TEXT"),
        ("rank", "INTEGER"),
        ("attribution", "REAL"),
        ("integrated", "REAL"),
    ),
    ("model", "layer", "image", "class_index", "unit"),
)

#: every table this module declares
TABLES = (TABLE,)
