"""``unitscope serve [RUN] --model M``: the live probe page on http://127.0.0.1:8000 (for a generator,
``--model world_generator [--segmenter world_segmenter]``: the paint page)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_
from unitscope.errors import UsageError
from unitscope.runs import CONFIG

DEFAULT_MODEL = "efficientnet_lite0"
EXTRA_HINT = "unitscope serve needs FastAPI, uvicorn and python-multipart: pip install 'unitscope[serve]'"


@dataclass
class ServeConfig(ModelOptions):
    run: Optional[str] = field(
        default=None,
        metadata=help_(
            "run folder whose labels, exemplars and visualisations the page shows (optional)", positional=True
        ),
    )
    model: Optional[str] = field(
        default=None,
        metadata=help_(f"model name (see `unitscope models`); default: the run's model, else {DEFAULT_MODEL}"),
    )
    host: str = field(default="127.0.0.1", metadata=help_("address to bind; the default is local only"))
    port: int = field(default=8000, metadata=help_("port to listen on (0: any free port, printed at start)"))
    segmenter: Optional[str] = field(
        default=None,
        metadata=help_(
            "for a generator: the segmenter that labels its images on the paint page (a name or file.py:factory); "
            "default: the run's, else world_segmenter"
        ),
    )
    max_upload_mb: float = field(default=10.0, metadata=help_("largest image upload in MB (larger: HTTP 413)"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="live probe page: an image or the webcam through every unit of a layer",
        description="Serve the live probe page: upload an image, pick a sample or turn on "
        "the webcam, and see every unit of a layer react.",
    )
    add_config_args(p, ServeConfig)
    p.set_defaults(func=run)


def _check_extra() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{EXTRA_HINT} (missing: {', '.join(missing)})")


def _run_model(run: str | None, key: str = "model") -> str | None:
    """The model (or another ``key``, e.g. its segmenter) a run folder was made with (its config.json)."""
    if run is None or not (Path(run) / CONFIG).is_file():
        return None
    import json

    return json.loads((Path(run) / CONFIG).read_text()).get(key)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(ServeConfig, args)
    _check_extra()
    if cfg.run is not None and not Path(cfg.run).is_dir():
        raise FileNotFoundError(f"run folder {cfg.run} does not exist (omit RUN to serve the model alone)")
    name = cfg.model or _run_model(cfg.run) or DEFAULT_MODEL
    import uvicorn

    from unitscope.models import get_info
    from unitscope.serve import create_app

    model = cfg.create_model(name)  # once, before the first request
    segmenter = None  # the paint page's segmenter labels what a generator draws
    if get_info(model).kind == "generator":
        segmenter = cfg.segmenter or _run_model(cfg.run, "segmenter") or "world_segmenter"
    app = create_app(
        model, cfg.run, max_upload=int(cfg.max_upload_mb * 1024 * 1024), model_name=name, segmenter=segmenter
    )
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {cfg.host}: anyone who can reach this address can use the page")
    sock = _listen(cfg.host, cfg.port)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    # the socket already listens: a request sent once this line is printed waits in its backlog
    print(f"unitscope serve: {name} on http://{host}:{sock.getsockname()[1]}/  (Ctrl+C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _listen(host: str, port: int):
    """A socket bound to ``host:port`` and listening (``port`` 0: a free one)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another port with --port (0: any free port)"
        ) from None
