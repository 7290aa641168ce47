"""``unitscope visualize``: feature visualisations of a layer's units into a run folder.

    unitscope visualize --model efficientnet_lite0 --layer blocks.2.0.bn1 --units 0-63 --out runs/lite0

Writes ``featvis/<layer>/<unit>.png`` and rows of ``unit_visualizations`` in ``catalog.sqlite``;
works on a fresh folder and on a dissection's run folder (the report then shows each unit's
visualisation beside its exemplars). Rerun the same command to resume: each batch of units
(``--batch-size auto``: 16 on a CPU, where larger batches cost more per unit, 64 on a GPU) is
saved before the next starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_, write_config
from unitscope.runs import FEATVIS


@dataclass
class VisualizeConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)"))
    layer: str = field(
        metadata=help_(
            "layer whose units to draw; pick one after a nonlinearity, e.g. "
            "blocks.2.0.bn1 (see `unitscope layers MODEL --spatial`)"
        )
    )
    out: str = field(metadata=help_("run folder (fresh, or a dissection's)"))
    units: str = field(default="0-63", metadata=help_("units as ranges, e.g. 0-63 or 0,5,10-12"))
    steps: int = field(default=512, metadata=help_("optimisation steps (Lucid: 512)"))
    lr: float = field(default=0.05, metadata=help_("Adam learning rate (Lucid: 0.05)"))
    size: int = field(default=128, metadata=help_("rendered image side in pixels (Lucid: 128)"))
    param: str = field(default="fft", metadata=help_("image parameterisation: fft or pixel"))
    pre_activation: bool = field(
        default=False,
        metadata=help_(
            "maximise each unit before the layer's nonlinearity (Lucid's pre_relu layers): a ReLU6 unit that "
            "reaches its cap of 6 gets no gradient and its picture stays faint"
        ),
    )
    upsample: bool = field(default=True, metadata=help_("upsample to the model's input size before the forward pass"))
    batch_size: str = field(
        default="auto",
        metadata=help_(
            "units rendered together (image i serves unit i); auto: 64 on a GPU, 16 on a CPU, where a batch "
            "of 64 at 224 px costs 1.7x more per unit than batches of 16 (benchmarks/bench_featvis.py)"
        ),
    )
    seed: int = field(default=0, metadata=help_("random seed of the images and transforms"))
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    progress: bool = field(default=True, metadata=help_("show progress bars"))


def parse_units(text: str, n_units: int | None = None) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; checked against ``n_units`` when given."""
    units: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            units += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise ValueError(f"bad unit range {part!r} in --units {text!r}; write e.g. 0-63 or 0,5,10-12") from None
    if not units:
        raise ValueError(f"--units {text!r} names no units; write e.g. 0-63")
    if n_units is not None and (max(units) >= n_units or min(units) < 0):
        raise ValueError(f"--units {text!r} goes beyond the layer's {n_units} units (0-{n_units - 1})")
    return list(dict.fromkeys(units))


def resolve_batch_size(batch_size: str | int, device: str) -> int:
    """``"auto"`` -> 64 on a GPU, 16 on a CPU; otherwise a positive integer."""
    if str(batch_size) == "auto":
        return 16 if str(device).startswith("cpu") else 64
    try:
        n = int(batch_size)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--batch-size {batch_size!r}: give a positive number of units, or auto")
    return n


def layer_units(model, layer: str, device: str = "cpu") -> int:
    """Channel count of ``layer`` from one small forward pass (stops after the layer)."""
    import torch

    from unitscope.hooks import Trace, unit_dim
    from unitscope.models import get_info

    size = get_info(model).input_size
    with torch.no_grad(), Trace(model, layer, stop=True) as t:
        model(torch.zeros(1, *size, device=device))
    return int(t.output.shape[unit_dim(t.output)])


def run(args: argparse.Namespace) -> int:
    from unitscope.featvis.store import visualize_units
    from unitscope.layers import resolve_layer

    cfg = config_from_args(VisualizeConfig, args)
    batch_size = resolve_batch_size(cfg.batch_size, cfg.device)
    model = cfg.create_model().to(cfg.device)
    resolve_layer(model, cfg.layer)  # unknown layer: close matches before any work
    units = parse_units(cfg.units, layer_units(model, cfg.layer, cfg.device))
    out = Path(cfg.out)
    write_config(cfg, out / FEATVIS / f"config-{cfg.layer}.json")  # keeps a dissection's config.json
    paths = visualize_units(
        model,
        cfg.layer,
        units,
        out,
        batch_size=batch_size,
        steps=cfg.steps,
        lr=cfg.lr,
        size=cfg.size,
        param=cfg.param,
        upsample=cfg.upsample,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
        pre_activation=cfg.pre_activation,
    )
    print(f"{len(paths)} visualisations of {cfg.layer} in {(out / 'featvis' / cfg.layer).resolve()}")
    print(f"catalog: {(out / 'catalog.sqlite').resolve()} (table unit_visualizations)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize",
        help="feature visualisation: one image per unit that the unit responds to most",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p, VisualizeConfig)
    p.set_defaults(func=run)
