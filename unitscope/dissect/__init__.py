"""Network Dissection (Bau et al., CVPR 2017): label every unit by the concept it detects.

    from unitscope.dissect import dissect
    from unitscope.data import BrodenDataset
    from unitscope.models import create_model, get_info
    model = create_model("efficientnet_lite0")
    data = BrodenDataset("probe-world", transform=get_info(model).transform())
    result = dissect(model, data, ["blocks.4", "blocks.6"], "runs/lite0")
    result.layers["blocks.6"].summary()      # "87 of 320 units are detectors, covering 31 concepts"

The package: ``engine.py`` (the two passes and the run folder), ``iou.py`` (the counting kernel),
``exemplars.py`` (the strips on unit cards).
"""

from unitscope.dissect.engine import (
    RUN_OUTPUTS,
    DissectResult,
    LayerDissection,
    check_layers,
    clear_run,
    dissect,
    load_layer_arrays,
    random_rotation,
    rotate,
)

__all__ = ["RUN_OUTPUTS", "DissectResult", "LayerDissection", "check_layers", "clear_run", "dissect",
           "load_layer_arrays", "random_rotation", "rotate"]
