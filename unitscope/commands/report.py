"""``unitscope report RUN``: (re)write a run folder's report.json and offline index.html."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unitscope.config import add_config_args, config_from_args, help_


@dataclass
class ReportConfig:
    run: str = field(metadata=help_("run folder (holds catalog.sqlite)", positional=True))
    title: Optional[str] = field(default=None, metadata=help_("page title (default: from the run)"))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a run's report.json and static index.html",
        description="(Re)write RUN/report.json and an index.html that works offline.",
    )
    add_config_args(p, ReportConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from unitscope.report import write_report

    cfg = config_from_args(ReportConfig, args)
    html = write_report(Path(cfg.run), title=cfg.title)
    print(f"wrote {html} (open it in a browser; it works offline)")
    return 0
