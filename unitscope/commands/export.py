"""``unitscope export RUN --format netdissect``: a dissection in NetDissect-Lite's ``tally.csv`` format."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from unitscope.config import add_config_args, config_from_args, help_
from unitscope.runs import LAYERS


@dataclass
class ExportConfig:
    run: str = field(metadata=help_("run folder of a dissection", positional=True))
    format: str = field(default="netdissect", metadata=help_("netdissect: NetDissect-Lite's tally.csv, one per layer"))
    layer: str | None = field(default=None, metadata=help_("one layer (default: every dissected layer)"))
    out: str | None = field(
        default=None, metadata=help_("output file (one layer) or folder (default: RUN/export/tally-<layer>.csv)")
    )


def run_export(args: argparse.Namespace) -> int:
    from unitscope.export import write_netdissect_tally

    cfg = config_from_args(ExportConfig, args)
    if cfg.format != "netdissect":
        raise ValueError(f"unknown --format {cfg.format!r}; known: netdissect")
    run = Path(cfg.run)
    if not (run / LAYERS).is_file():
        raise FileNotFoundError(f"{run} is not the folder of a dissection (it has no layers.json)")
    layers = [cfg.layer] if cfg.layer else list(json.loads((run / LAYERS).read_text()).values())
    for layer in layers:
        if cfg.out and cfg.layer:
            path = Path(cfg.out)
        else:
            path = Path(cfg.out or run / "export") / f"tally-{layer}.csv"
        print(write_netdissect_tally(run, layer, path))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a dissection in NetDissect-Lite's tally.csv format",
        description="Write each dissected layer as NetDissect-Lite's tally.csv (unit, category, "
        "label, score, and per category label/truth/activation/intersect/iou).",
    )
    add_config_args(p, ExportConfig)
    p.set_defaults(func=run_export)
