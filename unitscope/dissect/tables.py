"""Network Dissection's catalog tables (importing this module declares them; torch-free).

    from unitscope.catalog import Catalog
    with Catalog(run / "catalog.sqlite", create=False) as cat:   # every catalog has these tables
        cat.query("SELECT unit, iou FROM dissection WHERE layer = ? AND concept = ? "
                  "AND is_detector ORDER BY iou DESC", ("layer4", "dog"))

:class:`~unitscope.catalog.Catalog` loads this module before it opens its first file, so a run
folder of any analysis (and an old one, ``tests/test_run_versions.py``) has them, empty or not.

- ``layers(model, layer, units, height, width, images, quantile, iou_threshold, detectors,
  unique_concepts, detectors_significant, images_needed, activation_values, saturated_units,
  tied_units)`` -- one row per dissected layer, key
  (model, layer); ``detectors_significant`` also pass p < 0.01 (Benjamini-Hochberg over the
  layer's units), ``images_needed`` is how many images keep chance IoUs below the threshold;
  ``activation_values`` which values were thresholded and ranked ("pre-activation: input of ReLU6 at
  bn2.act" or "layer output ..."), ``saturated_units`` how many units have their threshold at their
  largest value (empty masks), ``tied_units`` how many have all top-k exemplars at one value
- ``dissection(model, layer, unit, concept, category, iou, is_detector, threshold, p_value)`` --
  each unit's best concept overall; ``threshold`` is the unit's activation threshold T_k,
  ``p_value`` its best IoU against the permutation null (``unitscope.dissect.significance``)
- ``dissection_category(model, layer, unit, category, concept, iou)`` -- best concept per category
- ``exemplars(model, layer, unit, rank, image, activation, y, x)`` -- top-k images by maximum
  activation; ``image`` indexes the data set, (y, x) is where the maximum is
- ``unit_images(model, layer, unit, path)`` -- JPEG strip of the exemplars, relative to the run
- ``concept_images(model, layer, unit, path)`` -- the same exemplars with the ground-truth mask of
  the unit's concept outlined (units without a concept have no row)
- ``rotations(model, layer, rotation, detectors, unique_concepts)`` -- rotation 0 is the
  axis-aligned basis, 1..R random orthogonal rotations (the "grandmother neuron" check)
- ``concepts(name, category)`` -- the data set's concept vocabulary
- ``layer_bases(model, layer, privileged)`` -- whether the layer's output follows an elementwise
  nonlinearity (its units a privileged basis; see :func:`unitscope.layers.privileged_layers`)

Indexes on ``(concept, model, layer)`` make "which units of layer X detect concept Y" a lookup.
"""

from __future__ import annotations

from unitscope.catalog import define_table

_UNIT = (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"))
define_table(
    "layers",
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("units", "INTEGER"),
        ("height", "INTEGER"),
        ("width", "INTEGER"),
        ("images", "INTEGER"),
        ("quantile", "REAL"),
        ("iou_threshold", "REAL"),
        ("detectors", "INTEGER"),
        ("unique_concepts", "INTEGER"),
        ("detectors_significant", "INTEGER"),
        ("images_needed", "INTEGER"),
        ("activation_values", "TEXT"),
        ("saturated_units", "INTEGER"),
        ("tied_units", "INTEGER"),
    ),
    ("model", "layer"),
)
define_table(
    "dissection",
    _UNIT
    + (
        ("concept", "TEXT"),
        ("category", "TEXT"),
        ("iou", "REAL"),
        ("is_detector", "INTEGER"),
        ("threshold", "REAL"),
        ("p_value", "REAL"),
    ),
    ("model", "layer", "unit"),
    indexes={"dissection_concept": ("concept", "model", "layer", "iou")},
)
define_table(
    "dissection_category",
    _UNIT + (("category", "TEXT"), ("concept", "TEXT"), ("iou", "REAL")),
    ("model", "layer", "unit", "category"),
    indexes={"dissection_category_concept": ("concept", "model", "layer", "iou")},
)
define_table(
    "exemplars",
    _UNIT + (("rank", "INTEGER"), ("image", "INTEGER"), ("activation", "REAL"), ("y", "INTEGER"), ("x", "INTEGER")),
    ("model", "layer", "unit", "rank"),
)
define_table("unit_images", _UNIT + (("path", "TEXT"),), ("model", "layer", "unit"))
define_table("concept_images", _UNIT + (("path", "TEXT"),), ("model", "layer", "unit"))
define_table(
    "rotations",
    (
        ("model", "TEXT"),
        ("layer", "TEXT"),
        ("rotation", "INTEGER"),
        ("detectors", "INTEGER"),
        ("unique_concepts", "INTEGER"),
    ),
    ("model", "layer", "rotation"),
)
define_table("concepts", (("name", "TEXT"), ("category", "TEXT")), ("name", "category"))
define_table("layer_bases", (("model", "TEXT"), ("layer", "TEXT"), ("privileged", "INTEGER")), ("model", "layer"))

#: every table this module declares
TABLES = (
    "layers",
    "dissection",
    "dissection_category",
    "exemplars",
    "unit_images",
    "concept_images",
    "rotations",
    "concepts",
    "layer_bases",
)
