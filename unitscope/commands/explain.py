"""``unitscope explain IMAGE``: attribution and building blocks of one image as an offline page.

    unitscope explain cat.jpg --model efficientnet_lite0 --layer blocks.4.1.bn2 --out runs/lite0

Writes ``RUN/explain/<image stem>/index.html``. In a dissection's run folder the page also shows
each unit's concept label and its visualisation (from `unitscope visualize`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_, write_config
from unitscope.runs import CONFIG


@dataclass
class ExplainConfig(ModelOptions):
    image: str = field(metadata=help_("image file to explain", positional=True))
    model: str = field(metadata=help_("model name (see `unitscope models`)"))
    layer: str = field(metadata=help_("a spatial layer after a nonlinearity, e.g. blocks.4.1.bn2"))
    out: str = field(metadata=help_("run folder (fresh, or a dissection's)"))
    target: int | None = field(default=None, metadata=help_("class index to explain (default: the top prediction)"))
    k: int = field(default=3, metadata=help_("units per position in the semantic dictionary"))
    groups: int = field(default=4, metadata=help_("NMF neuron groups"))
    cells: int = field(default=7, metadata=help_("at most this many positions per side for the dictionary and grid"))
    ig_steps: int = field(default=16, metadata=help_("steps of the path-integrated channel attribution"))
    icon_steps: int = field(default=128, metadata=help_("optimisation steps per icon (one batch for all icons)"))
    icon_size: int = field(default=64, metadata=help_("icon side in pixels"))
    inversion_steps: int = field(default=256, metadata=help_("optimisation steps of the feature inversion"))
    seed: int = field(default=0, metadata=help_("random seed"))
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    progress: bool = field(default=True, metadata=help_("show progress bars"))


def run(args: argparse.Namespace) -> int:
    from unitscope.attribution.page import ExplainSettings, write_explain
    from unitscope.classify import load_image
    from unitscope.layers import resolve_layer

    cfg = config_from_args(ExplainConfig, args)
    load_image(cfg.image)  # a bad file fails before the model loads
    model = cfg.create_model().to(cfg.device)
    resolve_layer(model, cfg.layer)
    settings = ExplainSettings(
        target=cfg.target,
        k=cfg.k,
        groups=cfg.groups,
        cells=cfg.cells,
        ig_steps=cfg.ig_steps,
        icon_steps=cfg.icon_steps,
        icon_size=cfg.icon_size,
        inversion_steps=cfg.inversion_steps,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    html = write_explain(model, cfg.image, cfg.layer, Path(cfg.out), settings)
    write_config(cfg, html.parent / CONFIG)
    print(f"wrote {html.resolve()} (open it in a browser; it works offline)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="attribution and building blocks of one image, as an offline page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p, ExplainConfig)
    p.set_defaults(func=run)
