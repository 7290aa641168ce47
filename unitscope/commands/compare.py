"""``unitscope compare RUN...``: detectors per category per layer of several runs, side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unitscope.config import add_config_args, config_from_args, help_


@dataclass
class CompareConfig:
    runs: list[str] = field(metadata=help_("run folders (each holds catalog.sqlite)", positional=True, nargs="+"))
    json: bool = field(default=False, metadata=help_("print the rows as JSON instead of a table"))
    csv: Optional[str] = field(default=None, metadata=help_("also write the rows to this CSV file"))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare detectors per category across runs and layers",
        description="Detector units per concept category for every layer of several runs, side "
        "by side: to compare layers, models or training tasks.",
    )
    add_config_args(p, CompareConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from unitscope.compare import compare_runs, format_table, to_csv
    from unitscope.runs import atomic_write_text

    cfg = config_from_args(CompareConfig, args)
    rows = compare_runs([Path(p) for p in cfg.runs])
    if cfg.csv:
        atomic_write_text(Path(cfg.csv), to_csv(rows))
    print(json.dumps(rows, indent=1) if cfg.json else format_table(rows))
    return 0
